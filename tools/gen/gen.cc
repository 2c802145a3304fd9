#include "tools/gen/gen.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>
#include <thread>

namespace trialmesh::gen {
namespace {

// Calendar anchors (days since 1970-01-01).
constexpr int32_t kFirstRandDay = 18628;   // 2021-01-01
constexpr int32_t kLastRandDay = 20088;    // 2024-12-31
constexpr int32_t kDataCutoffDay = 20453;  // 2025-12-31: administrative censoring
constexpr int32_t kMaxTime = 1825;

// Survival model: exponential hazard, per day. Placebo, ECOG 1, age 60, non-smoker has a median
// survival of about 13 months; treatment hazard ratio 0.70.
constexpr double kBaseHazard = 0.693147180559945309 / 400.0;
constexpr double kTreatmentHazardRatio = 0.70;
constexpr double kEcogHazard[5] = {0.75, 1.0, 1.5, 2.2, 3.2};
constexpr double kSmokerHazard = 1.15;
constexpr double kAgeHazardPerYear = 1.02;
constexpr double kDropoutHazard = 0.0001405;  // about 5% of subjects lost per year

constexpr double kLn2 = 0.693147180559945309;

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// 1/k for odd k (index k), and 1/n!; constant-folded by the compiler, hence identical bits.
constexpr double kOddReciprocal[20] = {0, 1.0,      0, 1.0 / 3,  0, 1.0 / 5,  0, 1.0 / 7,
                                       0, 1.0 / 9,  0, 1.0 / 11, 0, 1.0 / 13, 0, 1.0 / 15,
                                       0, 1.0 / 17, 0, 1.0 / 19};
constexpr double kInverseFactorial[15] = {1.0,
                                          1.0,
                                          1.0 / 2,
                                          1.0 / 6,
                                          1.0 / 24,
                                          1.0 / 120,
                                          1.0 / 720,
                                          1.0 / 5040,
                                          1.0 / 40320,
                                          1.0 / 362880,
                                          1.0 / 3628800,
                                          1.0 / 39916800,
                                          1.0 / 479001600,
                                          1.0 / 6227020800,
                                          1.0 / 87178291200};

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Natural log using only exactly-rounded operations, so every platform gets the same bits
// (libm's log may differ in the last ulp, which could flip a rounded day). REQUIRES: x > 0.
double detLog(double x) {
  int e = 0;
  double m = std::frexp(x, &e);  // exact: x = m * 2^e, m in [0.5, 1)
  if (m < 0.70710678118654752) {
    m *= 2.0;
    e -= 1;
  }
  // ln(m) = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 + ...), |z| <= 0.172, so z^2 <= 0.0295 and 11
  // terms reach double precision. Horner form with constant coefficients.
  const double z = (m - 1.0) / (m + 1.0);
  const double z2 = z * z;
  double poly = 1.0 / 21.0;
  for (int k = 19; k >= 1; k -= 2) poly = poly * z2 + kOddReciprocal[k];
  const double sum = z * poly;
  return e * kLn2 + 2.0 * sum;
}

// e^x with the same property as detLog. REQUIRES: |x| < 700.
double detExp(double x) {
  const double k = std::floor(x / kLn2 + 0.5);
  const double r = x - k * kLn2;  // |r| <= 0.35
  // Taylor series to r^14/14! (< 1e-17 relative), Horner form.
  double sum = kInverseFactorial[14];
  for (int n = 13; n >= 0; --n) sum = sum * r + kInverseFactorial[n];
  return std::ldexp(sum, static_cast<int>(k));
}

int32_t clampInt(double v, int32_t lo, int32_t hi) {
  const double r = std::floor(v + 0.5);
  if (r < lo) return lo;
  if (r > hi) return hi;
  return static_cast<int32_t>(r);
}

// Civil date from days since 1970-01-01 (H. Hinnant's algorithm), written as YYYY-MM-DD.
char* writeDate(char* p, int32_t days) {
  int64_t z = static_cast<int64_t>(days) + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  const auto put2 = [](char* q, int64_t v) {
    q[0] = static_cast<char>('0' + v / 10);
    q[1] = static_cast<char>('0' + v % 10);
  };
  put2(p, y / 100);
  put2(p + 2, y % 100);
  p[4] = '-';
  put2(p + 5, m);
  p[7] = '-';
  put2(p + 8, d);
  return p + 10;
}

char* writeInt(char* p, int64_t v) { return std::to_chars(p, p + 24, v).ptr; }

// Fixed-point value `scaled` / 10^decimals, e.g. (273, 1) -> "27.3". REQUIRES: scaled >= 0.
char* writeFixed(char* p, int64_t scaled, int decimals) {
  int64_t div = 1;
  for (int i = 0; i < decimals; ++i) div *= 10;
  p = writeInt(p, scaled / div);
  *p++ = '.';
  int64_t frac = scaled % div;
  for (int i = decimals - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  return p + decimals;
}

constexpr size_t kMaxRowBytes = 192;
constexpr size_t kBigBuffer = size_t{8} << 20;
// Per-site output buffers: 1 MiB each, less when many sites are open at once (at most 64 MiB
// in all: 220 sites get 297 KiB each).
size_t siteBufferBytes(uint32_t sites) {
  return std::clamp<size_t>((size_t{64} << 20) / std::max<uint32_t>(sites, 1), size_t{64} << 10,
                            size_t{1} << 20);
}

// The site number of a code, at least two digits: S01..S99, then S100..S999.
char* writeSiteNumber(char* p, uint32_t site) {
  if (site >= 100) *p++ = static_cast<char>('0' + site / 100);
  *p++ = static_cast<char>('0' + site / 10 % 10);
  *p++ = static_cast<char>('0' + site % 10);
  return p;
}

char* writeRow(char* p, const TrialRow& r) {
  static constexpr char kPrefix[] = "\"LUNG7-S";
  std::memcpy(p, kPrefix, sizeof(kPrefix) - 1);
  p += sizeof(kPrefix) - 1;
  const uint32_t site = r.site + 1;
  p = writeSiteNumber(p, site);
  *p++ = '-';
  char digits[24];
  char* end = std::to_chars(digits, digits + sizeof(digits), r.subject).ptr;
  for (ptrdiff_t pad = 6 - (end - digits); pad > 0; --pad) *p++ = '0';
  std::memcpy(p, digits, static_cast<size_t>(end - digits));
  p += end - digits;
  std::memcpy(p, "\",S", 3);
  p += 3;
  p = writeSiteNumber(p, site);
  std::memcpy(p, r.arm ? ",TRT," : ",PBO,", 5);
  p += 5;
  *p++ = r.sex ? 'M' : 'F';
  *p++ = ',';
  p = writeInt(p, r.age);
  *p++ = ',';
  p = writeFixed(p, r.bmiTenths, 1);
  *p++ = ',';
  if (r.ecog < 0) {
    *p++ = 'N';
    *p++ = 'A';
  } else {
    *p++ = static_cast<char>('0' + r.ecog);
  }
  *p++ = ',';
  if (r.mealcal < 0) {
    *p++ = 'N';
    *p++ = 'A';
  } else {
    p = writeInt(p, r.mealcal);
  }
  *p++ = ',';
  if (r.biomarkerHundredths >= 0) p = writeFixed(p, r.biomarkerHundredths, 2);
  *p++ = ',';
  p = writeInt(p, r.time);
  *p++ = ',';
  *p++ = r.event ? '1' : '0';
  *p++ = ',';
  p = writeDate(p, r.randdt);
  *p++ = ',';
  *p++ = r.smoker ? 'Y' : 'N';
  *p++ = '\n';
  return p;
}

constexpr char kHeader[] =
    "USUBJID,SITEID,ARM,SEX,AGE,BMI,ph.ecog,meal.cal,BIOMARKER,AVAL,EVENT,RANDDT,SMOKER\n";

// A file written through a large buffer; reports the path and the OS reason on failure.
class BufferedFile {
 public:
  Status open(const std::string& path, size_t capacity) {
    path_ = path;
    capacity_ = capacity;
    file_ = std::fopen(path.c_str(), "wb");
    if (file_ == nullptr) return error("cannot create");
    buffer_ = std::make_unique<char[]>(capacity);
    used_ = 0;
    return Status::ok();
  }
  ~BufferedFile() {
    if (file_ != nullptr) std::fclose(file_);
  }
  // Room for at least `bytes` more; flushes when needed.
  Status reserve(size_t bytes) {
    if (used_ + bytes <= capacity_) return Status::ok();
    return flush();
  }
  char* cursor() { return buffer_.get() + used_; }
  Status append(std::string_view text) {
    TM_RETURN_IF_ERROR(reserve(text.size()));
    if (text.size() > capacity_) {  // larger than the buffer: write it through
      if (std::fwrite(text.data(), 1, text.size(), file_) != text.size()) {
        return error("cannot write");
      }
      return Status::ok();
    }
    std::memcpy(cursor(), text.data(), text.size());
    used_ += text.size();
    return Status::ok();
  }
  Status flush() {
    if (used_ > 0 && std::fwrite(buffer_.get(), 1, used_, file_) != used_) {
      return error("cannot write");
    }
    used_ = 0;
    return Status::ok();
  }
  Status close() {
    TM_RETURN_IF_ERROR(flush());
    FILE* f = file_;
    file_ = nullptr;
    if (std::fclose(f) != 0) return error("cannot finish writing");
    return Status::ok();
  }

 private:
  Status error(const char* what) const {
    return Status::ioError(std::string(what) + " '" + path_ + "': " + std::strerror(errno) +
                           " (check that the folder exists, is writable and has free space)");
  }
  std::string path_;
  FILE* file_ = nullptr;
  std::unique_ptr<char[]> buffer_;
  size_t capacity_ = 0;
  size_t used_ = 0;
};

Status writeTextFile(const std::string& path, std::string_view text) {
  BufferedFile file;
  TM_RETURN_IF_ERROR(file.open(path, text.size() + 1));
  TM_RETURN_IF_ERROR(file.append(text));
  return file.close();
}

void appendStringArray(std::string& out, const char* key, const std::vector<std::string>& items) {
  out += key;
  out += " = [";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += '"';
    out += items[i];
    out += '"';
  }
  out += "]\n";
}

struct VariableSpec {
  const char* name;
  const char* column;
  const char* type;
  const char* unit;
  const char* description;
  const char* min;  // TOML literal, or nullptr
  const char* max;
  bool missing;
  std::vector<std::string> levels;
  std::vector<std::string> labels;
};

}  // namespace

Status validateOptions(const GenOptions& options) {
  if (options.sites < 1 || options.sites > kMaxSites) {
    return Status::invalidArgument("--sites " + std::to_string(options.sites) +
                                   " is out of range: a study has 1 to " +
                                   std::to_string(kMaxSites) + " sites (codes S01..S999)");
  }
  if (options.rows > 999'999'999ULL) {
    return Status::invalidArgument("--rows " + std::to_string(options.rows) +
                                   " is too large: at most 999999999 subjects");
  }
  return Status::ok();
}

std::string siteCode(uint32_t site) {
  char code[8] = {'S'};
  return std::string(code, writeSiteNumber(code + 1, site + 1));
}

namespace {

// Rows are drawn in blocks of kBlockRows, each from its own random stream derived from
// (seed, block index), so blocks can be generated in parallel and still give the same file.
constexpr uint64_t kBlockRows = 16384;

// xoshiro256** 1.0 (Blackman & Vigna), seeded through splitmix64.
class Rng {
 public:
  static Rng forBlock(uint64_t seed, uint64_t block) {
    uint64_t x = seed;
    const uint64_t seedHash = splitmix64(x);
    uint64_t y = block ^ 0x5851f42d4c957f2dULL;
    uint64_t s = seedHash ^ splitmix64(y);
    Rng rng;
    for (uint64_t& word : rng.s_) word = splitmix64(s);
    return rng;
  }

