#include "storage/csv_reader.h"

#include <fcntl.h>
#include <iconv.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string>

#include "storage/utf8.h"

namespace trialmesh::storage {

namespace {

constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighBits = 0x8080808080808080ull;

// High bit set in each byte of `word` equal to `c`. Bytes above the lowest match may be false
// positives (borrow), so only the lowest set bit is meaningful.
inline uint64_t bytesEqual(uint64_t word, uint8_t c) {
  const uint64_t x = word ^ (kOnes * c);
  return (x - kOnes) & ~x & kHighBits;
}

// Offset of the first separator, line ending or quote in [p, limit), or limit. Sixteen (or eight)
// bytes at a time: most fields are short, so this usually finishes in one step. `special` marks
// the same bytes for the tail.
inline size_t findSpecial(const char* b, size_t p, size_t limit, char delimiter,
                          const bool (&special)[256]) {
#if defined(__SSE2__)
  // Sixteen bytes at a time (SSE2 is part of x86-64): one compare per special byte.
  const __m128i comma = _mm_set1_epi8(delimiter), lf = _mm_set1_epi8('\n'),
                cr = _mm_set1_epi8('\r'), quote = _mm_set1_epi8('"');
  while (p + 16 <= limit) {
    const __m128i w = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + p));
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(w, comma), _mm_cmpeq_epi8(w, lf)),
                                     _mm_or_si128(_mm_cmpeq_epi8(w, cr), _mm_cmpeq_epi8(w, quote)));
    const auto m = static_cast<unsigned>(_mm_movemask_epi8(hit));
    if (m) return p + static_cast<size_t>(std::countr_zero(m));
    p += 16;
  }
#endif
  while (p + 8 <= limit) {
    uint64_t w;
    std::memcpy(&w, b + p, 8);
    const uint64_t m = bytesEqual(w, static_cast<uint8_t>(delimiter)) | bytesEqual(w, '\n') |
                       bytesEqual(w, '\r') | bytesEqual(w, '"');
    if (m) return p + static_cast<size_t>(std::countr_zero(m) >> 3);
    p += 8;
  }
  while (p < limit && !special[static_cast<unsigned char>(b[p])]) ++p;
  return p;
}

const char* iconvName(CsvEncoding e) {
  switch (e) {
    case CsvEncoding::kLatin1:
      return "ISO-8859-1";
    case CsvEncoding::kWindows1252:
      return "CP1252";
    case CsvEncoding::kGb18030:
      return "GB18030";
    case CsvEncoding::kUtf8:
      break;
  }
  return "UTF-8";
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

constexpr size_t kRawBlockBytes = 1u << 20;

}  // namespace

Result<CsvEncoding> parseCsvEncoding(std::string_view name) {
  const std::string n = lower(name);
  if (n == "utf-8" || n == "utf8") return CsvEncoding::kUtf8;
  if (n == "latin1" || n == "latin-1" || n == "iso-8859-1" || n == "iso8859-1")
    return CsvEncoding::kLatin1;
  if (n == "cp1252" || n == "windows-1252" || n == "win1252") return CsvEncoding::kWindows1252;
  if (n == "gb18030" || n == "gbk" || n == "gb2312" || n == "cp936") return CsvEncoding::kGb18030;
  return Status::invalidArgument("unknown encoding '" + std::string(name) +
                                 "'; use utf-8, latin1 (iso-8859-1), windows-1252 (cp1252) or "
                                 "gb18030 (also for gbk and gb2312 files)");
}

std::string_view csvEncodingName(CsvEncoding encoding) {
  switch (encoding) {
    case CsvEncoding::kLatin1:
      return "latin1";
    case CsvEncoding::kWindows1252:
      return "windows-1252";
    case CsvEncoding::kGb18030:
      return "gb18030";
    case CsvEncoding::kUtf8:
      break;
  }
  return "utf-8";
}

