#include "storage/dictionary.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_set>

#include <toml++/toml.h>

#include "common/toml_describe.h"
#include "storage/utf8.h"

namespace trialmesh::storage {

namespace {

// Canonical form header: magic + format version. Bump the version when the layout changes;
// old hashes then stop matching on purpose.
constexpr std::string_view kCanonicalMagic = "TMDICT";
constexpr uint8_t kCanonicalVersion = 1;
constexpr size_t kMaxLevels = 65536;
// Integer bounds are held as double; beyond 2^53 they would silently round.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53
constexpr size_t kMaxReportedErrors = 20;

bool isIdentifier(std::string_view s) {
  if (s.empty()) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(s[0])) return false;
  for (char c : s) {
    // Dots as in R names (ph.ecog, meal.cal); never first, so a name never reads as a number.
    if (!alpha(c) && !(c >= '0' && c <= '9') && c != '.') return false;
  }
  return true;
}

using detail::isValidUtf8;

std::string formatNumber(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// A bound as a person wrote it: integers without ".0", dates as YYYY-MM-DD.
std::string formatBound(const Variable& v, double bound) {
  if (v.type == VariableType::kDate) return formatIsoDate(static_cast<int32_t>(bound));
  return formatNumber(bound);
}

std::string quoteVariable(const Variable& v, size_t index) {
  if (v.name.empty()) return "variable #" + std::to_string(index + 1);
  return "variable '" + v.name + "'";
}

std::string joinErrors(const std::vector<std::string>& errors) {
  std::string out;
  size_t shown = std::min(errors.size(), kMaxReportedErrors);
  for (size_t i = 0; i < shown; ++i) {
    if (i) out += '\n';
    out += errors[i];
  }
  if (errors.size() > shown) {
    out += "\n... and " + std::to_string(errors.size() - shown) + " more errors";
  }
  return out;
}

// The semantic rules shared by parseToml and create. Appends one message per broken rule.
void validate(std::string_view source, const std::string& study,
              const std::vector<Variable>& variables, std::vector<std::string>& errors) {
  const std::string src(source);
  if (study.empty()) errors.push_back(src + ": key 'study' must be a non-empty string");
  if (!isValidUtf8(study)) errors.push_back(src + ": key 'study' is not valid UTF-8");
  if (variables.empty()) {
    errors.push_back(src + ": the dictionary declares no variables; add at least one [[variable]]");
  }
  std::unordered_set<std::string> names;
  for (size_t i = 0; i < variables.size(); ++i) {
    const Variable& v = variables[i];
    const std::string where = src + ": " + quoteVariable(v, i) + ": ";
    if (!isIdentifier(v.name)) {
      errors.push_back(where + "key 'name' ('" + v.name +
                       "') must be an identifier: a letter or '_' followed by letters, digits, "
                       "'_' or '.'");
    } else if (!names.insert(v.name).second) {
      errors.push_back(where + "key 'name' ('" + v.name + "') is declared more than once");
    }
    if (static_cast<uint8_t>(v.type) > static_cast<uint8_t>(VariableType::kIdentifier)) {
      errors.push_back(where + "key 'type' has an unknown value");
      continue;
    }
    if (v.csvColumn.empty()) {
      errors.push_back(where + "key 'column' must not be empty");
    }  // one CSV column may feed several variables (ph.ecog as integer and as categorical)
    for (const auto* s : {&v.csvColumn, &v.unit, &v.description}) {
      if (!isValidUtf8(*s)) errors.push_back(where + "a text key is not valid UTF-8");
    }
    const bool ranged = v.type == VariableType::kInteger || v.type == VariableType::kReal ||
                        v.type == VariableType::kDate;
    if (!ranged && (v.min || v.max)) {
      errors.push_back(where + "key '" + std::string(v.min ? "min" : "max") +
                       "' is not allowed for type '" + variableTypeName(v.type) +
                       "'; ranges apply to integer, real and date variables only");
    }
    for (auto [key, bound] : {std::pair{"min", v.min}, std::pair{"max", v.max}}) {
      if (!ranged || !bound) continue;
      if (!std::isfinite(*bound)) {
        errors.push_back(where + "key '" + key + "' must be a finite number");
        continue;
      }
      if (v.type != VariableType::kReal && *bound != std::floor(*bound)) {
        errors.push_back(where + "key '" + key + "' (" + formatNumber(*bound) +
                         ") must be a whole number for type '" + variableTypeName(v.type) + "'");
      } else if (v.type == VariableType::kInteger && std::fabs(*bound) > kMaxExactInteger) {
        errors.push_back(where + "key '" + key + "' (" + formatNumber(*bound) +
                         ") is outside +/-2^53, the range integer bounds can hold exactly");
      } else if (v.type == VariableType::kDate && (*bound < parseIsoDate("0000-01-01").value() ||
                                                   *bound > parseIsoDate("9999-12-31").value())) {
        errors.push_back(where + "key '" + key + "' is outside years 0000-9999");
      }
    }
    if (ranged && v.min && v.max && std::isfinite(*v.min) && std::isfinite(*v.max) &&
        *v.min > *v.max) {
      errors.push_back(where + "key 'min' (" + formatBound(v, *v.min) + ") is above 'max' (" +
                       formatBound(v, *v.max) + ")");
    }
    if (v.type == VariableType::kIdentifier && v.missingAllowed) {
      errors.push_back(where +
                       "key 'missing' cannot be true for an identifier: every row needs its "
                       "subject id, or duplicates could not be found");
    }
    if (v.type == VariableType::kCategorical) {
      if (v.levels.empty()) {
        errors.push_back(where +
                         "key 'levels' is required for a categorical variable and must "
                         "list at least one level");
      } else if (v.levels.size() > kMaxLevels) {
        errors.push_back(where + "key 'levels' has " + std::to_string(v.levels.size()) +
                         " levels; at most 65536 are allowed");
      }
      std::unordered_set<std::string_view> codes;
      for (const Level& level : v.levels) {
        if (level.code.empty()) {
          errors.push_back(where +
                           "key 'levels' contains an empty level; an empty CSV field "
                           "means missing");
        } else if (!codes.insert(level.code).second) {
          errors.push_back(where + "key 'levels' lists '" + level.code + "' more than once");
        } else if (level.code == "NA" && v.missingAllowed) {
          errors.push_back(where +
                           "key 'levels' contains 'NA', which is ambiguous with "
                           "missing = true (NA marks a missing value)");
        }
        if (!isValidUtf8(level.code) || !isValidUtf8(level.label)) {
          errors.push_back(where +
                           "key 'levels' or 'labels' contains text that is not valid "
                           "UTF-8");
        }
      }
    } else if (!v.levels.empty()) {
      errors.push_back(where + "key 'levels' is only allowed for categorical variables, not '" +
                       variableTypeName(v.type) + "'");
    }
  }
}

// ---- canonical form ----

void putU8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
void putU32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xFF));
}
void putU64(std::string& out, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xFF));
}
void putStr(std::string& out, std::string_view s) {
  putU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}
