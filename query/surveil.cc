#include "query/surveil.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <set>
#include <vector>

#include "query/query.h"
#include "query/time_group.h"

namespace trialmesh::query {

namespace {

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

std::string unquote(const std::string& s) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front())
    return s.substr(1, s.size() - 2);
  return s;
}

Result<double> number(const std::string& name, const std::string& value) {
  double d = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), d);
  if (ec != std::errc() || p != value.data() + value.size() || !std::isfinite(d))
    return Status::invalidArgument(fmt::format("surveil(): {} = {} is not a number", name, value));
  return d;
}

Status usage(std::string_view why) {
  return Status::invalidArgument(fmt::format(
      "surveil(): {}; write e.g. surveil(onset_date, method = \"c1\") where disease = "
      "\"influenza\" (methods: c1, c2, c3, percentile, threshold, farrington, farrington_improved; "
      "docs/surveillance.md)",
      why));
}

const std::set<std::string> kFarringtonArguments = {"b",
                                                    "w",
                                                    "no_periods",
                                                    "past_weeks_not_included",
                                                    "threshold_method",
                                                    "powertrans",
                                                    "reweight",
                                                    "weights_threshold",
                                                    "trend",
                                                    "p_threshold_trend",
                                                    "limit_cases",
                                                    "limit_weeks"};

Result<int> whole(const std::string& name, const std::string& value) {
  TM_ASSIGN_OR_RETURN(double d, number(name, value));
  if (d != std::floor(d) || std::fabs(d) > 1e6)
    return usage(fmt::format("{} = {} is not a whole number", name, value));
  return static_cast<int>(d);
}

Result<bool> boolean(const std::string& name, const std::string& value) {
  if (value == "true" || value == "TRUE") return true;
  if (value == "false" || value == "FALSE") return false;
  return usage(fmt::format("{} = {} is not true or false", name, value));
}

// One farrington argument (R's farringtonFlexible control of the same meaning).
Status setFarrington(stats::FarringtonOptions& o, const std::string& name,
                     const std::string& value) {
  if (name == "b") {
    TM_ASSIGN_OR_RETURN(o.b, whole(name, value));
  } else if (name == "w") {
    TM_ASSIGN_OR_RETURN(o.w, whole(name, value));
  } else if (name == "no_periods") {
    TM_ASSIGN_OR_RETURN(o.noPeriods, whole(name, value));
  } else if (name == "past_weeks_not_included") {
    TM_ASSIGN_OR_RETURN(int v, whole(name, value));
    o.pastWeeksNotIncluded = v;
  } else if (name == "threshold_method") {
    if (value == "delta") {
      o.thresholdMethod = stats::FarringtonThreshold::kDelta;
    } else if (value == "nbPlugin" || value == "nbplugin") {
      o.thresholdMethod = stats::FarringtonThreshold::kNbPlugin;
    } else if (value == "muan") {
      o.thresholdMethod = stats::FarringtonThreshold::kMuan;
    } else {
      return usage(fmt::format("threshold_method \"{}\" is not delta, nbPlugin or muan", value));
    }
  } else if (name == "powertrans") {
    if (value == "2/3") {
      o.powertrans = stats::PowerTransform::kTwoThirds;
    } else if (value == "1/2") {
      o.powertrans = stats::PowerTransform::kHalf;
    } else if (value == "none") {
      o.powertrans = stats::PowerTransform::kNone;
    } else {
      return usage(fmt::format("powertrans \"{}\" is not \"2/3\", \"1/2\" or \"none\"", value));
    }
  } else if (name == "reweight") {
    TM_ASSIGN_OR_RETURN(o.reweight, boolean(name, value));
  } else if (name == "weights_threshold") {
    TM_ASSIGN_OR_RETURN(o.weightsThreshold, number(name, value));
  } else if (name == "trend") {
    TM_ASSIGN_OR_RETURN(o.trend, boolean(name, value));
  } else if (name == "p_threshold_trend") {
    TM_ASSIGN_OR_RETURN(o.pThresholdTrend, number(name, value));
  } else if (name == "limit_cases") {
    TM_ASSIGN_OR_RETURN(o.limitCases, whole(name, value));
  } else if (name == "limit_weeks") {
    TM_ASSIGN_OR_RETURN(o.limitWeeks, whole(name, value));
  }
  return Status::ok();
}

}  // namespace

