#include "ethics/approval.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>

#include <toml++/toml.h>
#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "common/toml_describe.h"
#include "crypto/hash.h"
#include "ethics/codec.h"

namespace trialmesh::ethics {
namespace {

using detail::bytesOf;
using detail::Reader;
using detail::Writer;

// Version 1: up to the query budget. Version 2 appends the aggregation policy; an approval whose
// policy is the default is always written as version 1, so each approval has one encoding and
// the ids of approvals signed before version 2 existed stay valid.
constexpr uint8_t kApprovalFormatVersion = 1;
constexpr uint8_t kApprovalFormatVersionWithPolicy = 2;
// Version 3: the version 2 tail (even for the default policy), then model_min_site_rows; used
// only when that is set, so approvals without it keep their version 1 or 2 bytes and ids.
constexpr uint8_t kApprovalFormatVersionWithModelRule = 3;
// Version 4: the version 3 tail (model_min_site_rows may be 0 there), then
// surveillance_min_interval_ms; used only when that is set, so earlier approvals keep their
// bytes and ids.
constexpr uint8_t kApprovalFormatVersionWithSurveillance = 4;
// Version 1: up to the signer. Version 2 appends the issue time (issue #13 item 7), which
// orders same-day statements; every newly signed statement is version 2, and stored or
// submitted version 1 statements keep their bytes, signature and meaning.
constexpr uint8_t kStatementFormatVersion = 1;
constexpr uint8_t kStatementFormatVersionWithIssueTime = 2;
constexpr std::string_view kApprovalContext{"trialmesh/approval/v1\0", 22};
constexpr std::string_view kStatementContext{"trialmesh/ethics-statement/v1\0", 30};

bool isLeap(int32_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
int daysIn(int32_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && isLeap(y) ? 29 : kDays[m - 1];
}
bool validDate(int64_t y, int64_t m, int64_t d) {
  return y >= 1 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 &&
         d <= daysIn(static_cast<int32_t>(y), static_cast<int>(m));
}

void writeDate(Writer& w, const Date& d) {
  w.u32(static_cast<uint32_t>(d.year));
  w.u8(d.month);
  w.u8(d.day);
}
Result<Date> readDate(Reader& r, std::string_view field) {
  Date d;
  TM_ASSIGN_OR_RETURN(uint32_t y, r.u32(field));
  TM_ASSIGN_OR_RETURN(d.month, r.u8(field));
  TM_ASSIGN_OR_RETURN(d.day, r.u8(field));
  d.year = static_cast<int32_t>(y);
  if (!validDate(d.year, d.month, d.day)) {
    return Status::corruption(r.what() + ": field '" + std::string(field) + "' is not a date");
  }
  return d;
}

void sortUnique(std::vector<std::string>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}
void sortUnique(std::vector<crypto::PublicKey>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}
template <typename T>
bool contains(const std::vector<T>& v, const T& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

std::string shortKey(const crypto::PublicKey& k) { return k.toText().substr(0, 12) + "…"; }

// ---- TOML ----

class TomlReader {
 public:
  explicit TomlReader(std::string_view source) : source_(source) {}

  Status error(const toml::node& node, std::string_view key, const std::string& msg) const {
    return Status::invalidArgument(source_ + ":" + std::to_string(node.source().begin.line) +
                                   ": key '" + std::string(key) + "': " + msg);
  }
  Status missing(std::string_view key) const {
    return Status::invalidArgument(source_ + ": required key '" + std::string(key) +
                                   "' is missing");
  }

  Result<std::string> string(const toml::table& t, std::string_view key) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return missing(key);
    if (!n->is_string()) return error(*n, key, "expected a string, got " + describeTomlNode(*n));
    std::string v = n->as_string()->get();
    if (v.empty()) return error(*n, key, "must not be empty");
    return v;
  }
  Result<int64_t> integer(const toml::table& t, std::string_view key, int64_t min,
                          int64_t max) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return missing(key);
    if (!n->is_integer()) return error(*n, key, "expected an integer, got " + describeTomlNode(*n));
    const int64_t v = n->as_integer()->get();
    if (v < min || v > max) {
      return error(*n, key,
                   "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                       ", got " + std::to_string(v));
    }
    return v;
  }
  // A finite number > 0, written as a TOML float or integer.
  Result<double> positive(const toml::table& t, std::string_view key) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return missing(key);
    double v = 0;
    if (n->is_integer()) {
      v = static_cast<double>(n->as_integer()->get());
    } else if (n->is_floating_point()) {
      v = n->as_floating_point()->get();
    } else {
      return error(*n, key, "expected a number, got " + describeTomlNode(*n));
    }
    if (!std::isfinite(v) || !(v > 0)) return error(*n, key, "must be a number above 0");
    return v;
  }
  Result<Date> date(const toml::table& t, std::string_view key) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return missing(key);
    if (n->is_date()) {
      const toml::date d = n->as_date()->get();
      if (!validDate(d.year, d.month, d.day)) return error(*n, key, "is not a calendar date");
      return Date{d.year, d.month, d.day};
    }
    if (n->is_string()) {
      auto d = parseDate(n->as_string()->get());
      if (!d.isOk()) return error(*n, key, d.status().message());
      return *d;
    }
    return error(*n, key, "expected a date like 2026-10-01, got " + describeTomlNode(*n));
  }
  // An array of non-empty strings; `allowEmpty` says whether [] is acceptable.
  Result<std::vector<std::string>> strings(const toml::table& t, std::string_view key,
                                           bool allowEmpty) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return missing(key);
    const toml::array* arr = n->as_array();
    if (arr == nullptr)
      return error(*n, key, "expected an array of strings, got " + describeTomlNode(*n));
    if (arr->empty() && !allowEmpty) return error(*n, key, "must list at least one value");
    std::vector<std::string> out;
    for (size_t i = 0; i < arr->size(); ++i) {
      const toml::node& item = *arr->get(i);
      if (!item.is_string() || item.as_string()->get().empty()) {
        return error(item, key,
                     "item " + std::to_string(i + 1) + " must be a non-empty string, got " +
                         describeTomlNode(item));
      }
      out.push_back(item.as_string()->get());
    }
    return out;
  }
  Result<crypto::PublicKey> key(const toml::node& n, std::string_view key) const {
    if (!n.is_string())
      return error(n, key, "expected a public key \"tmpk1...\", got " + describeTomlNode(n));
    auto k = crypto::parsePublicKey(n.as_string()->get());
    if (!k.isOk()) return error(n, key, k.status().message());
    return *k;
  }

 private:
  std::string source_;
};