void putF64(std::string& out, double v) {
  if (v == 0) v = 0;  // -0.0 and 0.0 mean the same bound
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  putU64(out, bits);
}

// ---- TOML writing ----

std::string tomlString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

std::string tomlBound(const Variable& v, double bound) {
  if (v.type == VariableType::kDate) return formatIsoDate(static_cast<int32_t>(bound));
  if (v.type == VariableType::kInteger) {
    return std::to_string(static_cast<int64_t>(bound));
  }
  std::string s = formatNumber(bound);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

// ---- TOML reading ----

class VariableReader {
 public:
  VariableReader(std::string source, size_t index, std::vector<std::string>& errors)
      : source_(std::move(source)), index_(index), errors_(errors) {}

  Variable read(const toml::table& table) {
    Variable v;
    // Name first, so every later message can name the variable.
    if (const toml::node* n = table.get("name")) {
      if (auto s = n->value<std::string>(); s && n->is_string()) {
        v.name = *s;
      } else {
        fail(v, "key 'name' must be a string, not " + describeTomlNode(*n));
      }
    } else {
      fail(v, "key 'name' is required");
    }
    bool typeOk = false;
    if (const toml::node* n = table.get("type")) {
      if (!n->is_string()) {
        fail(v, "key 'type' must be a string, not " + describeTomlNode(*n));
      } else {
        std::string t = *n->value<std::string>();
        static const std::pair<const char*, VariableType> kTypes[] = {
            {"integer", VariableType::kInteger},
            {"real", VariableType::kReal},
            {"categorical", VariableType::kCategorical},
            {"boolean", VariableType::kBoolean},
            {"date", VariableType::kDate},
            {"identifier", VariableType::kIdentifier}};
        for (const auto& [spelled, type] : kTypes) {
          if (t == spelled) {
            v.type = type;
            typeOk = true;
          }
        }
        if (!typeOk) {
          fail(v, "key 'type' ('" + t +
                      "') must be one of integer, real, categorical, boolean, date, identifier");
        }
      }
    } else {
      fail(v, "key 'type' is required (integer, real, categorical, boolean, date or identifier)");
    }
    std::optional<std::vector<std::string>> levels, labels;
    for (const auto& [keyRef, node] : table) {
      const std::string_view key = keyRef.str();
      if (key == "name" || key == "type") continue;
      if (key == "column") {
        readString(v, key, node, v.csvColumn);
      } else if (key == "unit") {
        readString(v, key, node, v.unit);
      } else if (key == "description") {
        readString(v, key, node, v.description);
      } else if (key == "missing") {
        if (auto b = node.as_boolean()) {
          v.missingAllowed = b->get();
        } else {
          fail(v, "key 'missing' must be true or false, not " + describeTomlNode(node));
        }
      } else if (key == "min" || key == "max") {
        if (!typeOk) continue;  // cannot interpret a bound without a type; already reported
        auto bound = readBound(v, key, node);
        if (bound) (key == "min" ? v.min : v.max) = *bound;
      } else if (key == "levels" || key == "labels") {
        auto list = readStringArray(v, key, node);
        if (list) (key == "levels" ? levels : labels) = std::move(*list);
      } else {
        fail(v, "unknown key '" + std::string(key) +
                    "' (allowed: name, type, column, unit, description, min, max, missing, "
                    "levels, labels)");
      }
    }
    if (v.csvColumn.empty() && !table.contains("column")) v.csvColumn = v.name;
    if (labels && v.type != VariableType::kCategorical) {
      fail(v, "key 'labels' is only allowed for categorical variables");
    }
    if (levels) {
      if (labels && labels->size() != levels->size()) {
        fail(v, "key 'labels' has " + std::to_string(labels->size()) +
                    " entries but 'levels' has " + std::to_string(levels->size()) +
                    "; give one label per level");
      }
      for (size_t i = 0; i < levels->size(); ++i) {
        Level level;
        level.code = (*levels)[i];
        if (labels && labels->size() == levels->size()) level.label = (*labels)[i];
        v.levels.push_back(std::move(level));
      }
    }
    return v;
  }

 private:
  void fail(const Variable& v, const std::string& message) {
    errors_.push_back(source_ + ": " + quoteVariable(v, index_) + ": " + message);
  }

  void readString(const Variable& v, std::string_view key, const toml::node& node,
                  std::string& out) {
    if (node.is_string()) {
      out = *node.value<std::string>();
    } else {
      fail(v, "key '" + std::string(key) + "' must be a string, not " + describeTomlNode(node));
    }
  }

  std::optional<std::vector<std::string>> readStringArray(const Variable& v, std::string_view key,
                                                          const toml::node& node) {
    const toml::array* arr = node.as_array();
    if (!arr) {
      fail(v, "key '" + std::string(key) + "' must be an array of strings, not " +
                  describeTomlNode(node));
      return std::nullopt;
    }
    std::vector<std::string> out;
    out.reserve(arr->size());
    for (size_t i = 0; i < arr->size(); ++i) {
      const toml::node& item = *arr->get(i);
      if (!item.is_string()) {
        fail(v, "key '" + std::string(key) + "' entry " + std::to_string(i + 1) +
                    " must be a string (quote it, e.g. \"1\"), not " + describeTomlNode(item));
        return std::nullopt;
      }
      out.push_back(*item.value<std::string>());
    }
    return out;
  }

  std::optional<double> readBound(const Variable& v, std::string_view key, const toml::node& node) {
    const std::string k(key);
    if (v.type == VariableType::kDate) {
      if (auto d = node.as_date()) {
        const toml::date& date = d->get();
        char buf[32];
        std::snprintf(buf, sizeof buf, "%04u-%02u-%02u", unsigned{date.year}, unsigned{date.month},
                      unsigned{date.day});
        if (auto days = parseIsoDate(buf)) return static_cast<double>(*days);
        fail(v, "key '" + k + "' (" + buf + ") is not a valid calendar date");
        return std::nullopt;
      }
      if (node.is_string()) {
        std::string s = *node.value<std::string>();
        if (auto days = parseIsoDate(s)) return static_cast<double>(*days);
        fail(v, "key '" + k + "' ('" + s + "') is not a valid date; write YYYY-MM-DD");
        return std::nullopt;
      }
      fail(v, "key '" + k + "' must be a date (YYYY-MM-DD) for a date variable, not " +
                  describeTomlNode(node));
      return std::nullopt;
    }
    if (auto i = node.as_integer()) {
      const int64_t value = i->get();
      constexpr int64_t kLimit = int64_t{1} << 53;
      if (v.type == VariableType::kInteger && (value > kLimit || value < -kLimit)) {
        fail(v, "key '" + k + "' (" + std::to_string(value) +
                    ") is outside +/-2^53, the range integer bounds can hold exactly");
        return std::nullopt;
      }
      return static_cast<double>(value);
    }
    if (auto f = node.as_floating_point()) return f->get();  // rules checked in validate()
    fail(v, "key '" + k + "' must be a number, not " + describeTomlNode(node));
    return std::nullopt;
  }

  std::string source_;
  size_t index_;
  std::vector<std::string>& errors_;
};

}  // namespace