Result<std::optional<SurveilRequest>> parseSurveil(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  if (text.compare(i, 7, "surveil") != 0) return std::optional<SurveilRequest>();
  i += 7;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  if (i >= text.size() || text[i] != '(') return std::optional<SurveilRequest>();
  // Top-level arguments up to the matching ')', commas inside quotes kept.
  std::vector<std::string> args;
  std::string cur;
  char quote = 0;
  size_t close = std::string_view::npos;
  for (size_t j = i + 1; j < text.size(); ++j) {
    const char c = text[j];
    if (quote) {
      if (c == quote) quote = 0;
      cur += c;
    } else if (c == '"' || c == '\'') {
      quote = c;
      cur += c;
    } else if (c == ',') {
      args.push_back(trim(cur));
      cur.clear();
    } else if (c == ')') {
      args.push_back(trim(cur));
      close = j;
      break;
    } else {
      cur += c;
    }
  }
  if (close == std::string_view::npos) return usage("missing the closing ')'");
  if (args.empty() || args[0].empty()) return usage("the first argument is the date variable");
  SurveilRequest r;
  const std::string var = args[0];
  std::string from, to;
  bool sawMethod = false;
  std::vector<std::pair<std::string, std::string>> farrington;
  for (size_t a = 1; a < args.size(); ++a) {
    const size_t eq = args[a].find('=');
    if (eq == std::string::npos)
      return usage(fmt::format("argument '{}' is not name = value", args[a]));
    const std::string name = trim(std::string_view(args[a]).substr(0, eq));
    const std::string value = unquote(trim(std::string_view(args[a]).substr(eq + 1)));
    if (name == "method") {
      sawMethod = true;
      r.methodName = value;
      for (char& c : r.methodName)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (value == "c1" || value == "C1") {
        r.method = SurveilRequest::Method::kEarsC1;
      } else if (value == "c2" || value == "C2") {
        r.method = SurveilRequest::Method::kEarsC2;
      } else if (value == "c3" || value == "C3") {
        r.method = SurveilRequest::Method::kEarsC3;
      } else if (value == "percentile") {
        r.method = SurveilRequest::Method::kPercentile;
      } else if (value == "threshold") {
        r.method = SurveilRequest::Method::kThreshold;
      } else if (value == "farrington") {
        r.method = SurveilRequest::Method::kFarrington;
        r.farrington = {};
      } else if (value == "farrington_improved") {
        r.method = SurveilRequest::Method::kFarrington;
        r.farrington = stats::FarringtonOptions::improved();
      } else {
        return usage(fmt::format("unknown method \"{}\"", value));
      }
    } else if (name == "unit") {
      if (value != "week" && value != "day" && value != "month")
        return usage(fmt::format("unit \"{}\" is not week, day or month", value));
      r.unit = value;
    } else if (name == "from") {
      from = value;
    } else if (name == "to") {
      to = value;
    } else if (name == "baseline") {
      TM_ASSIGN_OR_RETURN(double d, number(name, value));
      r.ears.baseline = static_cast<int>(d);
      if (d != r.ears.baseline) return usage("baseline is a whole number of periods");
    } else if (name == "alpha") {
      TM_ASSIGN_OR_RETURN(double d, number(name, value));
      r.ears.alpha = d;
    } else if (name == "min_sigma") {
      TM_ASSIGN_OR_RETURN(r.ears.minSigma, number(name, value));
    } else if (name == "years") {
      TM_ASSIGN_OR_RETURN(double d, number(name, value));
      r.percentile.years = static_cast<int>(d);
      if (d != r.percentile.years) return usage("years is a whole number");
    } else if (name == "p") {
      TM_ASSIGN_OR_RETURN(r.percentile.percentile, number(name, value));
    } else if (name == "n") {
      TM_ASSIGN_OR_RETURN(r.threshold, number(name, value));
    } else if (kFarringtonArguments.count(name)) {
      // Applied after the loop: the method (plain or improved) sets the defaults they override.
      farrington.emplace_back(name, value);
    } else {
      return usage(
          fmt::format("unknown argument '{}' (allowed: method, unit, from, to, "
                      "baseline, alpha, min_sigma, years, p, n, and for farrington: b, w, "
                      "no_periods, past_weeks_not_included, threshold_method, powertrans, "
                      "reweight, weights_threshold, trend, p_threshold_trend, limit_cases, "
                      "limit_weeks)",
                      name));
    }
  }
  if (!sawMethod) return usage("give the method, e.g. method = \"c1\"");
  if (!farrington.empty() && r.method != SurveilRequest::Method::kFarrington)
    return usage(fmt::format("'{}' is an argument of the farrington methods only",
                             farrington.front().first));
  if (r.method == SurveilRequest::Method::kFarrington) {
    if (r.unit == "day") return usage("the farrington methods need unit = \"week\" or \"month\"");
    r.farrington.periodsPerYear = r.unit == "week" ? 52 : 12;
    if (r.ears.alpha) r.farrington.alpha = *r.ears.alpha;
    for (const auto& [name, value] : farrington)
      TM_RETURN_IF_ERROR(setFarrington(r.farrington, name, value));
  }
  if (from.empty() != to.empty()) return usage("give both from and to, or neither");
  r.percentile.periodsPerYear = r.unit == "week" ? 52 : r.unit == "month" ? 12 : 365;
  std::string group = r.unit + "(" + var;
  if (!from.empty()) group += fmt::format(", \"{}\", \"{}\"", from, to);
  group += ")";
  r.countQuery = "count " + trim(text.substr(close + 1)) + " by " + group;
  auto parsed = parseQuery(r.countQuery);
  if (!parsed) return usage(parsed.status().message());
  if (parsed->by.size() != 1)
    return usage("it takes no 'by' clause: one series per query (filter with 'where')");
  r.countQuery = canonicalQueryText(*parsed);
  return std::optional<SurveilRequest>(std::move(r));
}