constexpr std::string_view kApprovalKeys[] = {"study",
                                              "protocol_version",
                                              "lead_committee",
                                              "sites",
                                              "coordinators",
                                              "dictionary_hash",
                                              "variables",
                                              "analyses",
                                              "disclosive_analyses",
                                              "min_cell_size",
                                              "valid_from",
                                              "valid_until",
                                              "query_budget",
                                              "aggregation",
                                              "min_sites",
                                              "dp_epsilon_per_query",
                                              "dp_budget",
                                              "time_bin",
                                              "model_min_site_rows",
                                              "surveillance_min_interval_ms"};

Result<Hash> parseHashHex(std::string_view hex) {
  if (hex.size() != 64)
    return Status::invalidArgument("expected 64 hexadecimal characters, got " +
                                   std::to_string(hex.size()));
  Hash h{};
  for (size_t i = 0; i < 32; ++i) {
    int v = 0;
    for (int j = 0; j < 2; ++j) {
      const char c = hex[2 * i + static_cast<size_t>(j)];
      int d;
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if (c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        d = c - 'A' + 10;
      else
        return Status::invalidArgument(std::string("character '") + c + "' at position " +
                                       std::to_string(2 * i + static_cast<size_t>(j) + 1) +
                                       " is not hexadecimal");
      v = v * 16 + d;
    }
    h[i] = static_cast<uint8_t>(v);
  }
  return h;
}

bool validStudyName(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

// Shortest text that reads back to the same double (for messages).
std::string numberText(double v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}
// The same as a TOML float: "1" would read back as an integer, so it becomes "1.0".
using detail::realNumberText;

std::string knownAnalysesText() {
  std::string s;
  for (auto a : kKnownAnalyses) s += (s.empty() ? "" : ", ") + std::string(a);
  return s;
}

}  // namespace

std::string Date::toString() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(year), unsigned{month},
                unsigned{day});
  return buf;
}

Result<Date> parseDate(std::string_view text) {
  int y = 0;
  unsigned m = 0, d = 0;
  char tail = 0;
  const std::string s(text);
  if (s.size() != 10 || std::sscanf(s.c_str(), "%4d-%2u-%2u%c", &y, &m, &d, &tail) != 3 ||
      !validDate(y, m, d)) {
    return Status::invalidArgument("'" + s + "' is not a date of the form YYYY-MM-DD");
  }
  return Date{y, static_cast<uint8_t>(m), static_cast<uint8_t>(d)};
}

Date dateFromUnixMs(int64_t ms) {
  using namespace std::chrono;
  const sys_days days = floor<std::chrono::days>(sys_time<milliseconds>(milliseconds(ms)));
  const year_month_day ymd(days);
  return Date{static_cast<int32_t>(int(ymd.year())), static_cast<uint8_t>(unsigned(ymd.month())),
              static_cast<uint8_t>(unsigned(ymd.day()))};
}

const char* aggregationModeName(AggregationMode mode) {
  switch (mode) {
    case AggregationMode::kPlain:
      return "plain";
    case AggregationMode::kSecure:
      return "secure";
    case AggregationMode::kSecureDp:
      return "secure-dp";
  }
  return "unknown";
}

bool isDisclosiveAnalysis(std::string_view a) {
  return std::find(std::begin(kDisclosiveAnalyses), std::end(kDisclosiveAnalyses), a) !=
         std::end(kDisclosiveAnalyses);
}

namespace {

// The issue #5 keys: aggregation, min_sites, dp_epsilon_per_query, dp_budget, time_bin.
Status parseAggregationPolicy(const toml::table& root, const TomlReader& r, Approval& a) {
  if (const toml::node* n = root.get("aggregation")) {
    TM_ASSIGN_OR_RETURN(std::string mode, r.string(root, "aggregation"));
    if (mode == "plain") {
      a.aggregation = AggregationMode::kPlain;
    } else if (mode == "secure") {
      a.aggregation = AggregationMode::kSecure;
    } else if (mode == "secure-dp") {
      a.aggregation = AggregationMode::kSecureDp;
    } else {
      return r.error(*n, "aggregation",
                     "unknown mode '" + mode + "' (known: plain, secure, secure-dp)");
    }
  }
  if (root.get("min_sites") != nullptr) {
    TM_ASSIGN_OR_RETURN(int64_t minSites, r.integer(root, "min_sites", 2, UINT32_MAX));
    a.minSites = static_cast<uint32_t>(minSites);
  }
  const bool dp = a.aggregation == AggregationMode::kSecureDp;
  for (const char* key : {"dp_epsilon_per_query", "dp_budget"}) {
    const toml::node* n = root.get(key);
    if (n != nullptr && !dp) {
      return r.error(*n, key,
                     "is only allowed with aggregation = \"secure-dp\" (this approval's mode is '" +
                         std::string(aggregationModeName(a.aggregation)) + "')");
    }
    if (n == nullptr && dp) {
      return Status::invalidArgument(r.missing(key).message() +
                                     " (aggregation = \"secure-dp\" needs dp_epsilon_per_query "
                                     "and dp_budget)");
    }
  }
  if (dp) {
    TM_ASSIGN_OR_RETURN(a.dpEpsilonPerQuery, r.positive(root, "dp_epsilon_per_query"));
    TM_ASSIGN_OR_RETURN(a.dpBudget, r.positive(root, "dp_budget"));
    // The budget ledger (privacy_budget.h) counts ε in units of 1e-9 up to 1e6.
    for (const char* key : {"dp_epsilon_per_query", "dp_budget"}) {
      const double v = std::string_view(key) == "dp_budget" ? a.dpBudget : a.dpEpsilonPerQuery;
      if (v < 1e-9 || v > 1e6) {
        return r.error(*root.get(key), key, "must be between 1e-9 and 1e6, got " + numberText(v));
      }
    }
    if (a.dpBudget < a.dpEpsilonPerQuery) {
      return r.error(*root.get("dp_budget"), "dp_budget",
                     numberText(a.dpBudget) + " is below dp_epsilon_per_query " +
                         numberText(a.dpEpsilonPerQuery) + ": not even one query would fit");
    }
  }
  if (root.get("time_bin") != nullptr) {
    TM_ASSIGN_OR_RETURN(double bin, r.positive(root, "time_bin"));
    a.timeBin = bin;
  }
  if (root.get("model_min_site_rows") != nullptr) {
    TM_ASSIGN_OR_RETURN(int64_t rows, r.integer(root, "model_min_site_rows", 1, UINT32_MAX));
    a.modelMinSiteRows = static_cast<uint32_t>(rows);
  }
  if (root.get("surveillance_min_interval_ms") != nullptr) {
    // At most a year: a longer interval is a typo, and forbidding surveillance is done by not
    // listing "count" or the date variable, not by an endless interval.
    constexpr int64_t kYearMs = 366LL * 24 * 3600 * 1000;
    TM_ASSIGN_OR_RETURN(int64_t ms, r.integer(root, "surveillance_min_interval_ms", 1, kYearMs));
    a.surveillanceMinIntervalMs = static_cast<uint64_t>(ms);
  }
  return Status::ok();
}

}  // namespace