const char* variableTypeName(VariableType type) {
  switch (type) {
    case VariableType::kInteger:
      return "integer";
    case VariableType::kReal:
      return "real";
    case VariableType::kCategorical:
      return "categorical";
    case VariableType::kBoolean:
      return "boolean";
    case VariableType::kDate:
      return "date";
    case VariableType::kIdentifier:
      return "identifier";
  }
  return "unknown";
}

std::optional<uint32_t> Variable::levelIndex(std::string_view code) const {
  for (size_t i = 0; i < levels.size(); ++i) {
    if (levels[i].code == code) return static_cast<uint32_t>(i);
  }
  return std::nullopt;
}

Result<Dictionary> Dictionary::parseToml(std::string_view text, std::string_view sourceName) {
  const std::string source(sourceName);
  toml::table root;
  try {
    root = toml::parse(text, sourceName);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    return Status::invalidArgument(source + ":" + std::to_string(begin.line) + ":" +
                                   std::to_string(begin.column) +
                                   ": TOML syntax error: " + std::string(e.description()));
  }
  std::vector<std::string> errors;
  std::string study;
  std::vector<Variable> variables;
  bool sawStudy = false;
  for (const auto& [keyRef, node] : root) {
    const std::string_view key = keyRef.str();
    if (key == "study") {
      sawStudy = true;
      if (node.is_string()) {
        study = *node.value<std::string>();
      } else {
        errors.push_back(source + ": key 'study' must be a string, not " + describeTomlNode(node));
      }
    } else if (key == "variable") {
      const toml::array* arr = node.as_array();
      if (!arr || !arr->is_array_of_tables()) {
        errors.push_back(source +
                         ": key 'variable' must be an array of tables; declare each "
                         "variable under its own [[variable]] header");
        continue;
      }
      for (size_t i = 0; i < arr->size(); ++i) {
        VariableReader reader(source, i, errors);
        variables.push_back(reader.read(*arr->get(i)->as_table()));
      }
    } else {
      errors.push_back(source + ": unknown top-level key '" + std::string(key) +
                       "' (allowed: study, [[variable]])");
    }
  }
  if (!sawStudy) errors.push_back(source + ": key 'study' is required (e.g. study = \"LUNG-7\")");
  if (errors.empty()) validate(source, study, variables, errors);
  if (!errors.empty()) return Status::invalidArgument(joinErrors(errors));
  Dictionary d;
  d.study_ = std::move(study);
  d.variables_ = std::move(variables);
  d.hash_ = crypto::sha256(d.canonicalForm());
  return d;
}

