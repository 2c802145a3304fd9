#include "storage/chunk_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "storage/chunk_cache.h"

namespace trialmesh::storage::internal {
namespace {

using ::testing::HasSubstr;

TEST(Xxh64Test, KnownAnswers) {
  // Reference values of XXH64 with seed 0 (xxHash test vectors).
  EXPECT_EQ(xxh64("", 0), 0xEF46DB3751D8E999ull);
  EXPECT_EQ(xxh64("a", 1), 0xD24EC4F1A98C6E5Bull);
  EXPECT_EQ(xxh64("abc", 3), 0x44BC2CF5AD770999ull);
  // Different seeds and one-bit changes give different sums.
  const std::string text(100, 'q');
  std::string flipped = text;
  flipped[57] ^= 1;
  EXPECT_NE(xxh64(text.data(), text.size()), xxh64(flipped.data(), flipped.size()));
  EXPECT_NE(xxh64(text.data(), text.size(), 1), xxh64(text.data(), text.size(), 2));
}

ColumnChunk sampleChunk(uint32_t rows, bool withMissing) {
  ColumnChunkBuilder b(PhysicalType::kI16);
  for (uint32_t i = 0; i < rows; ++i) {
    if (withMissing && i % 5 == 0) {
      b.appendMissing();
    } else {
      b.appendInt(static_cast<int16_t>(i * 7 - 3000));
    }
  }
  return b.finish();
}

TEST(ChunkCodecTest, RoundTripWithAndWithoutMissing) {
  for (bool missing : {false, true}) {
    for (uint32_t rows : {1u, 63u, 64u, 1000u, kChunkRows}) {
      ColumnChunk chunk = sampleChunk(rows, missing);
      std::string bytes;
      encodeChunk(chunk, "key", bytes);
      EXPECT_EQ(bytes.size(), 16 + rows * 2 + (missing ? (rows + 63) / 64 * 8 : 0) + 8);
      auto back = decodeChunk(bytes, "key", PhysicalType::kI16, rows);
      ASSERT_TRUE(back.isOk()) << back.status().toString();
      EXPECT_EQ(back->rows, rows);
      EXPECT_EQ(std::get<std::vector<int16_t>>(back->values),
                std::get<std::vector<int16_t>>(chunk.values));
      EXPECT_EQ(back->missing, chunk.missing);
    }
  }
}

TEST(ChunkCodecTest, DetectsCorruptionAndMismatch) {
  ColumnChunk chunk = sampleChunk(100, true);
  std::string bytes;
  encodeChunk(chunk, "key", bytes);
  std::string flipped = bytes;
  flipped[40] ^= 0x10;
  auto bad = decodeChunk(flipped, "key", PhysicalType::kI16, 100);
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(bad.status().message(), HasSubstr("checksum mismatch"));
  EXPECT_THAT(decodeChunk(bytes, "other key", PhysicalType::kI16, 100).status().message(),
              HasSubstr("checksum mismatch"));
  EXPECT_THAT(decodeChunk(bytes.substr(0, 10), "key", PhysicalType::kI16, 100).status().message(),
              HasSubstr("truncated"));
  EXPECT_THAT(decodeChunk(bytes, "key", PhysicalType::kI32, 100).status().message(),
              HasSubstr("physical type"));
  EXPECT_THAT(decodeChunk(bytes, "key", PhysicalType::kI16, 99).status().message(),
              HasSubstr("holds 100 rows, expected 99"));
}

TEST(ChunkCacheTest, EvictsLeastRecentlyUsedWithinBytes) {
  auto chunk = std::make_shared<const ColumnChunk>(sampleChunk(1000, false));
  const size_t one = chunk->memoryBytes() + 2 + 200;  // roughly one entry
  ChunkCache cache(3 * one);
  cache.put("k1", chunk);
  cache.put("k2", chunk);
  cache.put("k3", chunk);
  ASSERT_NE(cache.get("k1"), nullptr);  // k1 becomes most recent; k2 is now oldest
  cache.put("k4", chunk);
  EXPECT_EQ(cache.get("k2"), nullptr);
  EXPECT_NE(cache.get("k1"), nullptr);
  EXPECT_NE(cache.get("k3"), nullptr);
  EXPECT_NE(cache.get("k4"), nullptr);
  EXPECT_LE(cache.bytes(), 3 * one);
  EXPECT_EQ(cache.entries(), 3u);

  ChunkCache disabled(0);
  disabled.put("k", chunk);
  EXPECT_EQ(disabled.get("k"), nullptr);
}

}  // namespace
}  // namespace trialmesh::storage::internal