Result<Approval> parseApprovalToml(std::string_view text, std::string_view sourceName) {
  const std::string source(sourceName);
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Status::invalidArgument(source + ":" + std::to_string(e.source().begin.line) + ":" +
                                   std::to_string(e.source().begin.column) + ": " +
                                   std::string(e.description()));
  }
  TomlReader r(source);
  for (const auto& [k, node] : root) {
    if (std::find(std::begin(kApprovalKeys), std::end(kApprovalKeys), k.str()) ==
        std::end(kApprovalKeys)) {
      return r.error(node, k.str(), "unknown key (misspelt?); see docs/ethics.md for the format");
    }
  }
  Approval a;
  TM_ASSIGN_OR_RETURN(a.study, r.string(root, "study"));
  if (!validStudyName(a.study)) {
    return r.error(*root.get("study"), "study",
                   "'" + a.study + "' may only use letters, digits, '-', '_' and '.' (max 64)");
  }
  TM_ASSIGN_OR_RETURN(int64_t version, r.integer(root, "protocol_version", 1, UINT32_MAX));
  a.protocolVersion = static_cast<uint32_t>(version);

  const toml::node* lead = root.get("lead_committee");
  if (lead == nullptr) return r.missing("lead_committee");
  if (!lead->is_table()) {
    return r.error(
        *lead, "lead_committee",
        "expected a table { name = \"...\", key = \"tmpk1...\" }, got " + describeTomlNode(*lead));
  }
  const toml::table& leadTable = *lead->as_table();
  TM_ASSIGN_OR_RETURN(a.leadCommittee.name, r.string(leadTable, "name"));
  const toml::node* leadKey = leadTable.get("key");
  if (leadKey == nullptr) return r.missing("lead_committee.key");
  TM_ASSIGN_OR_RETURN(a.leadCommittee.key, r.key(*leadKey, "lead_committee.key"));

  TM_ASSIGN_OR_RETURN(a.sites, r.strings(root, "sites", false));
  const toml::node* coords = root.get("coordinators");
  if (coords == nullptr) return r.missing("coordinators");
  if (!coords->is_array() || coords->as_array()->empty()) {
    return r.error(*coords, "coordinators", "expected a non-empty array of public keys");
  }
  for (const toml::node& item : *coords->as_array()) {
    TM_ASSIGN_OR_RETURN(auto k, r.key(item, "coordinators"));
    a.coordinators.push_back(k);
  }
  TM_ASSIGN_OR_RETURN(std::string dict, r.string(root, "dictionary_hash"));
  auto dictHash = parseHashHex(dict);
  if (!dictHash.isOk()) {
    return r.error(
        *root.get("dictionary_hash"), "dictionary_hash",
        dictHash.status().message() + " (the SHA-256 printed by `trialmesh dictionary hash`)");
  }
  a.dictionaryHash = *dictHash;
  TM_ASSIGN_OR_RETURN(a.variables, r.strings(root, "variables", false));
  TM_ASSIGN_OR_RETURN(a.analyses, r.strings(root, "analyses", false));
  const toml::node* analysesNode = root.get("analyses");
  for (const std::string& an : a.analyses) {
    if (isDisclosiveAnalysis(an)) {
      return r.error(*analysesNode, "analyses",
                     "'" + an + "' is disclosive; list it in disclosive_analyses to allow it");
    }
    if (std::find(std::begin(kKnownAnalyses), std::end(kKnownAnalyses), an) ==
        std::end(kKnownAnalyses)) {
      return r.error(*analysesNode, "analyses",
                     "unknown analysis '" + an + "' (known: " + knownAnalysesText() + ")");
    }
  }
  if (const toml::node* n = root.get("disclosive_analyses")) {
    TM_ASSIGN_OR_RETURN(a.disclosiveAnalyses, r.strings(root, "disclosive_analyses", true));
    for (const std::string& an : a.disclosiveAnalyses) {
      if (!isDisclosiveAnalysis(an)) {
        return r.error(*n, "disclosive_analyses",
                       "'" + an +
                           "' is not a disclosive analysis (those are: min, max); list it "
                           "in analyses");
      }
    }
  }
  TM_ASSIGN_OR_RETURN(int64_t minCell, r.integer(root, "min_cell_size", 1, UINT32_MAX));
  a.minCellSize = static_cast<uint32_t>(minCell);
  TM_ASSIGN_OR_RETURN(a.validFrom, r.date(root, "valid_from"));
  TM_ASSIGN_OR_RETURN(a.validUntil, r.date(root, "valid_until"));
  if (!(a.validFrom < a.validUntil)) {
    return r.error(*root.get("valid_until"), "valid_until",
                   a.validUntil.toString() + " must be after valid_from " + a.validFrom.toString());
  }
  if (root.get("query_budget") != nullptr) {
    TM_ASSIGN_OR_RETURN(int64_t budget, r.integer(root, "query_budget", 1, INT64_MAX));
    a.queryBudget = static_cast<uint64_t>(budget);
  }
  TM_RETURN_IF_ERROR(parseAggregationPolicy(root, r, a));
  canonicalise(a);
  return a;
}