Result<Dictionary> Dictionary::loadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::notFound("cannot open dictionary file '" + path + "': " + std::strerror(errno));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Status::ioError("cannot read dictionary file '" + path + "'");
  return parseToml(buf.str(), path);
}

Result<Dictionary> Dictionary::create(std::string study, std::vector<Variable> variables) {
  std::vector<std::string> errors;
  validate("dictionary", study, variables, errors);
  if (!errors.empty()) return Status::invalidArgument(joinErrors(errors));
  Dictionary d;
  d.study_ = std::move(study);
  d.variables_ = std::move(variables);
  d.hash_ = crypto::sha256(d.canonicalForm());
  return d;
}

std::optional<size_t> Dictionary::find(std::string_view name) const {
  for (size_t i = 0; i < variables_.size(); ++i) {
    if (variables_[i].name == name) return i;
  }
  return std::nullopt;
}

// Layout (all integers big-endian; str = u32 length + bytes), documented in docs/dictionary.md:
//   "TMDICT" u8 version=1 str study u32 variableCount
//   per variable: str name, u8 type, str column, str unit, u8 rangeFlags (bit0 min, bit1 max),
//                 [f64 min] [f64 max], u8 missing, u32 levelCount, per level: str code, str label
// The description is informational and deliberately not part of the meaning.
std::string Dictionary::canonicalForm() const {
  std::string out;
  out.append(kCanonicalMagic);
  putU8(out, kCanonicalVersion);
  putStr(out, study_);
  putU32(out, static_cast<uint32_t>(variables_.size()));
  for (const Variable& v : variables_) {
    putStr(out, v.name);
    putU8(out, static_cast<uint8_t>(v.type));
    putStr(out, v.csvColumn);
    putStr(out, v.unit);
    putU8(out, static_cast<uint8_t>((v.min ? 1 : 0) | (v.max ? 2 : 0)));
    if (v.min) putF64(out, *v.min);
    if (v.max) putF64(out, *v.max);
    putU8(out, v.missingAllowed ? 1 : 0);
    putU32(out, static_cast<uint32_t>(v.levels.size()));
    for (const Level& level : v.levels) {
      putStr(out, level.code);
      putStr(out, level.label);
    }
  }
  return out;
}

