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
                            bool uniform = true, char delimiter = ',',
                            CsvEncoding encoding = CsvEncoding::kUtf8) {
  CsvOptions options;
  options.blockBytes = block;
  options.delimiter = delimiter;
  options.encoding = encoding;
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

// Same records for every block size with a delimiter / encoding.
std::vector<Record> readAllWith(const std::string& data, char delimiter, CsvEncoding encoding) {
  auto reference = readAll(data, 1 << 20, nullptr, true, delimiter, encoding);
  for (size_t block : {16, 17, 19, 23, 32, 64}) {
    EXPECT_EQ(readAll(data, block, nullptr, true, delimiter, encoding), reference)
        << "block size " << block;
  }
  return reference;
}

TEST(CsvReaderTest, SemicolonAndTabDelimiters) {
  // European exports: ';' separates, ',' is the decimal comma inside a field (data here).
  auto semi = readAllWith("id;bmi;note\n1;24,5;\"a;b\"\n2;;\"say \"\"hi\"\"\"\r\n", ';',
                          CsvEncoding::kUtf8);
  ASSERT_EQ(semi.size(), 3u);
  EXPECT_EQ(semi[1].fields, (std::vector<std::string>{"1", "24,5", "a;b"}));
  EXPECT_EQ(semi[2].fields, (std::vector<std::string>{"2", "", "say \"hi\""}));
  auto tab = readAllWith("a\tb\n1,5\t2\n", '\t', CsvEncoding::kUtf8);
  ASSERT_EQ(tab.size(), 2u);
  EXPECT_EQ(tab[1].fields, (std::vector<std::string>{"1,5", "2"}));
  Status quoteDelimiter;
  EXPECT_TRUE(readAll("a\"b\n", 1 << 20, &quoteDelimiter, true, '"').empty());
  EXPECT_THAT(quoteDelimiter.message(), HasSubstr("is not supported"));
  Status error;
  readAll("a;b\n\"x\",y\n", 1 << 20, &error, true, ';');
  EXPECT_THAT(error.message(), HasSubstr("must be followed by the delimiter"));
}

TEST(CsvReaderTest, ParsesDelimiterAndEncodingNames) {
  EXPECT_EQ(*parseCsvDelimiter(";"), ';');
  EXPECT_EQ(*parseCsvDelimiter("tab"), '\t');
  EXPECT_EQ(*parseCsvDelimiter("\\t"), '\t');
  EXPECT_EQ(*parseCsvDelimiter("|"), '|');
  for (const char* bad : {"\"", "", ";;", "\n", "x", "\xC3\xA9"}) {
    auto r = parseCsvDelimiter(bad);
    ASSERT_FALSE(r.isOk()) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("use ',', ';', '|' or tab"));
  }
  EXPECT_EQ(*parseCsvEncoding("UTF-8"), CsvEncoding::kUtf8);
  EXPECT_EQ(*parseCsvEncoding("Latin1"), CsvEncoding::kLatin1);
  EXPECT_EQ(*parseCsvEncoding("ISO-8859-1"), CsvEncoding::kLatin1);
  EXPECT_EQ(*parseCsvEncoding("windows-1252"), CsvEncoding::kWindows1252);
  EXPECT_EQ(*parseCsvEncoding("GBK"), CsvEncoding::kGb18030);
  auto bad = parseCsvEncoding("big5");
  ASSERT_FALSE(bad.isOk());
  EXPECT_THAT(bad.status().message(), HasSubstr("unknown encoding 'big5'"));
}