std::string approvalToToml(const Approval& a) {
  // A TOML basic string: quote and backslash escaped, and every control character but tab as
  // \u00XX (TOML 1.0 forbids them raw), so any accepted value reads back to itself.
  auto quote = [](const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if ((u < 0x20 && c != '\t') || u == 0x7f) {
        char esc[8];
        std::snprintf(esc, sizeof esc, "\\u%04X", u);
        out += esc;
      } else {
        out += c;
      }
    }
    return out + "\"";
  };
  auto list = [&](const std::vector<std::string>& v) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + quote(v[i]);
    return out + "]";
  };
  std::vector<std::string> coords;
  for (const auto& k : a.coordinators) coords.push_back(k.toText());
  std::ostringstream o;
  o << "study = " << quote(a.study) << "\n"
    << "protocol_version = " << a.protocolVersion << "\n"
    << "lead_committee = { name = " << quote(a.leadCommittee.name)
    << ", key = " << quote(a.leadCommittee.key.toText()) << " }\n"
    << "sites = " << list(a.sites) << "\n"
    << "coordinators = " << list(coords) << "\n"
    << "dictionary_hash = " << quote(hashHex(a.dictionaryHash)) << "\n"
    << "variables = " << list(a.variables) << "\n"
    << "analyses = " << list(a.analyses) << "\n"
    << "disclosive_analyses = " << list(a.disclosiveAnalyses) << "\n"
    << "min_cell_size = " << a.minCellSize << "\n"
    << "valid_from = " << a.validFrom.toString() << "\n"
    << "valid_until = " << a.validUntil.toString() << "\n";
  if (a.queryBudget) o << "query_budget = " << *a.queryBudget << "\n";
  o << "aggregation = " << quote(aggregationModeName(a.aggregation)) << "\n"
    << "min_sites = " << a.minSites << "\n";
  if (a.aggregation == AggregationMode::kSecureDp) {
    o << "dp_epsilon_per_query = " << realNumberText(a.dpEpsilonPerQuery) << "\n"
      << "dp_budget = " << realNumberText(a.dpBudget) << "\n";
  }
  if (a.timeBin) o << "time_bin = " << realNumberText(*a.timeBin) << "\n";
  if (a.modelMinSiteRows > 0) o << "model_min_site_rows = " << a.modelMinSiteRows << "\n";
  if (a.surveillanceMinIntervalMs > 0)
    o << "surveillance_min_interval_ms = " << a.surveillanceMinIntervalMs << "\n";
  return o.str();
}

void canonicalise(Approval& a) {
  sortUnique(a.sites);
  sortUnique(a.coordinators);
  sortUnique(a.variables);
  sortUnique(a.analyses);
  sortUnique(a.disclosiveAnalyses);
}

namespace {
bool hasDefaultPolicy(const Approval& a) {
  return a.aggregation == AggregationMode::kSecure && a.minSites == kDefaultMinSites && !a.timeBin;
}

uint8_t formatVersionOf(const Approval& a) {
  if (a.surveillanceMinIntervalMs > 0) return kApprovalFormatVersionWithSurveillance;
  if (a.modelMinSiteRows > 0) return kApprovalFormatVersionWithModelRule;
  return hasDefaultPolicy(a) ? kApprovalFormatVersion : kApprovalFormatVersionWithPolicy;
}

void writeApproval(Writer& w, const Approval& a) {
  const uint8_t version = formatVersionOf(a);
  w.u8(version);
  w.str(a.study);
  w.u32(a.protocolVersion);
  w.str(a.leadCommittee.name);
  w.fixed(a.leadCommittee.key.bytes());
  w.u32(static_cast<uint32_t>(a.sites.size()));
  for (const auto& s : a.sites) w.str(s);
  w.u32(static_cast<uint32_t>(a.coordinators.size()));
  for (const auto& k : a.coordinators) w.fixed(k.bytes());
  w.fixed(a.dictionaryHash);
  for (const auto* list : {&a.variables, &a.analyses, &a.disclosiveAnalyses}) {
    w.u32(static_cast<uint32_t>(list->size()));
    for (const auto& s : *list) w.str(s);
  }
  w.u32(a.minCellSize);
  writeDate(w, a.validFrom);
  writeDate(w, a.validUntil);
  w.u8(a.queryBudget ? 1 : 0);
  if (a.queryBudget) w.u64(*a.queryBudget);
  if (version != kApprovalFormatVersion) {
    w.u8(static_cast<uint8_t>(a.aggregation));
    w.u32(a.minSites);
    if (a.aggregation == AggregationMode::kSecureDp) {
      w.u64(std::bit_cast<uint64_t>(a.dpEpsilonPerQuery));
      w.u64(std::bit_cast<uint64_t>(a.dpBudget));
    }
    w.u8(a.timeBin ? 1 : 0);
    if (a.timeBin) w.u64(std::bit_cast<uint64_t>(*a.timeBin));
  }
  if (version >= kApprovalFormatVersionWithModelRule) w.u32(a.modelMinSiteRows);
  if (version == kApprovalFormatVersionWithSurveillance) w.u64(a.surveillanceMinIntervalMs);
}

Result<std::vector<std::string>> readStrings(Reader& r, std::string_view field) {
  TM_ASSIGN_OR_RETURN(uint32_t n, r.u32(field));
  if (n > r.remaining() / 4)
    return Status::corruption(r.what() + ": field '" + std::string(field) + "' count " +
                              std::to_string(n) + " is impossible");
  std::vector<std::string> out;
  for (uint32_t i = 0; i < n; ++i) {
    TM_ASSIGN_OR_RETURN(std::string s, r.str(field));
    out.push_back(std::move(s));
  }
  return out;
}

// The version 2 tail. Values the TOML parser would refuse are Corruption here, and so is a
// version 2 encoding of the default policy (version 1 is its only canonical form).
Status readPolicy(Reader& r, Approval& a, uint8_t version) {
  auto bad = [&](const std::string& what) { return Status::corruption(r.what() + ": " + what); };
  TM_ASSIGN_OR_RETURN(uint8_t mode, r.u8("aggregation mode"));
  if (mode > 2) return bad("unknown aggregation mode " + std::to_string(mode));
  a.aggregation = static_cast<AggregationMode>(mode);
  TM_ASSIGN_OR_RETURN(a.minSites, r.u32("min sites"));
  if (a.minSites < 2) return bad("min sites must be at least 2");
  auto positive = [](double v) { return std::isfinite(v) && v > 0; };
  if (a.aggregation == AggregationMode::kSecureDp) {
    TM_ASSIGN_OR_RETURN(uint64_t eps, r.u64("dp epsilon per query"));
    TM_ASSIGN_OR_RETURN(uint64_t budget, r.u64("dp budget"));
    a.dpEpsilonPerQuery = std::bit_cast<double>(eps);
    a.dpBudget = std::bit_cast<double>(budget);
    if (!positive(a.dpEpsilonPerQuery) || !positive(a.dpBudget) ||
        a.dpBudget < a.dpEpsilonPerQuery || a.dpEpsilonPerQuery < 1e-9 || a.dpBudget > 1e6) {
      return bad("differential privacy parameters out of range");
    }
  }
  TM_ASSIGN_OR_RETURN(uint8_t hasBin, r.u8("has time bin"));
  if (hasBin > 1) return bad("time bin flag must be 0 or 1");
  if (hasBin == 1) {
    TM_ASSIGN_OR_RETURN(uint64_t bin, r.u64("time bin"));
    a.timeBin = std::bit_cast<double>(bin);
    if (!positive(*a.timeBin)) return bad("time bin must be above 0");
  }
  if (version == kApprovalFormatVersionWithModelRule) {
    TM_ASSIGN_OR_RETURN(a.modelMinSiteRows, r.u32("model min site rows"));
    if (a.modelMinSiteRows == 0)
      return bad("version 3 encoding without model_min_site_rows (not canonical)");
    return Status::ok();
  }
  if (version == kApprovalFormatVersionWithSurveillance) {
    TM_ASSIGN_OR_RETURN(a.modelMinSiteRows, r.u32("model min site rows"));
    TM_ASSIGN_OR_RETURN(a.surveillanceMinIntervalMs, r.u64("surveillance min interval"));
    if (a.surveillanceMinIntervalMs == 0)
      return bad("version 4 encoding without surveillance_min_interval_ms (not canonical)");
    return Status::ok();
  }
  if (hasDefaultPolicy(a)) return bad("version 2 encoding of the default policy (not canonical)");
  return Status::ok();
}

Result<Approval> readApproval(Reader& r) {
  TM_ASSIGN_OR_RETURN(uint8_t version, r.u8("format version"));
  if (version < kApprovalFormatVersion || version > kApprovalFormatVersionWithSurveillance) {
    return Status::corruption(r.what() + ": format version " + std::to_string(version) +
                              " is not supported (this build reads versions 1 to 4)");
  }
  Approval a;
  TM_ASSIGN_OR_RETURN(a.study, r.str("study"));
  TM_ASSIGN_OR_RETURN(a.protocolVersion, r.u32("protocol version"));
  TM_ASSIGN_OR_RETURN(a.leadCommittee.name, r.str("lead committee name"));
  TM_ASSIGN_OR_RETURN(auto lead, r.fixed<32>("lead committee key"));
  a.leadCommittee.key = crypto::PublicKey(lead);
  TM_ASSIGN_OR_RETURN(a.sites, readStrings(r, "sites"));
  TM_ASSIGN_OR_RETURN(uint32_t nc, r.u32("coordinators"));
  if (nc > r.remaining() / 32)
    return Status::corruption(r.what() + ": coordinator count " + std::to_string(nc) +
                              " is impossible");
  for (uint32_t i = 0; i < nc; ++i) {
    TM_ASSIGN_OR_RETURN(auto k, r.fixed<32>("coordinators"));
    a.coordinators.emplace_back(k);
  }
  TM_ASSIGN_OR_RETURN(a.dictionaryHash, r.fixed<32>("dictionary hash"));
  TM_ASSIGN_OR_RETURN(a.variables, readStrings(r, "variables"));
  TM_ASSIGN_OR_RETURN(a.analyses, readStrings(r, "analyses"));
  TM_ASSIGN_OR_RETURN(a.disclosiveAnalyses, readStrings(r, "disclosive analyses"));
  TM_ASSIGN_OR_RETURN(a.minCellSize, r.u32("min cell size"));
  TM_ASSIGN_OR_RETURN(a.validFrom, readDate(r, "valid from"));
  TM_ASSIGN_OR_RETURN(a.validUntil, readDate(r, "valid until"));
  TM_ASSIGN_OR_RETURN(uint8_t hasBudget, r.u8("has budget"));
  if (hasBudget > 1) return Status::corruption(r.what() + ": budget flag must be 0 or 1");
  if (hasBudget == 1) {
    TM_ASSIGN_OR_RETURN(uint64_t b, r.u64("query budget"));
    a.queryBudget = b;
  }
  if (version != kApprovalFormatVersion) TM_RETURN_IF_ERROR(readPolicy(r, a, version));
  // Canonical form only: a non-canonical encoding would give one approval two ids.
  Approval c = a;
  canonicalise(c);
  if (approvalBytes(c) != approvalBytes(a)) {
    return Status::corruption(r.what() + ": lists are not sorted and unique (not canonical)");
  }
  return a;
}
}  // namespace