Result<char> parseCsvDelimiter(std::string_view text) {
  const std::string t = lower(text);
  if (t == "tab" || t == "\\t" || t == "\t") return '\t';
  if (text.size() == 1 && (text[0] == ',' || text[0] == ';' || text[0] == '|' || text[0] == '\t'))
    return text[0];
  return Status::invalidArgument("delimiter '" + std::string(text) +
                                 "' is not supported; use ',', ';', '|' or tab");
}

// State of the conversion to UTF-8: the iconv descriptor and raw input read but not yet
// converted (an incomplete multibyte sequence at a block end waits here for the next block).
struct CsvReader::Transcoder {
  iconv_t cd = reinterpret_cast<iconv_t>(-1);
  std::unique_ptr<char[]> raw = std::make_unique<char[]>(kRawBlockBytes);
  size_t rawPos = 0, rawEnd = 0;
  bool rawEof = false;
  uint64_t rawConsumed = 0;  // input bytes converted so far
  uint64_t outLines = 0;     // line feeds in the output so far (for error lines)
  // A byte that is not a character: reported once the text converted before it is consumed,
  // so the records before it come out whatever the block size.
  Status pending;
  ~Transcoder() {
    if (cd != reinterpret_cast<iconv_t>(-1)) iconv_close(cd);
  }
};

CsvReader::CsvReader(std::string sourceName, const CsvOptions& options)
    : sourceName_(std::move(sourceName)), options_(options) {
  options_.blockBytes = std::max<size_t>(options_.blockBytes, 16);
  cap_ = options_.blockBytes;
  buf_ = std::make_unique<char[]>(cap_);
  // A delimiter that cannot separate fields (a quote, a line end) would misparse every record:
  // refuse to read rather than guess.
  if (auto d = parseCsvDelimiter(std::string_view(&options_.delimiter, 1)); !d.isOk()) {
    fatal_ = d.status();
    options_.delimiter = ',';  // keeps the tables below well-defined; next() returns fatal_
  }
  for (char c : {options_.delimiter, '\n', '\r', '"'})
    special_[static_cast<unsigned char>(c)] = true;
  if (options_.encoding != CsvEncoding::kUtf8) {
    transcoder_ = std::make_unique<Transcoder>();
    transcoder_->cd = iconv_open("UTF-8", iconvName(options_.encoding));
    if (transcoder_->cd == reinterpret_cast<iconv_t>(-1)) {
      fatal_ = Status::internal(std::string("cannot convert from ") + iconvName(options_.encoding) +
                                " to UTF-8 on this system (iconv: " + std::strerror(errno) +
                                "); is the libc6 gconv module present?");
    }
  }
}

uint64_t CsvReader::bytesConsumed() const {
  if (transcoder_) return std::min(transcoder_->rawConsumed, std::max<uint64_t>(totalBytes_, 1));
  return bufferOffset_ + pos_;
}

// Reads raw input (file or memory) into out[0, capacity); got = 0 at the end of input.
Status CsvReader::readInput(char* out, size_t capacity, size_t& got) {
  got = 0;
  if (fd_ >= 0) {
    for (;;) {
      ssize_t n = ::read(fd_, out, capacity);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::ioError("cannot read CSV file '" + sourceName_ +
                               "': " + std::strerror(errno));
      }
      got = static_cast<size_t>(n);
      return Status::ok();
    }
  }
  got = std::min(capacity, memory_.size() - memoryPos_);
  std::memcpy(out, memory_.data() + memoryPos_, got);
  memoryPos_ += got;
  return Status::ok();
}

