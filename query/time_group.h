// Calendar bins of a date variable as a group-by key: `by week(onset_date)`, `day(...)`,
// `month(...)`, optionally with an explicit range `week(onset_date, "2019-01-01", "2024-12-31")`.
// The range is widened to whole bins (Monday to Sunday for weeks, ISO 8601; whole calendar
// months) and every bin of the range is a cell, so a week without cases is present with 0 and
// every site produces the same cells (secure vectors line up). Without an explicit range the
// dictionary's declared [min, max] of the date variable is the range. Rows whose date falls
// outside the range, or is missing, are not counted (the binder adds the range as a filter).
//
// A `by` entry stays a string in the syntax tree (query.h): "week(onset_date)" is its canonical
// form, parsed again here when the query is bound.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace trialmesh::query {

enum class TimeUnit : uint8_t { kDay, kWeek, kMonth };
const char* timeUnitName(TimeUnit unit);  // "day", "week", "month"

struct TimeGroup {
  TimeUnit unit = TimeUnit::kWeek;
  std::string var;
  std::optional<int32_t> from, to;  // days since 1970-01-01, both or neither
  bool operator==(const TimeGroup&) const = default;
};

// nullopt when `entry` is not written as a time group (a plain variable name); an error when it
// starts like one ("week(") but is malformed.
Result<std::optional<TimeGroup>> parseTimeGroup(std::string_view entry);
// The variable a `by` entry reads: the date variable of a time group, else the entry itself
// (what an approval must cover).
std::string groupVariable(std::string_view entry);
// Canonical text: week(onset_date) or week(onset_date, "2019-01-01", "2024-12-31").
std::string timeGroupText(const TimeGroup& group);

// The bins covering days [from, to]: the first bin's start day and the number of bins.
struct TimeBins {
  TimeUnit unit = TimeUnit::kWeek;
  int32_t firstDay = 0;  // first day of the first bin
  int32_t lastDay = 0;   // last day of the last bin
  uint32_t count = 0;
};
TimeBins timeBins(TimeUnit unit, int32_t from, int32_t to);
// Bin index of `day`, clamped into [0, count) (rows outside the range are filtered out anyway;
// clamping keeps their cell codes valid).
uint32_t timeBinOf(const TimeBins& bins, int64_t day);
// Label of bin `index`: "2024-W03" (ISO week-numbering year and week), "2024-01-15", "2024-01".
std::string timeBinLabel(const TimeBins& bins, uint32_t index);
// First day of bin `index` (days since 1970-01-01).
int32_t timeBinStart(const TimeBins& bins, uint32_t index);

}  // namespace trialmesh::query