Dictionary::Dictionary() : hash_(crypto::sha256(canonicalForm())) {}

crypto::Sha256Digest Dictionary::hash() const { return hash_; }

std::string Dictionary::hashHex() const { return crypto::toHex(hash()); }

std::string Dictionary::toToml() const {
  std::string out = "study = " + tomlString(study_) + "\n";
  for (const Variable& v : variables_) {
    out += "\n[[variable]]\n";
    out += "name = " + tomlString(v.name) + "\n";
    out += "type = " + tomlString(variableTypeName(v.type)) + "\n";
    out += "column = " + tomlString(v.csvColumn) + "\n";
    if (!v.unit.empty()) out += "unit = " + tomlString(v.unit) + "\n";
    if (!v.description.empty()) out += "description = " + tomlString(v.description) + "\n";
    if (v.min) out += "min = " + tomlBound(v, *v.min) + "\n";
    if (v.max) out += "max = " + tomlBound(v, *v.max) + "\n";
    out += std::string("missing = ") + (v.missingAllowed ? "true" : "false") + "\n";
    if (!v.levels.empty()) {
      out += "levels = [";
      bool anyLabel = false;
      for (size_t i = 0; i < v.levels.size(); ++i) {
        out += (i ? ", " : "") + tomlString(v.levels[i].code);
        anyLabel |= !v.levels[i].label.empty();
      }
      out += "]\n";
      if (anyLabel) {
        out += "labels = [";
        for (size_t i = 0; i < v.levels.size(); ++i) {
          out += (i ? ", " : "") + tomlString(v.levels[i].label);
        }
        out += "]\n";
      }
    }
  }
  return out;
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
std::optional<int32_t> parseIsoDate(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  auto digits = [&](size_t pos, size_t n, int& out) {
    out = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  int y, m, d;
  if (!digits(0, 4, y) || !digits(5, 2, m) || !digits(8, 2, d)) return std::nullopt;
  if (m < 1 || m > 12 || d < 1) return std::nullopt;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  const int monthDays = kDays[m - 1] + (m == 2 && leap ? 1 : 0);
  if (d > monthDays) return std::nullopt;
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy =
      (153 * static_cast<unsigned>(m + (m > 2 ? -3 : 9)) + 2) / 5 + static_cast<unsigned>(d) - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return static_cast<int32_t>(era * 146097 + static_cast<int>(doe) - 719468);
}

std::string formatIsoDate(int32_t daysSinceEpoch) {
  const int64_t z = int64_t{daysSinceEpoch} + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(y), m, d);
  return buf;
}

}  // namespace trialmesh::storage