std::string approvalBytes(const Approval& a) {
  Writer w;
  writeApproval(w, a);
  return w.take();
}

Hash approvalId(const Approval& a) { return crypto::sha256(approvalBytes(a)); }

Result<SignedApproval> signApproval(Approval approval, const crypto::Identity& committee) {
  if (committee.pub != approval.leadCommittee.key) {
    return Status::invalidArgument("approval " + approval.label() + " names lead committee key " +
                                   approval.leadCommittee.key.toText() +
                                   " but is being signed with " + committee.pub.toText());
  }
  canonicalise(approval);
  SignedApproval sa{std::move(approval), {}};
  sa.signature = crypto::sign(committee.secret,
                              bytesOf(std::string(kApprovalContext) + approvalBytes(sa.approval)));
  return sa;
}

Status verifyApproval(const SignedApproval& sa) {
  if (!crypto::verify(sa.approval.leadCommittee.key,
                      bytesOf(std::string(kApprovalContext) + approvalBytes(sa.approval)),
                      sa.signature)) {
    return Status::permissionDenied(
        "approval " + sa.approval.label() +
        ": the signature does not verify with lead committee '" + sa.approval.leadCommittee.name +
        "' key " + sa.approval.leadCommittee.key.toText() + " (forged or altered)");
  }
  return Status::ok();
}

std::string encodeSignedApproval(const SignedApproval& sa) {
  std::string out = approvalBytes(sa.approval);
  out.append(reinterpret_cast<const char*>(sa.signature.data()), sa.signature.size());
  return out;
}

Result<SignedApproval> decodeSignedApproval(std::span<const uint8_t> bytes) {
  Reader r(bytes, "signed approval");
  SignedApproval sa;
  TM_ASSIGN_OR_RETURN(sa.approval, readApproval(r));
  TM_ASSIGN_OR_RETURN(sa.signature, r.fixed<64>("signature"));
  TM_RETURN_IF_ERROR(r.finish());
  return sa;
}

// ---- Statements ----

const char* statementKindName(StatementKind kind) {
  switch (kind) {
    case StatementKind::kRecognition:
      return "recognition";
    case StatementKind::kSuspension:
      return "suspension";
    case StatementKind::kReinstatement:
      return "reinstatement";
    case StatementKind::kRevocation:
      return "revocation";
  }
  return "unknown";
}

std::string statementBytes(const Statement& s) {
  Writer w;
  w.u8(s.issuedAtMs ? kStatementFormatVersionWithIssueTime : kStatementFormatVersion);
  w.u8(static_cast<uint8_t>(s.kind));
  w.str(s.study);
  w.u32(s.protocolVersion);
  w.fixed(s.approvalId);
  w.str(s.site);
  writeDate(w, s.effective);
  w.str(s.reason);
  w.fixed(s.signer.bytes());
  if (s.issuedAtMs) w.i64(*s.issuedAtMs);
  return w.take();
}