  uint64_t u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1).
  double unit() { return static_cast<double>(u64() >> 11) * 0x1.0p-53; }
  // Approximately N(0, 1), bounded to +/-4.24. Irwin-Hall: the sum of 6 uniforms (32 bits each,
  // two per draw) minus 3 has mean 0 and variance 1/2; exact up to the final scaling.
  double stdNormal() {
    uint64_t sum = 0;
    for (int i = 0; i < 3; ++i) {
      const uint64_t x = u64();
      sum += (x >> 32) + (x & 0xffffffffULL);
    }
    return (static_cast<double>(sum) * 0x1.0p-32 - 3.0) * 1.4142135623730950488;
  }
  // Uniform in [0, bound).
  uint64_t below(uint64_t bound) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(u64()) * bound) >> 64);
  }

 private:
  uint64_t s_[4] = {0, 0, 0, 0};
};

// The distributions of one study; immutable, shared by generation threads.
class TrialModel {
 public:
  explicit TrialModel(const GenOptions& options) {
    // Larger sites first: site j recruits in proportion to (2 * sites - j).
    uint64_t total = 0;
    for (uint32_t j = 0; j < options.sites; ++j) {
      total += 2ULL * options.sites - j;
      siteCumulativeWeight_.push_back(total);
    }
    // Built by repeated multiplication (exact, reproducible) instead of pow().
    double f = 1.0;
    for (int age = 60; age <= 95; ++age, f *= kAgeHazardPerYear) ageFactor_[age] = f;
    f = 1.0;
    for (int age = 60; age >= 0; --age, f /= kAgeHazardPerYear) ageFactor_[age] = f;
  }