Result<ResultTable> applySurveil(const ResultTable& counts, const SurveilRequest& request) {
  if (counts.kind != ResultTable::Kind::kCells || counts.groupColumns != 1 ||
      counts.columns.size() != 2)
    return Status::invalidArgument("surveil(): the count result is not one series");
  std::vector<double> x;
  for (const auto& row : counts.rows) {
    if (const auto* v = std::get_if<int64_t>(&row[1])) {
      x.push_back(static_cast<double>(*v));
    } else if (const auto* d = std::get_if<double>(&row[1])) {
      x.push_back(*d);
    } else {
      return Status::failedPrecondition(fmt::format(
          "surveil(): the count of {} was withheld by disclosure control (fewer cases than "
          "the approval's min_cell_size); detection needs every period's count: widen the "
          "filter or use unit = \"month\"",
          std::get<std::string>(row[0])));
    }
  }
  Result<std::vector<stats::Signal>> signals = Status::internal("unset");
  using M = SurveilRequest::Method;
  switch (request.method) {
    case M::kEarsC1:
    case M::kEarsC2:
    case M::kEarsC3: {
      stats::EarsOptions o = request.ears;
      o.method = request.method == M::kEarsC1   ? stats::EarsMethod::kC1
                 : request.method == M::kEarsC2 ? stats::EarsMethod::kC2
                                                : stats::EarsMethod::kC3;
      signals = stats::earsC(x, o);
      break;
    }
    case M::kPercentile:
      signals = stats::movingPercentile(x, request.percentile);
      break;
    case M::kThreshold:
      signals = stats::fixedThreshold(x, request.threshold);
      break;
    case M::kFarrington:
      signals = stats::farringtonFlexible(x, request.farrington);
      break;
  }
  if (!signals) return signals.status();
  ResultTable t;
  t.columns = {counts.columns[0], "count", "upper_bound", "alarm"};
  t.groupColumns = 1;
  t.byVariables = counts.byVariables;
  t.statistics = {"count", "upper_bound", "alarm"};
  size_t alarms = 0, assessed = 0;
  for (size_t k = 0; k < counts.rows.size(); ++k) {
    const stats::Signal& s = (*signals)[k];
    std::vector<ResultValue> row{counts.rows[k][0], counts.rows[k][1], ResultValue{},
                                 ResultValue{}};
    if (s.assessed) {
      ++assessed;
      if (!std::isnan(s.upperBound)) row[2] = s.upperBound;
      row[3] = std::string(!s.alarm ? "NA" : *s.alarm ? "true" : "false");
      alarms += s.alarm.value_or(false);
    }
    t.rows.push_back(std::move(row));
  }
  t.notes = counts.notes;
  t.notes.push_back(fmt::format("{} alarm(s) in {} assessed of {} periods", alarms, assessed,
                                counts.rows.size()));
  return t;
}

}  // namespace trialmesh::query
