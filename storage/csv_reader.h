// A streaming RFC 4180 CSV reader: the parser behind CSV import (rules in docs/csv.md).
//
// Comma-separated by default (CsvOptions::delimiter: ';', tab or '|' for other exports); fields
// may be quoted with '"', and quoted fields may contain commas, CR/LF
// newlines and doubled quotes (""). Records end with LF or CRLF; the last record may lack a
// line ending. A UTF-8 byte order mark at the start is skipped. Completely empty lines are
// skipped. Nothing is trimmed: " 12" is the three characters space, 1, 2.
//
// Speed: input is read in large blocks; a record's fields are string_views into the reader's
// buffer (escaped quotes are removed in place), so reading allocates nothing per record.
//
// Errors come back as InvalidArgument Status values whose message starts "<source>:<line>: ",
// where <line> is the physical (1-based) line on which the record starts:
//  - fatal (the file cannot be read further; next() keeps returning the same error):
//    unterminated quoted field, stray quote inside an unquoted field, text after a closing
//    quote, invalid UTF-8, read errors (IOError);
//  - recoverable (the record is skipped and next() may be called again): a record whose field
//    count differs from the first record's (the header), when requireUniformFieldCount is set.
//
// Thread-safety: none; one reader per thread. The reader owns its buffer and file descriptor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace trialmesh::storage {

// The character encoding of the input file. Anything but UTF-8 is converted to UTF-8 as it is
// read (glibc's iconv), so every later stage sees UTF-8.
enum class CsvEncoding {
  kUtf8,
  kLatin1,       // ISO-8859-1: every byte is a character
  kWindows1252,  // CP1252: Latin-1 with printable characters (€, „, …) in 0x80-0x9F
  kGb18030,      // the Chinese national standard; also reads GBK and GB2312 files
};

// Parses an encoding name as a user writes it ("utf-8", "latin1", "iso-8859-1", "cp1252",
// "windows-1252", "gb18030", "gbk"; case-insensitive). InvalidArgument lists the choices.
Result<CsvEncoding> parseCsvEncoding(std::string_view name);
std::string_view csvEncodingName(CsvEncoding encoding);
// Parses a delimiter as a user writes it: ",", ";", "|", "tab" or "\t" (or a tab character).
// InvalidArgument otherwise: a quote, a line ending or a non-ASCII byte cannot separate fields.
Result<char> parseCsvDelimiter(std::string_view text);

struct CsvOptions {
  // Field separator: ',' (default), ';', '\t' or '|'.
  char delimiter = ',';
  // Encoding of the input (default UTF-8, checked).
  CsvEncoding encoding = CsvEncoding::kUtf8;
  // Bytes read per block (default 4 MiB; values below 16 are raised to 16). A record longer
  // than the buffer grows the buffer. Small values are for tests of block boundaries.
  size_t blockBytes = 4u << 20;
  // Check that every record is valid UTF-8 (default on).
  bool validateUtf8 = true;
  // Report records whose field count differs from the first record's (default on).
  bool requireUniformFieldCount = true;
};

class CsvReader {
 public:
  // Opens `path` for reading; errors name the path (NotFound, PermissionDenied, IOError).
  static Result<std::unique_ptr<CsvReader>> openFile(const std::string& path,
                                                     const CsvOptions& options = {});
  // Reads from `fd`, an open file (taken over: closed by the reader); `sourceName` prefixes
  // error messages. For a file opened by another process and passed over a Unix socket
  // (live import through the node, node/admin_server.h).
  static Result<std::unique_ptr<CsvReader>> openFd(int fd, std::string sourceName,
                                                   const CsvOptions& options = {});
  // Reads from memory; `sourceName` prefixes error messages.
  static std::unique_ptr<CsvReader> fromString(std::string data, std::string sourceName,
                                               const CsvOptions& options = {});
  ~CsvReader();
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  // Advances to the next record. true: fields() holds it; false: end of input.
  Result<bool> next();
  // The current record's fields; valid until the next call to next().
  const std::vector<std::string_view>& fields() const { return fields_; }
  // Physical line (1-based) on which the current record starts.
  uint64_t line() const { return recordLine_; }
  // Bytes of input consumed so far (for progress) and the input size (0 when unknown).
  // With a transcoded input, the raw bytes converted so far (block granularity).
  uint64_t bytesConsumed() const;
  uint64_t totalBytes() const { return totalBytes_; }
  // True once a fatal error has been returned.
  bool failed() const { return !fatal_.isOk(); }
  const std::string& sourceName() const { return sourceName_; }

 private:
  enum class Scan { kRecord, kNeedMore, kError };

  CsvReader(std::string sourceName, const CsvOptions& options);
  Status refill();
  Status readInput(char* out, size_t capacity, size_t& got);
  Status transcode(char* out, size_t capacity, size_t& got);
  Scan scanRecord(size_t& end, uint64_t& lines);
  void fail(uint64_t line, const std::string& message);
  void unescapeFields();

  std::string sourceName_;
  CsvOptions options_;
  int fd_ = -1;
  std::string memory_;  // fromString input
  size_t memoryPos_ = 0;
  uint64_t totalBytes_ = 0;

  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;
  size_t pos_ = 0;  // start of unconsumed data in buf_
  size_t end_ = 0;  // end of valid data in buf_
  bool eof_ = false;
  bool started_ = false;
  uint64_t bufferOffset_ = 0;  // input offset of buf_[0]
  uint64_t line_ = 1;          // physical line at pos_
  uint64_t recordLine_ = 0;
  size_t expectedFields_ = 0;
  bool haveHeader_ = false;

  // Transcoding (encoding != UTF-8): raw bytes read but not yet converted, and where they are.
  struct Transcoder;
  std::unique_ptr<Transcoder> transcoder_;
  bool special_[256] = {};  // separator, line ends, quote

  std::vector<std::string_view> fields_;
  std::vector<uint32_t> escaped_;  // indexes of quoted fields containing ""
  Status fatal_;
};

}  // namespace trialmesh::storage