  // Draws every field except `subject` (numbered in file order by the caller).
  void draw(Rng& rng, TrialRow& r) const {
    const uint64_t w = rng.below(siteCumulativeWeight_.back());
    uint32_t site = 0;
    while (siteCumulativeWeight_[site] <= w) ++site;
    r.site = site;

    r.arm = static_cast<uint8_t>(rng.u64() >> 63);
    r.sex = rng.unit() < 0.42 ? 0 : 1;  // 42% women, typical of lung cancer trials
    r.age = clampInt(63.0 + 9.5 * rng.stdNormal(), 18, 95);
    const double bmiMean = r.sex == 0 ? 25.8 : 26.9;
    r.bmiTenths = clampInt((bmiMean + 4.8 * rng.stdNormal()) * 10.0, 140, 600);
    if (rng.unit() < 0.03) {
      r.ecog = -1;
    } else {
      // ECOG 0..4 with probabilities .30 .45 .18 .06 .01 among the non-missing.
      const double u = rng.unit();
      r.ecog = u < 0.30 ? 0 : u < 0.75 ? 1 : u < 0.93 ? 2 : u < 0.99 ? 3 : 4;
    }
    r.mealcal = rng.unit() < 0.20 ? -1 : clampInt(1050.0 + 380.0 * rng.stdNormal(), 0, 3000);
    if (rng.unit() < 0.15) {
      r.biomarkerHundredths = -1;
    } else {
      // Log-normal, median about 4.5 ng/mL.
      r.biomarkerHundredths = clampInt(detExp(1.5 + 0.6 * rng.stdNormal()) * 100.0, 1, 10000);
    }
    r.smoker = rng.unit() < 0.60 ? 1 : 0;
    r.randdt = kFirstRandDay + static_cast<int32_t>(rng.below(kLastRandDay - kFirstRandDay + 1));

    double hazard = kBaseHazard * ageFactor_[r.age];
    if (r.arm == 1) hazard *= kTreatmentHazardRatio;
    hazard *= r.ecog < 0 ? 1.0 : kEcogHazard[r.ecog];
    if (r.smoker) hazard *= kSmokerHazard;
    // 1 - u is in (0, 1], so the log is finite.
    const double eventTime = -detLog(1.0 - rng.unit()) / hazard;
    const double dropoutTime = -detLog(1.0 - rng.unit()) / kDropoutHazard;
    const double followUp = static_cast<double>(kDataCutoffDay - r.randdt);  // 365..1825
    double observed;
    if (eventTime < dropoutTime && eventTime < followUp) {
      r.event = 1;
      observed = eventTime;
    } else {
      r.event = 0;
      observed = dropoutTime < followUp ? dropoutTime : followUp;
    }
    // Whole days, at least 1, as in ADTTE's AVAL; many subjects share a time (ties).
    const double days = std::ceil(observed);
    r.time = days < 1.0 ? 1 : days > kMaxTime ? kMaxTime : static_cast<int32_t>(days);
  }

