#include "query/time_group.h"

#include <fmt/format.h>

#include <cctype>

#include "storage/dictionary.h"

namespace trialmesh::query {

namespace {

int64_t floorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// 1970-01-01 was a Thursday: Monday-based weekday 3.
int64_t mondayOf(int64_t day) { return day - (((day + 3) % 7) + 7) % 7; }

struct YearMonth {
  int year = 0, month = 0;
};

YearMonth yearMonthOf(int32_t day) {
  const std::string s = storage::formatIsoDate(day);  // YYYY-MM-DD
  return {std::stoi(s.substr(0, s.size() - 6)), std::stoi(s.substr(s.size() - 5, 2))};
}

int32_t monthStart(int64_t monthIndex) {  // monthIndex = year * 12 + (month - 1)
  const int64_t y = floorDiv(monthIndex, 12);
  const int64_t m = monthIndex - y * 12 + 1;
  return *storage::parseIsoDate(fmt::format("{:04}-{:02}-01", y, m));
}

Status malformed(std::string_view entry, std::string_view why) {
  return Status::invalidArgument(
      fmt::format("cannot read the time group '{}': {}; write e.g. week(onset_date) or "
                  "week(onset_date, \"2019-01-01\", \"2024-12-31\")",
                  entry, why));
}

}  // namespace

const char* timeUnitName(TimeUnit unit) {
  switch (unit) {
    case TimeUnit::kDay:
      return "day";
    case TimeUnit::kWeek:
      return "week";
    case TimeUnit::kMonth:
      return "month";
  }
  return "?";
}

Result<std::optional<TimeGroup>> parseTimeGroup(std::string_view entry) {
  size_t i = 0;
  auto skip = [&] {
    while (i < entry.size() && std::isspace(static_cast<unsigned char>(entry[i]))) ++i;
  };
  skip();
  size_t j = i;
  while (j < entry.size() && std::isalpha(static_cast<unsigned char>(entry[j]))) ++j;
  const std::string word(entry.substr(i, j - i));
  TimeGroup g;
  if (word == "week") {
    g.unit = TimeUnit::kWeek;
  } else if (word == "day") {
    g.unit = TimeUnit::kDay;
  } else if (word == "month") {
    g.unit = TimeUnit::kMonth;
  } else {
    return std::optional<TimeGroup>();
  }
  i = j;
  skip();
  if (i >= entry.size() || entry[i] != '(') return std::optional<TimeGroup>();
  ++i;
  skip();
  if (i < entry.size() && entry[i] == '`') {
    size_t k = entry.find('`', i + 1);
    if (k == std::string_view::npos) return malformed(entry, "unterminated `quoted name`");
    g.var = std::string(entry.substr(i + 1, k - i - 1));
    i = k + 1;
  } else {
    size_t k = i;
    while (k < entry.size() &&
           (std::isalnum(static_cast<unsigned char>(entry[k])) || entry[k] == '_'))
      ++k;
    g.var = std::string(entry.substr(i, k - i));
    i = k;
  }
  if (g.var.empty()) return malformed(entry, "expected a date variable inside the parentheses");
  std::vector<int32_t> dates;
  while (true) {
    skip();
    if (i < entry.size() && entry[i] == ')') {
      ++i;
      break;
    }
    if (i >= entry.size() || entry[i] != ',') return malformed(entry, "expected ',' or ')'");
    ++i;
    skip();
    if (entry.compare(i, 4, "date") == 0) {
      i += 4;
      skip();
    }
    if (i >= entry.size() || (entry[i] != '"' && entry[i] != '\''))
      return malformed(entry, "the range bounds are quoted dates \"YYYY-MM-DD\"");
    const char quote = entry[i];
    size_t k = entry.find(quote, i + 1);
    if (k == std::string_view::npos) return malformed(entry, "unterminated quoted date");
    const std::string_view text = entry.substr(i + 1, k - i - 1);
    auto day = storage::parseIsoDate(text);
    if (!day) return malformed(entry, fmt::format("'{}' is not a calendar date YYYY-MM-DD", text));
    dates.push_back(*day);
    i = k + 1;
  }
  skip();
  if (i != entry.size()) return malformed(entry, "unexpected text after ')'");
  if (dates.size() == 1 || dates.size() > 2)
    return malformed(entry, "give both ends of the range (from, to) or neither");
  if (dates.size() == 2) {
    if (dates[0] > dates[1]) return malformed(entry, "the range starts after it ends (from > to)");
    g.from = dates[0];
    g.to = dates[1];
  }
  return std::optional<TimeGroup>(std::move(g));
}

std::string groupVariable(std::string_view entry) {
  auto g = parseTimeGroup(entry);
  if (g.isOk() && g->has_value()) return (*g)->var;
  return std::string(entry);
}

std::string timeGroupText(const TimeGroup& group) {
  bool plain = !group.var.empty() &&
               (std::isalpha(static_cast<unsigned char>(group.var[0])) || group.var[0] == '_');
  for (char c : group.var)
    plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  std::string out =
      fmt::format("{}({}", timeUnitName(group.unit), plain ? group.var : "`" + group.var + "`");
  if (group.from && group.to)
    out += fmt::format(", \"{}\", \"{}\"", storage::formatIsoDate(*group.from),
                       storage::formatIsoDate(*group.to));
  return out + ")";
}

TimeBins timeBins(TimeUnit unit, int32_t from, int32_t to) {
  TimeBins b;
  b.unit = unit;
  switch (unit) {
    case TimeUnit::kDay:
      b.firstDay = from;
      b.lastDay = to;
      b.count = static_cast<uint32_t>(to - from + 1);
      break;
    case TimeUnit::kWeek:
      b.firstDay = static_cast<int32_t>(mondayOf(from));
      b.lastDay = static_cast<int32_t>(mondayOf(to) + 6);
      b.count = static_cast<uint32_t>((b.lastDay - b.firstDay + 1) / 7);
      break;
    case TimeUnit::kMonth: {
      const YearMonth a = yearMonthOf(from), z = yearMonthOf(to);
      const int64_t ia = int64_t{a.year} * 12 + a.month - 1,
                    iz = int64_t{z.year} * 12 + z.month - 1;
      b.firstDay = monthStart(ia);
      b.lastDay = monthStart(iz + 1) - 1;
      b.count = static_cast<uint32_t>(iz - ia + 1);
      break;
    }
  }
  return b;
}

uint32_t timeBinOf(const TimeBins& bins, int64_t day) {
  if (day <= bins.firstDay) return 0;
  if (day >= bins.lastDay) return bins.count - 1;
  switch (bins.unit) {
    case TimeUnit::kDay:
      return static_cast<uint32_t>(day - bins.firstDay);
    case TimeUnit::kWeek:
      return static_cast<uint32_t>((day - bins.firstDay) / 7);
    case TimeUnit::kMonth: {
      const YearMonth a = yearMonthOf(bins.firstDay), d = yearMonthOf(static_cast<int32_t>(day));
      return static_cast<uint32_t>((d.year - a.year) * 12 + (d.month - a.month));
    }
  }
  return 0;
}

int32_t timeBinStart(const TimeBins& bins, uint32_t index) {
  switch (bins.unit) {
    case TimeUnit::kDay:
      return bins.firstDay + static_cast<int32_t>(index);
    case TimeUnit::kWeek:
      return bins.firstDay + 7 * static_cast<int32_t>(index);
    case TimeUnit::kMonth: {
      const YearMonth a = yearMonthOf(bins.firstDay);
      return monthStart(int64_t{a.year} * 12 + a.month - 1 + index);
    }
  }
  return bins.firstDay;
}

std::string timeBinLabel(const TimeBins& bins, uint32_t index) {
  const int32_t start = timeBinStart(bins, index);
  const std::string iso = storage::formatIsoDate(start);
  switch (bins.unit) {
    case TimeUnit::kDay:
      return iso;
    case TimeUnit::kMonth:
      return iso.substr(0, iso.size() - 3);
    case TimeUnit::kWeek: {
      // ISO 8601: the week belongs to the year of its Thursday; week 1 holds January 4th.
      const int32_t thursday = start + 3;
      const YearMonth t = yearMonthOf(thursday);
      const int32_t jan1 = *storage::parseIsoDate(fmt::format("{:04}-01-01", t.year));
      return fmt::format("{:04}-W{:02}", t.year, (thursday - jan1) / 7 + 1);
    }
  }
  return iso;
}

}  // namespace trialmesh::query
