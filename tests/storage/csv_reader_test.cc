#include "storage/csv_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace trialmesh::storage {
namespace {

using ::testing::HasSubstr;

struct Record {
  uint64_t line;
  std::vector<std::string> fields;
  bool operator==(const Record&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Record& r) {
  os << "{line " << r.line << ":";
  for (const auto& f : r.fields) os << " [" << f << "]";
  return os << "}";
}

// Reads everything; stops at the first fatal error, which goes to *error.
std::vector<Record> readAll(const std::string& data, size_t block, Status* error = nullptr,
                            bool uniform = true) {
  CsvOptions options;
  options.blockBytes = block;
  options.requireUniformFieldCount = uniform;
  auto reader = CsvReader::fromString(data, "t.csv", options);
  std::vector<Record> out;
  for (;;) {
    auto more = reader->next();
    if (!more.isOk()) {
      if (error) *error = more.status();
      if (reader->failed()) break;
      continue;
    }
    if (!*more) break;
    Record r{reader->line(), {}};
    for (auto f : reader->fields()) r.fields.emplace_back(f);
    out.push_back(std::move(r));
  }
  return out;
}

// Every block size from tiny to larger than the input must give the same records: this
// exercises records and fields that span buffer boundaries.
std::vector<Record> readAllBlockSizes(const std::string& data) {
  auto reference = readAll(data, 1 << 20);
  for (size_t block : {16, 17, 19, 23, 32, 64}) {
    EXPECT_EQ(readAll(data, block), reference) << "block size " << block;
  }
  return reference;
}

TEST(CsvReaderTest, PlainRecordsLfAndCrlf) {
  auto lf = readAllBlockSizes("a,b,c\n1,2,3\n4,5,6\n");
  auto crlf = readAllBlockSizes("a,b,c\r\n1,2,3\r\n4,5,6\r\n");
  std::vector<Record> expected = {{1, {"a", "b", "c"}}, {2, {"1", "2", "3"}}, {3, {"4", "5", "6"}}};
  EXPECT_EQ(lf, expected);
  EXPECT_EQ(crlf, expected);
}

TEST(CsvReaderTest, NoFinalNewline) {
  EXPECT_EQ(readAllBlockSizes("a,b\n1,2"), (std::vector<Record>{{1, {"a", "b"}}, {2, {"1", "2"}}}));
  EXPECT_EQ(readAllBlockSizes("a,b\r\n1,\"2\""),
            (std::vector<Record>{{1, {"a", "b"}}, {2, {"1", "2"}}}));
  EXPECT_EQ(readAllBlockSizes("a,b\n1,"), (std::vector<Record>{{1, {"a", "b"}}, {2, {"1", ""}}}));
}

TEST(CsvReaderTest, QuotedSeparatorsNewlinesAndQuotes) {
  const std::string data =
      "id,text,n\n"
      "1,\"a,b\",2\n"
      "2,\"line1\nline2\",3\n"
      "3,\"crlf\r\ninside\",4\n"
      "4,\"say \"\"hi\"\"\",5\n"
      "5,\"\",6\n"
      "6,\"\"\"\",7\n";
  auto records = readAllBlockSizes(data);
  std::vector<Record> expected = {
      {1, {"id", "text", "n"}},        {2, {"1", "a,b", "2"}},
      {3, {"2", "line1\nline2", "3"}}, {5, {"3", "crlf\r\ninside", "4"}},
      {7, {"4", "say \"hi\"", "5"}},   {8, {"5", "", "6"}},
      {9, {"6", "\"", "7"}},
  };
  EXPECT_EQ(records, expected);
}

TEST(CsvReaderTest, LineNumbersAfterMultiLineRecords) {
  const std::string data = "h1,h2\n\"a\n\nb\",x\ny,z\n\"c\r\nd\",w\nlast,one\n";
  auto records = readAllBlockSizes(data);
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[1].line, 2u);
  EXPECT_EQ(records[2].line, 5u);
  EXPECT_EQ(records[3].line, 6u);
  EXPECT_EQ(records[4].line, 8u);
}

TEST(CsvReaderTest, BomEmptyFieldsAndBlankLines) {
  auto records = readAllBlockSizes(
      "\xEF\xBB\xBF"
      "a,b,c\n,,\nNA,,x\n\n\r\n1,2,3\n");
  std::vector<Record> expected = {
      {1, {"a", "b", "c"}}, {2, {"", "", ""}}, {3, {"NA", "", "x"}}, {6, {"1", "2", "3"}}};
  EXPECT_EQ(records, expected);
  EXPECT_TRUE(readAll("", 16).empty());
  EXPECT_TRUE(readAll("\xEF\xBB\xBF", 16).empty());
}

TEST(CsvReaderTest, NonAsciiUtf8PassesThrough) {
  auto records = readAllBlockSizes("name,unit\nJosé,µg\n\"Zoë, Ørsted\",日本\n");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].fields[0], "José");
  EXPECT_EQ(records[2].fields[0], "Zoë, Ørsted");
  EXPECT_EQ(records[2].fields[1], "日本");
}

