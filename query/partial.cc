#include "query/partial.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "query/engine.h"
#include "query/model_kernel.h"
#include "query/plan.h"
#include "query/survival_report.h"
#include "stats/format.h"
#include "stats/km.h"

namespace trialmesh::query {

namespace {

// Checks that `p` is internally consistent (vector lengths agree with its shape) so that a
// malformed partial from a peer is refused instead of read out of bounds.
Status checkConsistent(const PartialResult& p, const char* which) {
  const size_t cells = p.shape.cells;
  auto bad = [&](const std::string& what) {
    return Status::invalidArgument(
        fmt::format("{} partial for '{}' is malformed: {}", which, p.shape.queryText, what));
  };
  if (p.cellRows.size() != cells) return bad("cellRows length differs from the cell count");
  if (p.stats.size() != p.shape.statistics) return bad("statistic count differs from its shape");
  for (size_t i = 0; i < p.stats.size(); ++i) {
    const StatPartial& s = p.stats[i];
    auto okLen = [&](size_t n) { return n == 0 || n == cells; };
    if (s.n.size() != cells || !okLen(s.missing.size()) || !okLen(s.sum.size()) ||
        !okLen(s.intSum.size()) || !okLen(s.mean.size()) || s.m2.size() != s.mean.size() ||
        !okLen(s.min.size()) || !okLen(s.max.size()) || !okLen(s.km.size()))
      return bad(fmt::format("statistic {} has a vector of the wrong length", i));
    if (!s.binCounts.empty() && s.binCounts.size() != cells * (size_t{s.bins} + 1))
      return bad(fmt::format("statistic {} has {} bin counts, expected {}", i, s.binCounts.size(),
                             cells * (size_t{s.bins} + 1)));
    for (const auto& list : s.km) {
      for (size_t k = 1; k < list.size(); ++k)
        if (!(list[k - 1].time < list[k].time))
          return bad(fmt::format("statistic {} has km times out of order", i));
    }
  }
  return Status::ok();
}

bool sameLayout(const StatPartial& a, const StatPartial& b) {
  return a.n.size() == b.n.size() && a.missing.size() == b.missing.size() &&
         a.sum.size() == b.sum.size() && a.intSum.size() == b.intSum.size() &&
         a.mean.size() == b.mean.size() && a.min.size() == b.min.size() &&
         a.max.size() == b.max.size() && a.bins == b.bins &&
         a.binCounts.size() == b.binCounts.size() && a.km.size() == b.km.size() &&
         a.vec.size() == b.vec.size();
}

std::vector<KmPoint> mergeKm(const std::vector<KmPoint>& a, const std::vector<KmPoint>& b) {
  std::vector<KmPoint> out;
  out.reserve(a.size() + b.size());
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].time < b[j].time)) {
      out.push_back(a[i++]);
    } else if (i == a.size() || b[j].time < a[i].time) {
      out.push_back(b[j++]);
    } else {
      out.push_back({a[i].time, a[i].events + b[j].events, a[i].censored + b[j].censored});
      ++i;
      ++j;
    }
  }
  return out;
}

}  // namespace