bool statementOrder(const Statement& x, const Statement& y) {
  if (x.effective != y.effective) return x.effective < y.effective;
  // std::nullopt (version 1) sorts before every issue time.
  if (x.issuedAtMs != y.issuedAtMs) return x.issuedAtMs < y.issuedAtMs;
  const auto rank = [](StatementKind k) { return k == StatementKind::kSuspension ? 1 : 0; };
  if (rank(x.kind) != rank(y.kind)) return rank(x.kind) < rank(y.kind);
  return statementBytes(x) < statementBytes(y);
}

SignedStatement signStatement(Statement statement, const crypto::Identity& signer) {
  if (!statement.issuedAtMs) {
    statement.issuedAtMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  }
  statement.signer = signer.pub;
  SignedStatement ss{std::move(statement), {}};
  ss.signature = crypto::sign(
      signer.secret, bytesOf(std::string(kStatementContext) + statementBytes(ss.statement)));
  return ss;
}

Status verifyStatement(const SignedStatement& ss) {
  if (!crypto::verify(ss.statement.signer,
                      bytesOf(std::string(kStatementContext) + statementBytes(ss.statement)),
                      ss.signature)) {
    return Status::permissionDenied(std::string(statementKindName(ss.statement.kind)) +
                                    " of approval " + ss.statement.study + " v" +
                                    std::to_string(ss.statement.protocolVersion) +
                                    ": the signature does not verify with key " +
                                    ss.statement.signer.toText() + " (forged or altered)");
  }
  return Status::ok();
}

std::string encodeSignedStatement(const SignedStatement& ss) {
  std::string out = statementBytes(ss.statement);
  out.append(reinterpret_cast<const char*>(ss.signature.data()), ss.signature.size());
  return out;
}

Result<SignedStatement> decodeSignedStatement(std::span<const uint8_t> bytes) {
  Reader r(bytes, "signed ethics statement");
  TM_ASSIGN_OR_RETURN(uint8_t version, r.u8("format version"));
  if (version != kStatementFormatVersion && version != kStatementFormatVersionWithIssueTime) {
    return Status::corruption("signed ethics statement: format version " + std::to_string(version) +
                              " is not supported (this build reads versions 1 and 2)");
  }
  SignedStatement ss;
  Statement& s = ss.statement;
  TM_ASSIGN_OR_RETURN(uint8_t kind, r.u8("kind"));
  if (kind < 1 || kind > 4) {
    return Status::corruption("signed ethics statement: unknown kind " + std::to_string(kind));
  }
  s.kind = static_cast<StatementKind>(kind);
  TM_ASSIGN_OR_RETURN(s.study, r.str("study"));
  TM_ASSIGN_OR_RETURN(s.protocolVersion, r.u32("protocol version"));
  TM_ASSIGN_OR_RETURN(s.approvalId, r.fixed<32>("approval id"));
  TM_ASSIGN_OR_RETURN(s.site, r.str("site"));
  TM_ASSIGN_OR_RETURN(s.effective, readDate(r, "effective"));
  TM_ASSIGN_OR_RETURN(s.reason, r.str("reason"));
  TM_ASSIGN_OR_RETURN(auto signer, r.fixed<32>("signer"));
  s.signer = crypto::PublicKey(signer);
  if (version == kStatementFormatVersionWithIssueTime) {
    TM_ASSIGN_OR_RETURN(int64_t issued, r.i64("issued at"));
    if (issued < 0) {
      return Status::corruption("signed ethics statement: issue time " + std::to_string(issued) +
                                " is before 1970");
    }
    s.issuedAtMs = issued;
  }
  TM_ASSIGN_OR_RETURN(ss.signature, r.fixed<64>("signature"));
  TM_RETURN_IF_ERROR(r.finish());
  return ss;
}

// ---- Registry ----

Status ApprovalRegistry::addApproval(const SignedApproval& sa) {
  TM_RETURN_IF_ERROR(verifyApproval(sa));
  std::lock_guard lock(mu_);
  auto& versions = approvals_[sa.approval.study];
  auto it = versions.find(sa.approval.protocolVersion);
  if (it != versions.end()) {
    if (approvalBytes(it->second.approval) == approvalBytes(sa.approval)) return Status::ok();
    return Status::alreadyExists(
        "approval " + sa.approval.label() + " is already stored with different content (id " +
        shortHex(approvalId(it->second.approval)) + "); an amendment needs a new protocol_version");
  }
  versions.emplace(sa.approval.protocolVersion, sa);
  return Status::ok();
}

Status ApprovalRegistry::addStatement(const SignedStatement& ss) {
  TM_RETURN_IF_ERROR(verifyStatement(ss));
  const Statement& s = ss.statement;
  std::lock_guard lock(mu_);
  const SignedApproval* target = nullptr;
  auto study = approvals_.find(s.study);
  if (study != approvals_.end()) {
    auto v = study->second.find(s.protocolVersion);
    if (v != study->second.end() && approvalId(v->second.approval) == s.approvalId) {
      target = &v->second;
    }
  }
  const std::string label = s.study + " v" + std::to_string(s.protocolVersion);
  if (target == nullptr) {
    return Status::notFound(std::string(statementKindName(s.kind)) + " names approval " + label +
                            " (id " + shortHex(s.approvalId) +
                            ") which is not stored at this site; submit the approval first");
  }
  if (s.kind != StatementKind::kRecognition && s.signer != target->approval.leadCommittee.key) {
    return Status::permissionDenied(
        std::string(statementKindName(s.kind)) + " of approval " + label + " is signed by " +
        s.signer.toText() + ", not by its lead committee '" + target->approval.leadCommittee.name +
        "' (" + target->approval.leadCommittee.key.toText() + ")");
  }
  auto& list = statements_[s.approvalId];
  for (const Statement& existing : list) {
    if (statementBytes(existing) == statementBytes(s)) return Status::ok();
  }
  list.push_back(s);
  return Status::ok();
}

void ApprovalRegistry::setUsage(const Hash& id, uint64_t used) {
  std::lock_guard lock(mu_);
  used_[id] = used;
}

uint64_t ApprovalRegistry::usage(const Hash& id) const {
  std::lock_guard lock(mu_);
  auto it = used_.find(id);
  return it == used_.end() ? 0 : it->second;
}

std::vector<SignedApproval> ApprovalRegistry::approvals() const {
  std::lock_guard lock(mu_);
  std::vector<SignedApproval> out;
  for (const auto& [study, versions] : approvals_) {
    for (auto it = versions.rbegin(); it != versions.rend(); ++it) out.push_back(it->second);
  }
  return out;
}