 private:
  std::vector<uint64_t> siteCumulativeWeight_;
  double ageFactor_[96] = {};  // hazard multiplier per year of age, 1 at 60
};

// Runs fn(i) for i in [0, n) on up to `threads` threads.
template <typename Fn>
void parallelFor(uint64_t n, uint32_t threads, const Fn& fn) {
  if (threads <= 1 || n <= 1) {
    for (uint64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<uint64_t> nextIndex{0};
  const auto work = [&] {
    for (uint64_t i; (i = nextIndex.fetch_add(1)) < n;) fn(i);
  };
  std::vector<std::thread> pool;
  for (uint32_t t = 1; t < threads && t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
}

uint32_t threadCount(const GenOptions& options) {
  if (options.threads > 0) return options.threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : std::min(hw, 16u);
}

// Generates all rows in parallel blocks and writes them: to files[0] when there is one file,
// else to files[row.site].
Status writeRows(const GenOptions& options, const std::vector<BufferedFile*>& files) {
  constexpr uint64_t kBlocksPerBatch = 32;
  const TrialModel model(options);
  const uint32_t threads = threadCount(options);
  const bool perSite = files.size() > 1;
  const uint64_t blocks = (options.rows + kBlockRows - 1) / kBlockRows;
  std::vector<uint64_t> subjects(options.sites, 0);
  std::vector<std::vector<TrialRow>> rows(kBlocksPerBatch);
  std::vector<std::string> text(kBlocksPerBatch);
  std::vector<std::vector<uint32_t>> rowEnds(kBlocksPerBatch);  // per-site mode: row offsets
  for (uint64_t first = 0; first < blocks; first += kBlocksPerBatch) {
    const uint64_t n = std::min(kBlocksPerBatch, blocks - first);
    parallelFor(n, threads, [&](uint64_t i) {
      const uint64_t block = first + i;
      const uint64_t count = std::min(kBlockRows, options.rows - block * kBlockRows);
      Rng rng = Rng::forBlock(options.seed, block);
      rows[i].resize(count);
      for (TrialRow& r : rows[i]) model.draw(rng, r);
    });
    for (uint64_t i = 0; i < n; ++i) {
      for (TrialRow& r : rows[i]) r.subject = ++subjects[r.site];
    }
    parallelFor(n, threads, [&](uint64_t i) {
      text[i].resize(rows[i].size() * kMaxRowBytes);
      rowEnds[i].clear();
      char* const begin = text[i].data();
      char* p = begin;
      for (const TrialRow& r : rows[i]) {
        p = writeRow(p, r);
        if (perSite) rowEnds[i].push_back(static_cast<uint32_t>(p - begin));
      }
      text[i].resize(static_cast<size_t>(p - begin));
    });
    for (uint64_t i = 0; i < n; ++i) {
      if (!perSite) {
        TM_RETURN_IF_ERROR(files[0]->append(text[i]));
        continue;
      }
      uint32_t start = 0;
      for (size_t k = 0; k < rows[i].size(); ++k) {
        const uint32_t end = rowEnds[i][k];
        TM_RETURN_IF_ERROR(
            files[rows[i][k].site]->append(std::string_view(text[i]).substr(start, end - start)));
        start = end;
      }
    }
  }
  return Status::ok();
}

}  // namespace

struct TrialRowGenerator::State {
  explicit State(const GenOptions& o) : options(o), model(o), subjects(o.sites, 0) {}
  GenOptions options;
  TrialModel model;
  Rng rng;
  uint64_t row = 0;
  std::vector<uint64_t> subjects;
};

TrialRowGenerator::TrialRowGenerator(const GenOptions& options)
    : state_(std::make_unique<State>(options)) {}
TrialRowGenerator::~TrialRowGenerator() = default;
TrialRowGenerator::TrialRowGenerator(TrialRowGenerator&&) noexcept = default;
TrialRowGenerator& TrialRowGenerator::operator=(TrialRowGenerator&&) noexcept = default;

void TrialRowGenerator::next(TrialRow& row) {
  State& s = *state_;
  if (s.row % kBlockRows == 0) s.rng = Rng::forBlock(s.options.seed, s.row / kBlockRows);
  s.model.draw(s.rng, row);
  row.subject = ++s.subjects[row.site];
  ++s.row;
}

std::string trialDictionaryToml(const GenOptions& options) {
  std::vector<std::string> sites;
  for (uint32_t j = 0; j < options.sites; ++j) sites.push_back(siteCode(j));
  const std::vector<VariableSpec> specs = {
      {"site",
       "SITEID",
       "categorical",
       nullptr,
       "Randomizing site",
       nullptr,
       nullptr,
       false,
       sites,
       {}},
      {"arm",
       "ARM",
       "categorical",
       nullptr,
       "Randomized arm (1:1)",
       nullptr,
       nullptr,
       false,
       {"PBO", "TRT"},
       {"Placebo", "Treatment"}},
      {"sex",
       "SEX",
       "categorical",
       nullptr,
       "Sex at birth",
       nullptr,
       nullptr,
       false,
       {"F", "M"},
       {"Female", "Male"}},
      {"age", "AGE", "integer", "years", "Age at randomization", "18", "95", false, {}, {}},
      {"bmi", "BMI", "real", "kg/m2", "Body-mass index at baseline", "14.0", "60.0", false, {}, {}},
      {"ecog",
       "ph.ecog",
       "categorical",
       nullptr,
       "ECOG performance status at baseline",
       nullptr,
       nullptr,
       true,
       {"0", "1", "2", "3", "4"},
       {"Fully active", "Restricted", "Ambulatory", "Limited", "Disabled"}},
      {"mealcal",
       "meal.cal",
       "integer",
       "kcal",
       "Calories consumed at meals",
       "0",
       "3000",
       true,
       {},
       {}},
      {"biomarker",
       "BIOMARKER",
       "real",
       "ng/mL",
       "Serum biomarker at baseline",
       "0.0",
       "100.0",
       true,
       {},
       {}},
      {"time",
       "AVAL",
       "integer",
       "days",
       "Overall survival time (event or censoring)",
       "1",
       "1825",
       false,
       {},
       {}},
      {"event",
       "EVENT",
       "boolean",
       nullptr,
       "Death observed (1) or censored (0)",
       nullptr,
       nullptr,
       false,
       {},
       {}},
      {"randdt",
       "RANDDT",
       "date",
       nullptr,
       "Date of randomization",
       "\"2021-01-01\"",
       "\"2024-12-31\"",
       false,
       {},
       {}},
      {"smoker",
       "SMOKER",
       "boolean",
       nullptr,
       "Current or former smoker (Y/N)",
       nullptr,
       nullptr,
       false,
       {},
       {}},
  };

  std::string out;
  out += "# Data dictionary of the synthetic LUNG-7 trial, written by trialmesh gen.\n";
  out += "study = \"";
  out += kStudyName;
  out += "\"\n";
  for (const VariableSpec& v : specs) {
    out += "\n[[variable]]\nname = \"";
    out += v.name;
    out += "\"\ncolumn = \"";
    out += v.column;
    out += "\"\ntype = \"";
    out += v.type;
    out += "\"\n";
    if (v.unit != nullptr) {
      out += "unit = \"";
      out += v.unit;
      out += "\"\n";
    }
    out += "description = \"";
    out += v.description;
    out += "\"\n";
    if (v.min != nullptr) {
      out += "min = ";
      out += v.min;
      out += "\nmax = ";
      out += v.max;
      out += '\n';
    }
    out += v.missing ? "missing = true\n" : "missing = false\n";
    if (!v.levels.empty()) appendStringArray(out, "levels", v.levels);
    if (!v.labels.empty()) appendStringArray(out, "labels", v.labels);
  }
  return out;
}

Status writeTrialDataset(const GenOptions& options, const std::string& csvPath,
                         const std::string& dictionaryPath) {
  TM_RETURN_IF_ERROR(validateOptions(options));
  TM_RETURN_IF_ERROR(writeTextFile(dictionaryPath, trialDictionaryToml(options)));
  BufferedFile csv;
  TM_RETURN_IF_ERROR(csv.open(csvPath, kBigBuffer));
  TM_RETURN_IF_ERROR(csv.append(kHeader));
  TM_RETURN_IF_ERROR(writeRows(options, {&csv}));
  return csv.close();
}

Result<std::vector<std::string>> writeTrialDatasetPerSite(const GenOptions& options,
                                                          const std::string& dir) {
  TM_RETURN_IF_ERROR(validateOptions(options));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Status::ioError("cannot create folder '" + dir + "': " + ec.message());
  }
  const std::filesystem::path base(dir);
  TM_RETURN_IF_ERROR(
      writeTextFile((base / "dictionary.toml").string(), trialDictionaryToml(options)));
  std::vector<std::string> paths;
  std::vector<std::unique_ptr<BufferedFile>> files;
  for (uint32_t j = 0; j < options.sites; ++j) {
    paths.push_back((base / ("site-" + siteCode(j) + ".csv")).string());
    files.push_back(std::make_unique<BufferedFile>());
    TM_RETURN_IF_ERROR(files.back()->open(paths.back(), siteBufferBytes(options.sites)));
    TM_RETURN_IF_ERROR(files.back()->append(kHeader));
  }
  std::vector<BufferedFile*> targets;
  for (auto& file : files) targets.push_back(file.get());
  TM_RETURN_IF_ERROR(writeRows(options, targets));  // one target per site (or one site)
  for (auto& file : files) TM_RETURN_IF_ERROR(file->close());
  return paths;
}

}  // namespace trialmesh::gen