Status mergeInto(PartialResult& acc, const PartialResult& other) {
  if (!(acc.shape == other.shape)) {
    return Status::invalidArgument(fmt::format(
        "cannot merge partials of different shapes: '{}' ({} cells, dictionary {}) and '{}' "
        "({} cells, dictionary {})",
        acc.shape.queryText, acc.shape.cells, acc.shape.dictionaryHash, other.shape.queryText,
        other.shape.cells, other.shape.dictionaryHash));
  }
  TM_RETURN_IF_ERROR(checkConsistent(acc, "the accumulated"));
  TM_RETURN_IF_ERROR(checkConsistent(other, "the incoming"));
  for (size_t i = 0; i < acc.stats.size(); ++i) {
    if (!sameLayout(acc.stats[i], other.stats[i]))
      return Status::invalidArgument(
          fmt::format("cannot merge partials of '{}': statistic {} carries different fields",
                      acc.shape.queryText, i));
  }
  acc.rowsScanned += other.rowsScanned;
  for (size_t c = 0; c < acc.cellRows.size(); ++c) acc.cellRows[c] += other.cellRows[c];
  for (size_t i = 0; i < acc.stats.size(); ++i) {
    StatPartial& a = acc.stats[i];
    const StatPartial& b = other.stats[i];
    const size_t cells = a.n.size();
    for (size_t c = 0; c < a.missing.size(); ++c) a.missing[c] += b.missing[c];
    for (size_t c = 0; c < a.sum.size(); ++c) a.sum[c] += b.sum[c];
    for (size_t c = 0; c < a.intSum.size(); ++c)
      a.intSum[c] = static_cast<int64_t>(static_cast<uint64_t>(a.intSum[c]) +
                                         static_cast<uint64_t>(b.intSum[c]));
    for (size_t c = 0; c < a.min.size(); ++c) a.min[c] = std::min(a.min[c], b.min[c]);
    for (size_t c = 0; c < a.max.size(); ++c) a.max[c] = std::max(a.max[c], b.max[c]);
    for (size_t k = 0; k < a.binCounts.size(); ++k) a.binCounts[k] += b.binCounts[k];
    for (size_t c = 0; c < a.km.size(); ++c) a.km[c] = mergeKm(a.km[c], b.km[c]);
    for (size_t k = 0; k < a.vec.size(); ++k) a.vec[k] += b.vec[k];
    if (!a.mean.empty()) {
      for (size_t c = 0; c < cells; ++c)
        detail::mergeMoments(a.n[c], a.mean[c], a.m2[c], b.n[c], b.mean[c], b.m2[c]);
    } else {
      for (size_t c = 0; c < cells; ++c) a.n[c] += b.n[c];
    }
  }
  return Status::ok();
}

namespace {

std::string numberLabel(double v) { return fmt::format("{}", v); }

ResultValue typedValue(double v, storage::VariableType type) {
  if (type == storage::VariableType::kDate) return storage::formatIsoDate(static_cast<int32_t>(v));
  if (type == storage::VariableType::kInteger && std::fabs(v) < 9.2e18)
    return static_cast<int64_t>(v);
  return v;
}

}  // namespace