// Converts raw input to UTF-8 into out[0, capacity); got = 0 only at the end of input. A byte
// sequence that is not valid in the declared encoding is a fatal error naming the line and the
// file offset, since a silent replacement would store a wrong value.
Status CsvReader::transcode(char* out, size_t capacity, size_t& got) {
  Transcoder& t = *transcoder_;
  got = 0;
  if (!t.pending.isOk()) return t.pending;
  while (got == 0) {
    if (t.rawPos == t.rawEnd || (!t.rawEof && t.rawEnd - t.rawPos < 8)) {
      // Keep an incomplete sequence and read more behind it.
      std::memmove(t.raw.get(), t.raw.get() + t.rawPos, t.rawEnd - t.rawPos);
      t.rawEnd -= t.rawPos;
      t.rawPos = 0;
      if (!t.rawEof) {
        size_t n = 0;
        TM_RETURN_IF_ERROR(readInput(t.raw.get() + t.rawEnd, kRawBlockBytes - t.rawEnd, n));
        if (n == 0) t.rawEof = true;
        t.rawEnd += n;
      }
      if (t.rawPos == t.rawEnd) return Status::ok();  // end of input
    }
    char* in = t.raw.get() + t.rawPos;
    size_t inLeft = t.rawEnd - t.rawPos;
    char* o = out;
    size_t outLeft = capacity;
    const size_t r = iconv(t.cd, &in, &inLeft, &o, &outLeft);
    const int err = r == static_cast<size_t>(-1) ? errno : 0;
    const size_t used = static_cast<size_t>(in - (t.raw.get() + t.rawPos));
    got = static_cast<size_t>(o - out);
    t.outLines += static_cast<uint64_t>(std::count(out, out + got, '\n'));
    t.rawPos += used;
    t.rawConsumed += used;
    if (err == EILSEQ || (err == EINVAL && t.rawEof)) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(t.raw[t.rawPos]));
      t.pending = Status::invalidArgument(
          sourceName_ + ":" + std::to_string(t.outLines + 1) + ": byte " + hex + " at offset " +
          std::to_string(t.rawConsumed) + " is " +
          (err == EINVAL ? "an incomplete character at the end of the file" : "not a character") +
          " in " + std::string(csvEncodingName(options_.encoding)) +
          "; check the file's encoding (--encoding)");
      return got > 0 ? Status::ok() : t.pending;
    }
    if (err == E2BIG && got == 0)  // refill() leaves room for a character; never expected
      return Status::internal("CSV transcoding: no room for one character");
    // EINVAL with more input: the tail waits for the next block; E2BIG: out is full.
  }
  return Status::ok();
}

CsvReader::~CsvReader() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<CsvReader>> CsvReader::openFile(const std::string& path,
                                                       const CsvOptions& options) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    std::string msg = "cannot open CSV file '" + path + "': " + std::strerror(err);
    if (err == ENOENT) return Status::notFound(msg);
    if (err == EACCES) return Status::permissionDenied(msg);
    return Status::ioError(msg);
  }
  return openFd(fd, path, options);
}

Result<std::unique_ptr<CsvReader>> CsvReader::openFd(int fd, std::string sourceName,
                                                     const CsvOptions& options) {
  if (fd < 0) return Status::invalidArgument("no open CSV file for '" + sourceName + "'");
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Status::invalidArgument("'" + sourceName + "' is a directory, not a CSV file");
  }
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
  std::unique_ptr<CsvReader> reader(new CsvReader(std::move(sourceName), options));
  reader->fd_ = fd;
  reader->totalBytes_ = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
  return reader;
}

std::unique_ptr<CsvReader> CsvReader::fromString(std::string data, std::string sourceName,
                                                 const CsvOptions& options) {
  std::unique_ptr<CsvReader> reader(new CsvReader(std::move(sourceName), options));
  reader->totalBytes_ = data.size();
  reader->memory_ = std::move(data);
  return reader;
}

void CsvReader::fail(uint64_t line, const std::string& message) {
  fatal_ = Status::invalidArgument(sourceName_ + ":" + std::to_string(line) + ": " + message);
}

