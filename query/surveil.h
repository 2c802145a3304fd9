// `surveil(onset_date, method = "c1") where disease = "influenza"`: outbreak detection on the
// pooled count series. The text is rewritten to an ordinary count query
// (`count where ... by week(onset_date)`), which runs like any count (plain or secure, every
// site's series merged before anything is released); the detection method (stats/surveillance.h)
// then runs on the released, pooled series at the coordinator. Syntax and methods:
// docs/query-language.md, docs/surveillance.md.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "query/partial.h"
#include "stats/farrington.h"
#include "stats/surveillance.h"

namespace trialmesh::query {

struct SurveilRequest {
  enum class Method : uint8_t {
    kEarsC1,
    kEarsC2,
    kEarsC3,
    kPercentile,
    kThreshold,
    kFarrington,
  };
  Method method = Method::kEarsC1;
  std::string methodName;  // as written, lower case: "c1", "farrington_improved", ...
  std::string countQuery;  // the count query the federation runs
  std::string unit = "week";
  stats::EarsOptions ears;
  stats::PercentileOptions percentile;
  double threshold = 1;
  stats::FarringtonOptions farrington;  // method = "farrington" or "farrington_improved"
};

// nullopt when `text` is not a surveil(...) query; an actionable error when it is malformed.
Result<std::optional<SurveilRequest>> parseSurveil(std::string_view text);

// The detection table from the count query's result: one row per period with the period,
// count, upper_bound (null where the method has too little history) and alarm ("true",
// "false", "NA" as R's NA, null where not assessed). Errors when a count was suppressed.
Result<ResultTable> applySurveil(const ResultTable& counts, const SurveilRequest& request);

}  // namespace trialmesh::query