// GCC 12 reports a false -Wmaybe-uninitialized inside std::vector<std::variant<..., std::string>>
// reallocation when rows are built with push_back (GCC bug 105562 family); the values are
// always initialised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
Result<ResultTable> finalize(const PartialResult& partial, const BoundQuery& query) {
  const detail::Plan& plan = query.plan();
  if (!(partial.shape == query.shape())) {
    return Status::invalidArgument(
        fmt::format("the partial is for '{}' ({} cells), not for the query '{}' ({} cells)",
                    partial.shape.queryText, partial.shape.cells, plan.canonical, plan.cells));
  }
  TM_RETURN_IF_ERROR(checkConsistent(partial, "the"));
  if (plan.model) return detail::finalizeModel(partial, plan);
  const storage::Dictionary& dict = plan.dictionary;

  ResultTable t;
  t.byVariables = plan.query.by;
  for (const auto& a : plan.query.select) t.statistics.push_back(aggregateText(a));

  // Group columns: code, plus a label column when the dictionary declares labels.
  std::vector<bool> hasLabels;
  for (size_t gi = 0; gi < plan.groups.size(); ++gi) {
    const auto& g = plan.groups[gi];
    const auto& v = dict.variable(g.var);
    bool labels = false;
    for (const auto& l : v.levels) labels = labels || !l.label.empty();
    hasLabels.push_back(labels);
    // A time group's column is named as written: week(onset_date).
    t.columns.push_back(g.time ? fmt::format("{}({})", timeUnitName(g.bins.unit), v.name) : v.name);
    if (labels) t.columns.push_back(v.name + "_label");
  }
  t.groupColumns = t.columns.size();
  auto groupValues = [&](uint32_t cell) {
    std::vector<ResultValue> out(t.groupColumns);
    size_t col = t.groupColumns;
    for (size_t gi = plan.groups.size(); gi-- > 0;) {
      const auto& g = plan.groups[gi];
      const auto& v = dict.variable(g.var);
      const uint32_t code = cell % g.width();
      cell /= g.width();
      ResultValue label;
      ResultValue value;
      if (g.time) {
        value = timeBinLabel(g.bins, code);
      } else if (code == g.levels) {
        value = std::string("NA");
      } else if (v.type != storage::VariableType::kCategorical) {
        value = g.levelText(v, code);
      } else {
        value = v.levels[code].code;
        if (!v.levels[code].label.empty()) label = v.levels[code].label;
      }
      if (hasLabels[gi]) out[--col] = label;
      out[--col] = value;
    }
    return out;
  };

  const uint32_t cells = plan.cells;
  for (size_t i = 0; i < plan.aggregates.size(); ++i) {
    const auto& a = plan.aggregates[i];
    const StatPartial& s = partial.stats[i];
    uint64_t missing = 0;
    for (uint64_t m : s.missing) missing += m;
    if (missing > 0) {
      std::string vars = dict.variable(a.var).name;
      if (a.fn == AggFn::kKm) vars += " or " + dict.variable(a.event).name;
      t.notes.push_back(fmt::format("{}: {} row{} with missing {} skipped", t.statistics[i],
                                    missing, missing == 1 ? "" : "s", vars));
    }
  }

  const AggFn first = plan.aggregates.front().fn;
  if (first == AggFn::kHist) {
    t.kind = ResultTable::Kind::kHistogram;
    for (const char* c : {"bin", "from", "to", "count"}) t.columns.push_back(c);
    const auto& a = plan.aggregates.front();
    const StatPartial& s = partial.stats.front();
    const uint32_t slots = s.bins + 1;
    for (uint32_t c = 0; c < cells; ++c) {
      for (uint32_t k = 0; k < s.bins; ++k) {
        auto row = groupValues(c);
        row.push_back(
            fmt::format("[{}, {})", numberLabel(a.breaks[k]), numberLabel(a.breaks[k + 1])));
        row.push_back(a.breaks[k]);
        row.push_back(a.breaks[k + 1]);
        row.push_back(static_cast<int64_t>(s.binCounts[size_t{c} * slots + k]));
        t.rows.push_back(std::move(row));
      }
      auto outside = groupValues(c);
      outside.push_back(std::string("outside"));
      outside.push_back(std::monostate{});
      outside.push_back(std::monostate{});
      outside.push_back(static_cast<int64_t>(s.binCounts[size_t{c} * slots + s.bins]));
      t.rows.push_back(std::move(outside));
      auto miss = groupValues(c);
      miss.push_back(std::string("missing"));
      miss.push_back(std::monostate{});
      miss.push_back(std::monostate{});
      miss.push_back(static_cast<int64_t>(s.missing[c]));
      t.rows.push_back(std::move(miss));
    }
    return t;
  }

  if (first == AggFn::kKm) {
    t.kind = ResultTable::Kind::kSurvival;
    for (const char* c : {"time", "n_risk", "n_event", "n_censor", "survival", "std_err",
                          "std_err_cumhaz", "lower_95", "upper_95"})
      t.columns.push_back(c);
    const auto& a = plan.aggregates.front();
    const StatPartial& s = partial.stats.front();
    std::vector<stats::KmCurve> curves;
    std::vector<stats::SurvivalGroup> groups;
    for (uint32_t c = 0; c < cells; ++c) {
      // The curve's name as R's survfit strata: "arm=PBO" (", " between group variables).
      std::string name;
      const auto values = groupValues(c);
      size_t col = 0;
      for (size_t gi = 0; gi < plan.groups.size(); ++gi) {
        if (gi) name += ", ";
        name += dict.variable(plan.groups[gi].var).name + "=" + std::get<std::string>(values[col]);
        col += hasLabels[gi] ? 2 : 1;
      }
      if (name.empty()) name = "all";
      stats::SurvivalGroup group{name, {}};
      for (const KmPoint& p : s.km[c]) group.points.push_back({p.time, p.events, p.censored});
      TM_ASSIGN_OR_RETURN(stats::KmCurve curve, stats::kaplanMeier(name, group.points));
      uint64_t atRisk = s.n[c];
      double survival = 1.0, greenwood = 0.0;
      for (size_t k = 0; k < s.km[c].size(); ++k) {
        const KmPoint& p = s.km[c][k];
        auto row = groupValues(c);
        row.push_back(typedValue(p.time, a.type));
        row.push_back(static_cast<int64_t>(atRisk));
        row.push_back(static_cast<int64_t>(p.events));
        row.push_back(static_cast<int64_t>(p.censored));
        if (atRisk > 0 && p.events > 0) {
          const double nr = static_cast<double>(atRisk), d = static_cast<double>(p.events);
          survival *= 1.0 - d / nr;
          greenwood = atRisk > p.events ? greenwood + d / (nr * (nr - d))
                                        : std::numeric_limits<double>::infinity();
        }
        row.push_back(survival);
        if (survival > 0 && std::isfinite(greenwood)) {
          row.push_back(survival * std::sqrt(greenwood));
          row.push_back(std::sqrt(greenwood));
        } else {
          row.push_back(std::monostate{});
          row.push_back(std::monostate{});
        }
        auto finiteOrNull = [](double v) {
          return std::isfinite(v) ? ResultValue(v) : ResultValue(std::monostate{});
        };
        row.push_back(finiteOrNull(curve.rows[k].lower));
        row.push_back(finiteOrNull(curve.rows[k].upper));
        t.rows.push_back(std::move(row));
        atRisk -= p.events + p.censored;
      }
      auto textOf = [](double v) {
        return std::isnan(v) ? std::string("NA") : fmt::format("{}", v);
      };
      t.notes.push_back(fmt::format("{}: n = {}, events = {}, median = {} (95% CI {}, {})", name,
                                    curve.n, curve.events, textOf(curve.median),
                                    textOf(curve.medianLower), textOf(curve.medianUpper)));
      stats::KmCurve summary = curve;
      summary.rows.clear();
      t.curves.push_back(std::move(summary));
      curves.push_back(std::move(curve));
      groups.push_back(std::move(group));
    }
    const std::string call = plan.canonical;
    t.curveSuppressed.assign(t.curves.size(), false);
    t.appendix = stats::formatKmTable(curves, call);
    TM_RETURN_IF_ERROR(addSurvivalReports(t, curves, plan.query.select.front(), call));
    if (groups.size() >= 2) {
      // Groups without any row do not count (survdiff drops empty strata).
      std::vector<stats::SurvivalGroup> used;
      for (auto& g : groups)
        if (!g.points.empty()) used.push_back(g);
      if (used.size() >= 2) {
        TM_ASSIGN_OR_RETURN(stats::LogRankTest test, stats::logRank(used));
        t.notes.push_back(fmt::format("log-rank test: chisq = {} on {} degrees of freedom, p = {}",
                                      test.chiSquare, test.df, test.pValue));
        t.appendix += "\n" + stats::formatLogRank(test, call);
        t.logRank = std::move(test);
      }
    }
    return t;
  }

  t.kind = ResultTable::Kind::kCells;
  for (const auto& name : t.statistics) t.columns.push_back(name);
  for (uint32_t c = 0; c < cells; ++c) {
    auto row = groupValues(c);
    for (size_t i = 0; i < plan.aggregates.size(); ++i) {
      const auto& a = plan.aggregates[i];
      const StatPartial& s = partial.stats[i];
      const uint64_t n = s.n[c];
      switch (a.fn) {
        case AggFn::kCount:
        case AggFn::kQuantileCounts:  // its rows with a value; the counts stay in the partial
          row.push_back(static_cast<int64_t>(n));
          break;
        case AggFn::kSum:
          if (!s.intSum.empty() && std::fabs(s.sum[c]) < 4.6e18) {
            row.push_back(s.intSum[c]);
          } else {
            row.push_back(s.sum[c]);
          }
          break;
        case AggFn::kMean:
          row.push_back(n > 0 ? ResultValue(s.mean[c]) : ResultValue());
          break;
        case AggFn::kVar:
          row.push_back(n > 1 ? ResultValue(s.m2[c] / static_cast<double>(n - 1)) : ResultValue());
          break;
        case AggFn::kSd:
          row.push_back(n > 1 ? ResultValue(std::sqrt(s.m2[c] / static_cast<double>(n - 1)))
                              : ResultValue());
          break;
        case AggFn::kMin:
          row.push_back(n > 0 ? typedValue(s.min[c], a.type) : ResultValue());
          break;
        case AggFn::kMax:
          row.push_back(n > 0 ? typedValue(s.max[c], a.type) : ResultValue());
          break;
        default:
          row.push_back(std::monostate{});
          break;
      }
    }
    t.rows.push_back(std::move(row));
  }
  return t;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace trialmesh::query