// Moves the unconsumed tail to the front, grows the buffer when a record fills it, and reads
// until the buffer is full or the input ends.
Status CsvReader::refill() {
  if (pos_ > 0) {
    std::memmove(buf_.get(), buf_.get() + pos_, end_ - pos_);
    bufferOffset_ += pos_;
    end_ -= pos_;
    pos_ = 0;
  }
  // Transcoding writes whole UTF-8 characters (up to 4 bytes), so it needs that much room.
  const size_t minFree = transcoder_ ? 8 : 1;
  if (cap_ - end_ < minFree) {
    size_t newCap = cap_ * 2;
    auto bigger = std::make_unique<char[]>(newCap);
    std::memcpy(bigger.get(), buf_.get(), end_);
    buf_ = std::move(bigger);
    cap_ = newCap;
  }
  const size_t before = end_;
  while (cap_ - end_ >= minFree && !eof_) {
    size_t n = 0;
    Status read = transcoder_ ? transcode(buf_.get() + end_, cap_ - end_, n)
                              : readInput(buf_.get() + end_, cap_ - end_, n);
    if (!read.isOk()) {
      if (end_ > before) break;  // hand out what was read; the error comes on the next refill
      fatal_ = read;
      return fatal_;
    }
    if (n == 0) eof_ = true;
    end_ += n;
  }
  if (!started_) {
    started_ = true;
    if (end_ >= 3 && std::memcmp(buf_.get(), "\xEF\xBB\xBF", 3) == 0) pos_ = 3;
  }
  return Status::ok();
}

// Scans one record starting at pos_ without modifying the buffer, so that a record cut by the
// end of the buffer can be rescanned after refill(). On kRecord, `end` is the offset after the
// record's line ending and `lines` the number of line feeds it spans.
CsvReader::Scan CsvReader::scanRecord(size_t& end, uint64_t& lines) {
  fields_.clear();
  escaped_.clear();
  const char* b = buf_.get();
  const size_t limit = end_;
  size_t p = pos_;
  lines = 0;
  for (;;) {
    // One field starts at p.
    if (p < limit && b[p] == '"') {
      const uint64_t fieldLine = line_ + lines;
      size_t q = p + 1;
      bool escapes = false;
      size_t close;
      for (;;) {
        const void* hit = std::memchr(b + q, '"', limit - q);
        size_t found = hit ? static_cast<size_t>(static_cast<const char*>(hit) - b) : limit;
        for (size_t k = q; k < found; ++k) lines += b[k] == '\n';
        if (!hit) {
          if (!eof_) return Scan::kNeedMore;
          fail(fieldLine,
               "quoted field starting on this line is never closed (missing '\"' "
               "before the end of the file)");
          return Scan::kError;
        }
        if (found + 1 == limit && !eof_) return Scan::kNeedMore;
        if (found + 1 < limit && b[found + 1] == '"') {
          escapes = true;
          q = found + 2;
          continue;
        }
        close = found;
        break;
      }
      if (escapes) escaped_.push_back(static_cast<uint32_t>(fields_.size()));
      fields_.emplace_back(b + p + 1, close - p - 1);
      p = close + 1;
      if (p == limit) {
        if (!eof_) return Scan::kNeedMore;
        end = p;
        return Scan::kRecord;
      }
      const char c = b[p];
      if (c == options_.delimiter) {
        ++p;
        continue;
      }
      if (c == '\n') {
        end = p + 1;
        ++lines;
        return Scan::kRecord;
      }
      if (c == '\r') {
        if (p + 1 == limit && !eof_) return Scan::kNeedMore;
        if (p + 1 < limit && b[p + 1] == '\n') {
          end = p + 2;
          ++lines;
          return Scan::kRecord;
        }
      }
      fail(line_ + lines,
           "unexpected character after the closing quote of field " +
               std::to_string(fields_.size()) +
               "; a quoted field must be followed by the delimiter or the end of the line "
               "(write a literal quote as \"\")");
      return Scan::kError;
    }
    // Unquoted field: runs to the next separator or line ending; a bare CR is data.
    size_t q = p;
    for (;;) {
      q = findSpecial(b, q, limit, options_.delimiter, special_);
      if (q == limit) {
        if (!eof_) return Scan::kNeedMore;
        fields_.emplace_back(b + p, q - p);
        end = q;
        return Scan::kRecord;
      }
      const char c = b[q];
      if (c == options_.delimiter) {
        fields_.emplace_back(b + p, q - p);
        p = q + 1;
        break;
      }
      if (c == '\n') {
        fields_.emplace_back(b + p, q - p);
        end = q + 1;
        ++lines;
        return Scan::kRecord;
      }
      if (c == '\r') {
        if (q + 1 == limit && !eof_) return Scan::kNeedMore;
        if (q + 1 < limit && b[q + 1] == '\n') {
          fields_.emplace_back(b + p, q - p);
          end = q + 2;
          ++lines;
          return Scan::kRecord;
        }
        ++q;  // bare CR inside a field
        continue;
      }
      // c == '"'
      fail(line_ + lines, "stray '\"' inside unquoted field " + std::to_string(fields_.size() + 1) +
                              "; quote the whole field and double any quote inside it "
                              "(\"like \"\"this\"\"\")");
      return Scan::kError;
    }
  }
}