TEST(CsvReaderTest, Latin1AndWindows1252AreConvertedToUtf8) {
  auto latin1 = readAllWith("name;city\nJos\xE9;Z\xFCrich\n", ';', CsvEncoding::kLatin1);
  ASSERT_EQ(latin1.size(), 2u);
  EXPECT_EQ(latin1[1].fields, (std::vector<std::string>{"Jos\xC3\xA9", "Z\xC3\xBCrich"}));
  // 0x80 is the euro sign in Windows-1252 (a control character in Latin-1).
  auto cp = readAllWith("price\n\x80 5\n", ',', CsvEncoding::kWindows1252);
  ASSERT_EQ(cp.size(), 2u);
  EXPECT_EQ(cp[1].fields[0], "\xE2\x82\xAC 5");
  // 0x81 is not a character in Windows-1252: an error with the line and the offset.
  Status error;
  readAll("a\nok\nb\x81\n", 1 << 20, &error, true, ',', CsvEncoding::kWindows1252);
  EXPECT_THAT(error.message(), HasSubstr("t.csv:3: byte 0x81 at offset 6 is not a character in "
                                         "windows-1252"));
}

// Found by fuzz_csv: a byte that is not a character must stop the reader at the same record
// whatever the block size (it once failed the first read of a large block, before any record).
TEST(CsvReaderTest, RecordsBeforeABadByteDoNotDependOnTheBlockSize) {
  const std::string data = "a,b\n1,2\n3,\x81\n";
  for (size_t block : {16, 17, 19, 23, 32, 64, 1 << 20}) {
    Status error;
    auto records = readAll(data, block, &error, true, ',', CsvEncoding::kWindows1252);
    ASSERT_EQ(records.size(), 2u) << "block size " << block;
    EXPECT_EQ(records[1].fields, (std::vector<std::string>{"1", "2"}));
    EXPECT_THAT(error.message(), HasSubstr("t.csv:3: byte 0x81 at offset 10"));
  }
}

TEST(CsvReaderTest, Gb18030IsConvertedAcrossBlockBoundaries) {
  // 中文 is D6D0 CEC4 in GB18030; U+20000 (a 4-byte GB18030 sequence) is 95 32 82 36.
  const std::string gbRow = "\xD6\xD0\xCE\xC4,\x95\x32\x82\x36\n";
  const std::string utf8Row = "\xE4\xB8\xAD\xE6\x96\x87,\xF0\xA0\x80\x80\n";
  auto small = readAllWith("a,b\n" + gbRow + gbRow, ',', CsvEncoding::kGb18030);
  EXPECT_EQ(small, readAll("a,b\n" + utf8Row + utf8Row, 1 << 20));
  // More than the 1 MiB raw block: the header is 5 bytes and each row 10, so the 1 MiB boundary
  // falls after the first byte of a row, inside the two-byte character D6 D0.
  std::string gb = "a,bc\n", utf8 = "a,bc\n";
  for (int i = 0; i < 130000; ++i) {
    gb += gbRow;
    utf8 += utf8Row;
  }
  auto big = readAll(gb, 1 << 16, nullptr, true, ',', CsvEncoding::kGb18030);
  EXPECT_EQ(big, readAll(utf8, 1 << 16));
  EXPECT_EQ(big.size(), 130001u);
  Status cut;
  readAll("a\n\xD6", 1 << 20, &cut, true, ',', CsvEncoding::kGb18030);
  EXPECT_THAT(cut.message(), HasSubstr("incomplete character at the end of the file in gb18030"));
}

TEST(CsvReaderTest, TranscodedProgressCountsFileBytes) {
  const std::string path = ::testing::TempDir() + "/csv_reader_latin1.csv";
  std::string content = "a\n";
  for (int i = 0; i < 5000; ++i) content += "\xE9t\xE9\n";
  {
    std::ofstream out(path, std::ios::binary);
    out << content;
  }
  CsvOptions options;
  options.encoding = CsvEncoding::kLatin1;
  auto reader = CsvReader::openFile(path, options);
  ASSERT_TRUE(reader.isOk());
  int rows = 0;
  for (;;) {
    auto more = (*reader)->next();
    ASSERT_TRUE(more.isOk()) << more.status().toString();
    if (!*more) break;
    if (rows++ > 0) {
      EXPECT_EQ((*reader)->fields()[0], "\xC3\xA9t\xC3\xA9");
    }
  }
  EXPECT_EQ(rows, 5001);
  EXPECT_EQ((*reader)->bytesConsumed(), content.size());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace trialmesh::storage
