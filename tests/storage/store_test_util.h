// Helpers shared by store_test.cc and crash_test.cc.
#pragma once

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <string>

#include "storage/store.h"
#include "test_data.h"

namespace trialmesh::storage::testing {

// A fresh directory under the test temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "/tm_storage_XXXXXX";
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline Dictionary trialDictionary() {
  auto d = Dictionary::parseToml(trialDictionaryToml(), "trial.toml");
  EXPECT_TRUE(d.isOk()) << d.status().toString();
  return std::move(d).value();
}

// Compares every value of every chunk with the generator's expected cells (an independent
// computation: the generator decides the values before formatting them as CSV).
inline void expectDatasetMatches(const ColumnSource& source, uint64_t rows, uint64_t salt) {
  ASSERT_EQ(source.rowCount(), rows);
  const Dictionary& dict = source.dictionary();
  std::string scratch;
  std::vector<Cell> cells;
  for (uint32_t c = 0; c < source.chunkCount(); ++c) {
    std::vector<std::shared_ptr<const ColumnChunk>> chunks;
    for (size_t v = 0; v < dict.size(); ++v) {
      auto chunk = source.column(v, c);
      ASSERT_TRUE(chunk.isOk()) << chunk.status().toString();
      ASSERT_EQ((*chunk)->type(), physicalTypeOf(dict.variable(v)));
      chunks.push_back(*chunk);
    }
    const uint64_t first = uint64_t{c} * kChunkRows;
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(kChunkRows, rows - first));
    for (uint32_t r = 0; r < n; ++r) {
      scratch.clear();
      generateRow(first + r, scratch, &cells, salt);
      for (size_t v = 0; v < dict.size(); ++v) {
        const ColumnChunk& chunk = *chunks[v];
        ASSERT_EQ(chunk.rows, n);
        ASSERT_EQ(chunk.isMissing(r), cells[v].missing)
            << "row " << first + r << " variable " << dict.variable(v).name;
        if (cells[v].missing) continue;
        const double expected = dict.variable(v).type == VariableType::kReal
                                    ? cells[v].d
                                    : static_cast<double>(cells[v].i);
        ASSERT_EQ(chunk.valueAsDouble(r), expected)
            << "row " << first + r << " variable " << dict.variable(v).name;
      }
    }
  }
}

// Opens the store's RocksDB directly (the store must be closed) and counts data keys per
// (dataset, version): what a crashed or superseded import could have left behind.
inline std::map<std::pair<std::string, uint64_t>, size_t> dataKeyCounts(const std::string& dir) {
  std::map<std::pair<std::string, uint64_t>, size_t> out;
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {"data", rocksdb::ColumnFamilyOptions()},
      {"meta", rocksdb::ColumnFamilyOptions()}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s =
      rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, families, &handles, &db);
  EXPECT_TRUE(s.ok()) << s.ToString();
  if (!s.ok()) return out;
  {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[1]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string key = it->key().ToString();
      size_t zero = key.find('\0');
      uint64_t version = 0;
      for (size_t i = 0; i < 8; ++i) version = (version << 8) | uint8_t(key[zero + 1 + i]);
      ++out[{key.substr(0, zero), version}];
    }
  }
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
  return out;
}

}  // namespace trialmesh::storage::testing
