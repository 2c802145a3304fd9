// A study's data dictionary: the variables every site of a study holds, their types, units,
// allowed ranges and which CSV column each comes from. All sites of a study share one
// dictionary; its canonical hash identifies it (approvals in ethics/ name that hash).
//
// Written by people as TOML (format in docs/dictionary.md), for example:
//
//   study = "LUNG-7"
//   [[variable]]
//   name = "ecog"            # the name used in queries
//   column = "ph.ecog"       # the CSV header it is read from (defaults to name)
//   type = "categorical"
//   levels = ["0", "1", "2", "3", "4"]
//   labels = ["Fully active", "Restricted", "Ambulatory", "Limited", "Disabled"]
//   missing = true           # empty field or NA allowed
//
// Thread-safety: an immutable value after construction; share freely.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "crypto/hash.h"

namespace trialmesh::storage {

// Frozen: stored on disk and hashed into the canonical form.
enum class VariableType : uint8_t {
  kInteger = 0,      // signed 64-bit at most; stored in the narrowest width its range allows
  kReal = 1,         // IEEE double
  kCategorical = 2,  // one of the declared levels; stored as the level's index
  kBoolean = 3,      // CSV spellings: 1/0, true/false, TRUE/FALSE, True/False, T/F, yes/no, Y/N
  kDate = 4,         // ISO 8601 calendar date YYYY-MM-DD; stored as days since 1970-01-01
  // A subject identifier (USUBJID): checked at import — never missing, unique within the file
  // (ImportOptions::duplicateIds) — and then dropped: its column is stored empty (every row
  // missing) and queries cannot name it, so no identifier is ever kept or leaves the site.
  kIdentifier = 5,
};

const char* variableTypeName(VariableType type);

struct Level {
  std::string code;   // as it appears in the CSV and in queries ("F", "0", "Placebo")
  std::string label;  // optional human-readable label; empty when not declared
};

struct Variable {
  std::string name;  // query identifier: [A-Za-z_][A-Za-z0-9_]*, unique in the dictionary
  VariableType type = VariableType::kReal;
  std::string csvColumn;  // CSV header this variable is read from; equals name unless declared
  std::string unit;       // informational ("kg/m2"); empty when not declared
  std::string description;
  // Allowed closed range [min, max]. Integers and reals in their own unit; dates as days since
  // 1970-01-01 (declared in TOML as dates). Absent = unbounded. Unused for categorical/boolean.
  std::optional<double> min;
  std::optional<double> max;
  bool missingAllowed = false;  // whether an empty field or NA is accepted
  std::vector<Level> levels;    // categorical only; the order fixes every site's cell order

  // Index of the level whose code is `code`, if any.
  std::optional<uint32_t> levelIndex(std::string_view code) const;
};

class Dictionary {
 public:
  Dictionary();  // empty: no study, no variables

  // Parses and validates TOML text. `sourceName` (usually the file path) prefixes every error,
  // e.g. "dict.toml: variable 'age': min 120 is above max 18".
  static Result<Dictionary> parseToml(std::string_view text, std::string_view sourceName);
  static Result<Dictionary> loadFile(const std::string& path);
  // Validates a dictionary built in code (same rules as parseToml).
  static Result<Dictionary> create(std::string study, std::vector<Variable> variables);

  const std::string& study() const { return study_; }
  const std::vector<Variable>& variables() const { return variables_; }
  size_t size() const { return variables_.size(); }
  const Variable& variable(size_t index) const { return variables_[index]; }
  // Index of the variable called `name` (query names, not CSV headers).
  std::optional<size_t> find(std::string_view name) const;

  // A deterministic byte string that depends only on the dictionary's meaning (study, and per
  // variable in declared order: name, type, column, unit, range, missing, levels and labels),
  // not on TOML formatting, comments or key order. Layout in docs/dictionary.md.
  std::string canonicalForm() const;
  crypto::Sha256Digest hash() const;
  std::string hashHex() const;

  // TOML that parseToml reads back to an equal dictionary (same hash).
  std::string toToml() const;

 private:
  std::string study_;
  std::vector<Variable> variables_;
  // sha256(canonicalForm()), computed once at creation: a dictionary never changes, and the
  // node checks it against approvals on every query.
  crypto::Sha256Digest hash_{};
};

// Days since 1970-01-01 for an ISO 8601 date "YYYY-MM-DD" (proleptic Gregorian); nullopt when
// the text is not a valid calendar date.
std::optional<int32_t> parseIsoDate(std::string_view text);
std::string formatIsoDate(int32_t daysSinceEpoch);

}  // namespace trialmesh::storage