void CsvReader::unescapeFields() {
  for (uint32_t index : escaped_) {
    std::string_view f = fields_[index];
    // The field lies inside buf_, which we own; removing quotes only shortens it.
    char* out = const_cast<char*>(f.data());
    size_t w = 0;
    for (size_t r = 0; r < f.size(); ++r) {
      out[w++] = f[r];
      if (f[r] == '"') ++r;  // skip the second quote of ""
    }
    fields_[index] = std::string_view(out, w);
  }
}

Result<bool> CsvReader::next() {
  if (!fatal_.isOk()) return fatal_;
  if (!started_) TM_RETURN_IF_ERROR(refill());
  for (;;) {
    if (pos_ == end_) {
      if (eof_) {
        fields_.clear();
        return false;
      }
      TM_RETURN_IF_ERROR(refill());
      continue;
    }
    size_t recordEnd = 0;
    uint64_t lines = 0;
    Scan scan = scanRecord(recordEnd, lines);
    if (scan == Scan::kError) return fatal_;
    if (scan == Scan::kNeedMore) {
      TM_RETURN_IF_ERROR(refill());
      continue;
    }
    const size_t start = pos_;
    recordLine_ = line_;
    line_ += lines;
    pos_ = recordEnd;
    // An empty line (only a line ending) carries no record.
    const size_t raw = recordEnd - start;
    const char* rec = buf_.get() + start;
    if (raw == 0 || (raw == 1 && rec[0] == '\n') ||
        (raw == 2 && rec[0] == '\r' && rec[1] == '\n')) {
      continue;
    }
    if (options_.validateUtf8) {
      size_t bad = detail::findInvalidUtf8(rec, raw);
      if (bad != std::string_view::npos) {
        uint64_t badLine = recordLine_ + static_cast<uint64_t>(std::count(rec, rec + bad, '\n'));
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(rec[bad]));
        fail(badLine, std::string("invalid UTF-8 (byte ") + hex +
                          "); save the file as UTF-8, or give its encoding with --encoding "
                          "(latin1, windows-1252, gb18030)");
        return fatal_;
      }
    }
    if (!escaped_.empty()) unescapeFields();
    if (options_.requireUniformFieldCount) {
      if (!haveHeader_) {
        haveHeader_ = true;
        expectedFields_ = fields_.size();
      } else if (fields_.size() != expectedFields_) {
        return Status::invalidArgument(sourceName_ + ":" + std::to_string(recordLine_) +
                                       ": record has " + std::to_string(fields_.size()) +
                                       " fields but the header has " +
                                       std::to_string(expectedFields_));
      }
    }
    return true;
  }
}

}  // namespace trialmesh::storage