std::vector<ApprovalStanding> ApprovalRegistry::standings(const Date& today) const {
  std::lock_guard lock(mu_);
  std::vector<ApprovalStanding> out;
  for (const auto& [study, versions] : approvals_) {
    for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
      const Approval& a = it->second.approval;
      const Hash id = approvalId(a);
      ApprovalStanding s;
      s.approval = it->second;
      if (auto st = statements_.find(id); st != statements_.end()) s.statements = st->second;
      std::sort(s.statements.begin(), s.statements.end(), statementOrder);
      if (recognitionRefusal(a, id).isOk()) {
        s.recognisedBy = a.leadCommittee.key;
        if (policy_.mode == SitePolicy::Mode::kCountersignature)
          s.recognisedBy = policy_.siteCommittee;
      }
      // As checkLocked: a revocation in effect is final; else the last suspension or
      // reinstatement in effect decides (statements are in statementOrder already).
      bool revoked = false;
      std::optional<StatementKind> last;
      for (const Statement& x : s.statements) {
        if (x.effective > today) continue;
        if (x.kind == StatementKind::kRevocation) revoked = true;
        if (x.kind == StatementKind::kSuspension || x.kind == StatementKind::kReinstatement)
          last = x.kind;
      }
      if (revoked) {
        s.state = "revoked";
      } else if (!s.recognisedBy) {
        s.state = policy_.mode == SitePolicy::Mode::kCountersignature ? "awaiting recognition"
                                                                      : "not recognised";
      } else if (last == StatementKind::kSuspension) {
        s.state = "suspended";
      } else if (today < a.validFrom) {
        s.state = "not yet valid";
      } else if (!(today < a.validUntil)) {
        s.state = "expired";
      } else {
        s.state = "active";
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

std::vector<SignedApproval> ApprovalRegistry::governingApprovals() const {
  std::lock_guard lock(mu_);
  std::vector<SignedApproval> out;
  for (const auto& [study, versions] : approvals_) {
    for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
      if (recognitionRefusal(it->second.approval, approvalId(it->second.approval)).isOk()) {
        out.push_back(it->second);
        break;
      }
    }
  }
  return out;
}

Status ApprovalRegistry::admissible(const Approval& a) const {
  // Only the standing list can be decided at submission: a countersignature comes later, as a
  // recognition statement, and until then the approval is stored but never governs.
  if (policy_.mode != SitePolicy::Mode::kStandingList) return Status::ok();
  std::lock_guard lock(mu_);
  return recognitionRefusal(a, approvalId(a));
}

Status ApprovalRegistry::recognitionRefusal(const Approval& a, const Hash& id) const {
  if (policy_.mode == SitePolicy::Mode::kStandingList) {
    if (contains(policy_.recognisedCommittees, a.leadCommittee.key)) return Status::ok();
    return Status::permissionDenied("approval " + a.label() + " is signed by committee '" +
                                    a.leadCommittee.name + "' (" + shortKey(a.leadCommittee.key) +
                                    "), which this site does not recognise");
  }
  auto it = statements_.find(id);
  if (policy_.siteCommittee && it != statements_.end()) {
    for (const Statement& s : it->second) {
      if (s.kind == StatementKind::kRecognition && s.signer == *policy_.siteCommittee &&
          s.site == policy_.site) {
        return Status::ok();
      }
    }
  }
  return Status::permissionDenied("approval " + a.label() +
                                  " has not been recognised by this site's committee");
}

Result<Grant> ApprovalRegistry::checkLocked(const QueryUse& use) const {
  auto study = approvals_.find(use.study);
  if (study == approvals_.end() || study->second.empty()) {
    return Status::permissionDenied("no approval recognised by this site's committee for study " +
                                    use.study);
  }
  // The newest RECOGNISED version governs: an approval this site does not recognise (signed by
  // a committee off its standing list, or not yet countersigned) never supersedes one it does,
  // so an ethics-board member cannot halt a study by submitting a higher version (issue #12).
  const SignedApproval* governing = nullptr;
  Status newestRefusal = Status::ok();
  for (auto it = study->second.rbegin(); it != study->second.rend(); ++it) {
    Status r = recognitionRefusal(it->second.approval, approvalId(it->second.approval));
    if (r.isOk()) {
      governing = &it->second;
      break;
    }
    if (it == study->second.rbegin()) newestRefusal = r;
  }
  if (governing == nullptr) {
    const Approval& newest = study->second.rbegin()->second.approval;
    if (policy_.mode == SitePolicy::Mode::kCountersignature) {
      return Status::permissionDenied("no approval recognised by this site's committee for study " +
                                      use.study + " (" + newest.label() +
                                      " awaits the site committee's recognition)");
    }
    return Status::permissionDenied("no approval recognised by this site's committee for study " +
                                    use.study + ": " + newestRefusal.message());
  }
  const Approval& a = governing->approval;
  const Hash id = approvalId(a);
  // Revocation is final; suspension holds until a later reinstatement.
  std::optional<Statement> suspension;
  if (auto it = statements_.find(id); it != statements_.end()) {
    std::vector<Statement> effective;
    for (const Statement& s : it->second) {
      if (s.kind == StatementKind::kRevocation && s.effective <= use.today) {
        return Status::permissionDenied("approval " + a.label() + " was revoked on " +
                                        s.effective.toString() +
                                        (s.reason.empty() ? "" : ": " + s.reason));
      }
      if ((s.kind == StatementKind::kSuspension || s.kind == StatementKind::kReinstatement) &&
          s.effective <= use.today) {
        effective.push_back(s);
      }
    }
    // A total order of the statements themselves: the order they were stored in (RocksDB key
    // order after a restart) must not matter.
    std::sort(effective.begin(), effective.end(), statementOrder);
    if (!effective.empty() && effective.back().kind == StatementKind::kSuspension) {
      suspension = effective.back();
    }
  }
  if (suspension) {
    return Status::permissionDenied("approval " + a.label() + " is suspended since " +
                                    suspension->effective.toString() +
                                    (suspension->reason.empty() ? "" : ": " + suspension->reason));
  }
  if (use.today < a.validFrom) {
    return Status::permissionDenied("approval " + a.label() + " is not valid before " +
                                    a.validFrom.toString());
  }
  if (!(use.today < a.validUntil)) {
    return Status::permissionDenied("approval " + a.label() + " expired on " +
                                    a.validUntil.toString());
  }
  if (!contains(a.sites, use.site)) {
    return Status::permissionDenied("approval " + a.label() + " does not include site '" +
                                    use.site + "'");
  }
  if (!contains(a.coordinators, use.coordinator)) {
    return Status::permissionDenied("coordinator " + use.coordinator.toText() +
                                    " is not authorised by approval " + a.label());
  }
  if (use.dictionaryHash != a.dictionaryHash) {
    return Status::permissionDenied("approval " + a.label() + " covers data dictionary " +
                                    shortHex(a.dictionaryHash) + " but this site's dictionary is " +
                                    shortHex(use.dictionaryHash));
  }
  for (const std::string& v : use.variables) {
    if (!contains(a.variables, v)) {
      return Status::permissionDenied("approval " + a.label() + " does not cover variable '" + v +
                                      "'");
    }
  }
  for (const std::string& an : use.analyses) {
    if (isDisclosiveAnalysis(an)) {
      if (!contains(a.disclosiveAnalyses, an)) {
        return Status::permissionDenied("approval " + a.label() +
                                        " does not allow disclosive analysis '" + an + "'");
      }
    } else if (!contains(a.analyses, an)) {
      return Status::permissionDenied("approval " + a.label() + " does not allow analysis '" + an +
                                      "'");
    }
  }
  Grant g;
  g.study = a.study;
  g.protocolVersion = a.protocolVersion;
  g.approvalId = id;
  g.minCellSize = a.minCellSize;
  g.aggregation = a.aggregation;
  g.minSites = a.minSites;
  g.dpEpsilonPerQuery = a.dpEpsilonPerQuery;
  g.dpBudget = a.dpBudget;
  g.timeBin = a.timeBin;
  g.modelMinSiteRows = a.modelMinSiteRows;
  g.surveillanceMinIntervalMs = a.surveillanceMinIntervalMs;
  if (a.queryBudget) {
    auto u = used_.find(id);
    const uint64_t used = u == used_.end() ? 0 : u->second;
    if (used >= *a.queryBudget) {
      return Status::resourceExhausted("approval " + a.label() + ": its query budget of " +
                                       std::to_string(*a.queryBudget) +
                                       " queries is exhausted at this site");
    }
    g.budgetLeft = *a.queryBudget - used - 1;
  }
  return g;
}

Result<Grant> ApprovalRegistry::check(const QueryUse& use) const {
  std::lock_guard lock(mu_);
  return checkLocked(use);
}

Result<Grant> ApprovalRegistry::authorize(const QueryUse& use,
                                          const std::function<Status(const Grant&)>& precondition) {
  std::lock_guard lock(mu_);
  TM_ASSIGN_OR_RETURN(Grant g, checkLocked(use));
  if (precondition) TM_RETURN_IF_ERROR(precondition(g));
  ++used_[g.approvalId];
  return g;
}

// ---- Store ----

class ApprovalStore::Impl {
 public:
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // default, approvals, statements, usage
  ~Impl() {
    if (db) {
      for (auto* h : handles) (void)db->DestroyColumnFamilyHandle(h);
      (void)db->Close();
    }
  }
  Status put(size_t family, const std::string& key, const std::string& value) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    rocksdb::Status s = db->Put(wo, handles[family], key, value);
    if (!s.ok()) return Status::ioError("approval store: write failed: " + s.ToString());
    return Status::ok();
  }
};

Result<std::unique_ptr<ApprovalStore>> ApprovalStore::open(const std::string& path) {
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name : {rocksdb::kDefaultColumnFamilyName.c_str(), "ethics_approvals",
                           "ethics_statements", "ethics_usage"}) {
    families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }
  auto impl = std::make_unique<Impl>();
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, families, &impl->handles, &raw);
  if (!s.ok()) return Status::ioError("approval store " + path + ": cannot open: " + s.ToString());
  impl->db.reset(raw);
  return std::unique_ptr<ApprovalStore>(new ApprovalStore(std::move(impl)));
}