TEST(CsvReaderTest, LongFieldSpanningManyBlocks) {
  std::string big(10000, 'x');
  for (size_t i = 0; i < big.size(); i += 97) big[i] = ',';  // quoted commas
  const std::string data = "a,b\n\"" + big + "\",tail\n1,2\n";
  auto records = readAllBlockSizes(data);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].fields[0], big);
  EXPECT_EQ(records[1].fields[1], "tail");
  EXPECT_EQ(records[2].line, 3u);
}

TEST(CsvReaderTest, UnterminatedQuoteNamesStartLine) {
  for (size_t block : {16, 1 << 20}) {
    Status error;
    auto records = readAll("a,b\n1,2\n3,\"open\nmore\nstill\n", block, &error);
    EXPECT_EQ(records.size(), 2u);
    EXPECT_EQ(error.code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(error.message(), HasSubstr("t.csv:3: quoted field starting on this line is never "
                                           "closed"));
  }
}

TEST(CsvReaderTest, StrayQuoteIsFatal) {
  Status error;
  auto records = readAll("a,b\n1,ab\"c\n2,3\n", 16, &error);
  EXPECT_EQ(records.size(), 1u);
  EXPECT_THAT(error.message(), HasSubstr("t.csv:2: stray '\"' inside unquoted field 2"));
  Status after;
  readAll("a,b\n\"x\"y,1\n", 16, &after);
  EXPECT_THAT(after.message(), HasSubstr("t.csv:2: unexpected character after the closing quote "
                                         "of field 1"));
}

TEST(CsvReaderTest, RaggedRowsAreRecoverable) {
  CsvOptions options;
  options.blockBytes = 16;
  auto reader = CsvReader::fromString("a,b,c\n1,2\n1,2,3\n1,2,3,4\n5,6,7\n", "t.csv", options);
  std::vector<std::string> errors;
  std::vector<uint64_t> goodLines;
  for (;;) {
    auto more = reader->next();
    if (!more.isOk()) {
      errors.push_back(more.status().message());
      ASSERT_FALSE(reader->failed());
      continue;
    }
    if (!*more) break;
    goodLines.push_back(reader->line());
  }
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_THAT(errors[0], HasSubstr("t.csv:2: record has 2 fields but the header has 3"));
  EXPECT_THAT(errors[1], HasSubstr("t.csv:4: record has 4 fields but the header has 3"));
  EXPECT_EQ(goodLines, (std::vector<uint64_t>{1, 3, 5}));
}

TEST(CsvReaderTest, InvalidUtf8) {
  Status error;
  auto records = readAll("a,b\n1,2\n3,\xC3\x28\n", 1 << 20, &error);
  EXPECT_EQ(records.size(), 2u);
  EXPECT_THAT(error.message(), HasSubstr("t.csv:3: invalid UTF-8 (byte 0xC3)"));
  Status latin1;
  readAll("a\ncaf\xE9\n", 1 << 20, &latin1);
  EXPECT_THAT(latin1.message(), HasSubstr("t.csv:2: invalid UTF-8"));
}

TEST(CsvReaderTest, OpenFileErrorsAndProgress) {
  auto missing = CsvReader::openFile("/nonexistent/dir/x.csv");
  ASSERT_FALSE(missing.isOk());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/dir/x.csv"));

  const std::string path = ::testing::TempDir() + "/csv_reader_test.csv";
  std::string content = "a,b\n";
  for (int i = 0; i < 1000; ++i) content += std::to_string(i) + ",\"v" + std::to_string(i) + "\"\n";
  {
    std::ofstream out(path, std::ios::binary);
    out << content;
  }
  CsvOptions options;
  options.blockBytes = 100;
  auto reader = CsvReader::openFile(path, options);
  ASSERT_TRUE(reader.isOk());
  EXPECT_EQ((*reader)->totalBytes(), content.size());
  int rows = 0;
  for (;;) {
    auto more = (*reader)->next();
    ASSERT_TRUE(more.isOk()) << more.status().toString();
    if (!*more) break;
    if (rows > 0) {
      EXPECT_EQ((*reader)->fields()[0], std::to_string(rows - 1));
      EXPECT_EQ((*reader)->fields()[1], "v" + std::to_string(rows - 1));
    }
    ++rows;
  }
  EXPECT_EQ(rows, 1001);
  EXPECT_EQ((*reader)->bytesConsumed(), content.size());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace trialmesh::storage