ApprovalStore::ApprovalStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ApprovalStore::~ApprovalStore() = default;

Status ApprovalStore::putApproval(const SignedApproval& sa) {
  const Hash id = approvalId(sa.approval);
  return impl_->put(1, std::string(id.begin(), id.end()), encodeSignedApproval(sa));
}

Status ApprovalStore::putStatement(const SignedStatement& ss) {
  const std::string bytes = encodeSignedStatement(ss);
  const Hash key = crypto::sha256(bytes);
  return impl_->put(2, std::string(key.begin(), key.end()), bytes);
}

Status ApprovalStore::putUsage(const Hash& id, uint64_t used) {
  Writer w;
  w.u64(used);
  return impl_->put(3, std::string(id.begin(), id.end()), w.take());
}

Status ApprovalStore::checkpoint(const std::string& targetDir) const {
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(impl_->db.get(), &raw);
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  if (s.ok()) s = cp->CreateCheckpoint(targetDir);
  if (!s.ok())
    return Status::ioError("approval store: checkpoint to " + targetDir + ": " + s.ToString());
  return Status::ok();
}

Result<std::unique_ptr<ApprovalRegistry>> ApprovalStore::load(SitePolicy policy) const {
  auto registry = std::make_unique<ApprovalRegistry>(std::move(policy));
  auto scan = [&](size_t family, auto&& fn) -> Status {
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator({}, impl_->handles[family]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      TM_RETURN_IF_ERROR(fn(it->key().ToStringView(), it->value().ToStringView()));
    }
    if (!it->status().ok()) return Status::ioError("approval store: " + it->status().ToString());
    return Status::ok();
  };
  // Approvals first: statements refer to them.
  TM_RETURN_IF_ERROR(scan(1, [&](std::string_view, std::string_view v) -> Status {
    TM_ASSIGN_OR_RETURN(SignedApproval sa, decodeSignedApproval(bytesOf(v)));
    return registry->addApproval(sa).withContext("approval store");
  }));
  TM_RETURN_IF_ERROR(scan(2, [&](std::string_view, std::string_view v) -> Status {
    TM_ASSIGN_OR_RETURN(SignedStatement ss, decodeSignedStatement(bytesOf(v)));
    return registry->addStatement(ss).withContext("approval store");
  }));
  TM_RETURN_IF_ERROR(scan(3, [&](std::string_view k, std::string_view v) -> Status {
    if (k.size() != 32 || v.size() != 8)
      return Status::corruption("approval store: bad usage record");
    Hash id;
    std::copy(k.begin(), k.end(), id.begin());
    Reader r(bytesOf(v), "usage");
    TM_ASSIGN_OR_RETURN(uint64_t used, r.u64("count"));
    registry->setUsage(id, used);
    return Status::ok();
  }));
  return registry;
}

}  // namespace trialmesh::ethics
