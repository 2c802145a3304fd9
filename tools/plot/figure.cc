#include "tools/plot/figure.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <map>

#include "query/disclosure.h"

namespace trialmesh::plot {
namespace {

std::string valueText(const query::ResultValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return fmt::format("{}", *d);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return "NA";
}

// A bin edge (finalize writes reals; an integer is accepted too).
double numberOf(const query::ResultValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return std::nan("");
}

bool isSuppressedValue(const query::ResultValue& v) {
  const auto* s = std::get_if<std::string>(&v);
  return s != nullptr && *s == query::kSuppressedMarker;
}

// The cell a row belongs to, as finalize names curves ("arm=A, sex=F"); a "<var>_label" column
// after its variable is skipped. `labels` uses the label text instead of the code when there is
// one and leaves out "var=" for a single `by` variable (bar labels under a count chart).
std::string groupName(const query::ResultTable& t, const std::vector<query::ResultValue>& row,
                      bool labels) {
  std::string name;
  size_t col = 0;
  for (size_t gi = 0; gi < t.byVariables.size() && col < t.groupColumns; ++gi) {
    if (gi) name += ", ";
    std::string value = valueText(row[col]);
    ++col;
    if (col < t.groupColumns && t.columns[col] == t.byVariables[gi] + "_label") {
      if (labels && !std::holds_alternative<std::monostate>(row[col])) value = valueText(row[col]);
      ++col;
    }
    name += (labels && t.byVariables.size() == 1) ? value : t.byVariables[gi] + "=" + value;
  }
  return name;
}

// Vertices of a right-continuous step function from (x0, 1) through (t_i, y_i): horizontal to
// each time, then vertical to its value; a time that does not change the value adds no vertex,
// and the last time closes the line. Stops before the first non-finite value (R's NA limit),
// with the horizontal run up to that time.
std::vector<Point> stepVertices(double x0, const std::vector<stats::KmRow>& rows,
                                double stats::KmRow::*field) {
  std::vector<Point> out{{x0, 1.0}};
  double prev = 1.0;
  for (const auto& r : rows) {
    const double y = r.*field;
    if (!std::isfinite(y)) {
      if (out.back().x < r.time) out.push_back({r.time, prev});
      return out;
    }
    if (y != prev) {
      if (out.back().x != r.time || out.back().y != prev) out.push_back({r.time, prev});
      out.push_back({r.time, y});
      prev = y;
    }
  }
  if (!rows.empty() && out.back().x < rows.back().time) out.push_back({rows.back().time, prev});
  return out;
}

}  // namespace

std::vector<double> prettyTicks(double lo, double hi, int n) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(n, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double unit = magnitude * 10;
  for (double c : {1.0, 2.0, 5.0, 10.0}) {
    // The smallest round unit giving at most n + 1 intervals, as pretty()'s default bias does.
    if ((hi - lo) / (c * magnitude) <= n + 1) {
      unit = c * magnitude;
      break;
    }
  }
  const double first = std::floor(lo / unit + 1e-9) * unit;
  const double last = std::ceil(hi / unit - 1e-9) * unit;
  std::vector<double> ticks;
  for (double x = first; x <= last + unit * 1e-9; x += unit)
    ticks.push_back(std::abs(x) < unit * 1e-9 ? 0.0 : x);
  return ticks;
}

Result<KmFigure> kmFigure(const query::ResultTable& table) {
  if (table.kind != query::ResultTable::Kind::kSurvival)
    return Status::invalidArgument("not a Kaplan-Meier table (km(...) query)");
  // The curves' rows are the table's rows (what --json prints), by column name.
  auto column = [&](const char* name) -> Result<size_t> {
    auto it = std::find(table.columns.begin(), table.columns.end(), name);
    if (it == table.columns.end())
      return Status::invalidArgument(std::string("Kaplan-Meier table without column ") + name);
    return static_cast<size_t>(it - table.columns.begin());
  };
  TM_ASSIGN_OR_RETURN(const size_t cTime, column("time"));
  TM_ASSIGN_OR_RETURN(const size_t cRisk, column("n_risk"));
  TM_ASSIGN_OR_RETURN(const size_t cEvent, column("n_event"));
  TM_ASSIGN_OR_RETURN(const size_t cCensor, column("n_censor"));
  TM_ASSIGN_OR_RETURN(const size_t cSurv, column("survival"));
  TM_ASSIGN_OR_RETURN(const size_t cLower, column("lower_95"));
  TM_ASSIGN_OR_RETURN(const size_t cUpper, column("upper_95"));
  std::vector<std::vector<stats::KmRow>> rowsOf(table.curves.size());
  std::vector<bool> hidden(table.curves.size(), false);
  for (size_t i = 0; i < table.curves.size(); ++i)
    hidden[i] = i < table.curveSuppressed.size() && table.curveSuppressed[i];
  auto count = [](const query::ResultValue& v) {
    const auto* n = std::get_if<int64_t>(&v);
    return n != nullptr && *n > 0 ? static_cast<uint64_t>(*n) : uint64_t{0};
  };
  for (const auto& row : table.rows) {
    if (row.size() != table.columns.size()) return Status::invalidArgument("malformed km table");
    std::string name = groupName(table, row, false);
    if (name.empty()) name = "all";
    size_t curve = 0;
    while (curve < table.curves.size() && table.curves[curve].name != name) ++curve;
    if (curve == table.curves.size())
      return Status::invalidArgument("km table row of no curve (" + name + ")");
    // A row with a withheld value belongs to a suppressed group: none of it is drawn.
    for (const auto& v : row) hidden[curve] = hidden[curve] || isSuppressedValue(v);
    stats::KmRow r;
    r.time = numberOf(row[cTime]);
    r.nRisk = count(row[cRisk]);
    r.nEvent = count(row[cEvent]);
    r.nCensor = count(row[cCensor]);
    r.survival = numberOf(row[cSurv]);
    r.lower = numberOf(row[cLower]);
    r.upper = numberOf(row[cUpper]);
    rowsOf[curve].push_back(r);
  }
  KmFigure fig;
  std::vector<size_t> drawn;
  double x0 = 0;
  double last = 0;
  for (size_t i = 0; i < table.curves.size(); ++i) {
    const std::string& name = table.curves[i].name;
    if (hidden[i]) {
      fig.notes.push_back(name + ": suppressed (disclosure control), not drawn");
    } else if (rowsOf[i].empty()) {
      fig.notes.push_back(name + ": no subjects, not drawn");
    } else {
      drawn.push_back(i);
      x0 = std::min(x0, rowsOf[i].front().time);
      last = std::max(last, rowsOf[i].back().time);
    }
  }
  if (drawn.empty())
    return Status::invalidArgument("nothing to plot: every Kaplan-Meier group is empty or " +
                                   std::string(query::kSuppressedMarker));
  fig.xTicks = prettyTicks(x0, last);
  fig.xMax = std::max(fig.xTicks.back(), last);
  for (size_t i : drawn) {
    const std::vector<stats::KmRow>& rows = rowsOf[i];
    KmCurveFigure cf;
    cf.name = table.curves[i].name;
    cf.steps = stepVertices(x0, rows, &stats::KmRow::survival);
    cf.lower = stepVertices(x0, rows, &stats::KmRow::lower);
    cf.upper = stepVertices(x0, rows, &stats::KmRow::upper);
    for (const auto& r : rows)
      if (r.nCensor > 0) cf.censorMarks.push_back({r.time, r.survival});
    // Numbers at risk at each tick: the n_risk of the first time >= t (everyone still followed
    // at t is at risk there), 0 past the last time.
    for (double t : fig.xTicks) {
      auto it = std::lower_bound(rows.begin(), rows.end(), t,
                                 [](const stats::KmRow& r, double v) { return r.time < v; });
      cf.atRisk.push_back(it == rows.end() ? 0 : it->nRisk);
    }
    fig.curves.push_back(std::move(cf));
  }
  return fig;
}

Result<ForestFigure> forestFigure(const query::ModelResult& fit) {
  ForestFigure fig;
  fig.title = fit.call;
  auto add = [&](const std::string& name, double est, double lo, double hi) {
    if (!std::isfinite(est) || !std::isfinite(lo) || !std::isfinite(hi) ||
        (fig.logScale && (est <= 0 || lo <= 0))) {
      fig.notes.push_back(name + ": estimate or limits not finite, not drawn");
      return;
    }
    fig.rows.push_back({name, est, lo, hi});
  };
  if (fit.cox) {
    fig.logScale = true;
    fig.reference = 1;
    fig.xLabel = fmt::format("Hazard ratio ({:g}% CI)", fit.cox->confLevel * 100);
    for (const auto& c : fit.cox->coefficients) add(c.name, c.hazardRatio, c.lower, c.upper);
  } else if (fit.logistic) {
    fig.logScale = true;
    fig.reference = 1;
    fig.xLabel = "Odds ratio (95% Wald CI)";
    const double z = boost::math::quantile(boost::math::normal(), 0.975);
    const auto& coefs = fit.logistic->coefficients;
    for (size_t k = fit.logistic->intercept ? 1 : 0; k < coefs.size(); ++k) {
      const auto& c = coefs[k];
      add(c.name, std::exp(c.estimate), std::exp(c.estimate - z * c.stdError),
          std::exp(c.estimate + z * c.stdError));
    }
  } else if (fit.linear) {
    fig.xLabel = "Estimate (95% CI)";
    const auto& lin = *fit.linear;
    if (!(lin.dfResidual > 0))
      return Status::invalidArgument("nothing to plot: the linear model has no residual df");
    const double q = boost::math::quantile(boost::math::students_t(lin.dfResidual), 0.975);
    for (size_t k = lin.intercept ? 1 : 0; k < lin.coefficients.size(); ++k) {
      const auto& c = lin.coefficients[k];
      add(c.name, c.estimate, c.estimate - q * c.stdError, c.estimate + q * c.stdError);
    }
  } else {
    return Status::invalidArgument("not a fitted model");
  }
  if (fig.rows.empty())
    return Status::invalidArgument(
        "nothing to plot: the model has no coefficient besides the "
        "intercept with finite limits (" +
        fit.call + ")");
  return fig;
}

Result<BarFigure> barFigure(const query::ResultTable& table) {
  BarFigure fig;
  const size_t g = table.groupColumns;
  if (table.kind == query::ResultTable::Kind::kHistogram) {
    fig.histogram = true;
    fig.xLabel = table.statistics.empty() ? "" : table.statistics.front();
    std::map<std::string, size_t> panelOf;
    for (const auto& row : table.rows) {
      if (row.size() < g + 4) return Status::invalidArgument("malformed histogram table");
      const std::string group = groupName(table, row, false);
      auto [it, added] = panelOf.emplace(group, fig.panels.size());
      if (added) fig.panels.push_back({group, {}});
      const std::string bin = valueText(row[g]);
      const query::ResultValue& count = row[g + 3];
      const std::string where = group.empty() ? std::string() : group + ": ";
      if (bin == "outside" || bin == "missing") {
        if (isSuppressedValue(count)) {
          fig.notes.push_back(where + bin + " count suppressed");
        } else if (const auto* n = std::get_if<int64_t>(&count); n != nullptr && *n > 0) {
          fig.notes.push_back(where + std::to_string(*n) +
                              (bin == "outside" ? " outside the bins" : " missing"));
        }
        continue;
      }
      Bar bar;
      bar.label = bin;
      bar.from = numberOf(row[g + 1]);
      bar.to = numberOf(row[g + 2]);
      if (isSuppressedValue(count)) {
        fig.notes.push_back(where + bin + " suppressed (disclosure control): gap, not zero");
      } else if (const auto* n = std::get_if<int64_t>(&count)) {
        bar.count = static_cast<uint64_t>(*n);
      }
      fig.panels[it->second].bars.push_back(std::move(bar));
    }
    return fig;
  }
  if (table.kind != query::ResultTable::Kind::kCells || table.statistics.size() != 1 ||
      table.statistics.front().rfind("count", 0) != 0 || table.byVariables.empty() ||
      table.columns.size() != g + 1) {
    return Status::invalidArgument(
        "--plot draws km(...) curves, lm/glm/coxph forest plots, hist(...) and a single count by "
        "groups (e.g. 'count by arm'); not this table");
  }
  std::string xLabel;
  for (const auto& v : table.byVariables) xLabel += (xLabel.empty() ? "" : " x ") + v;
  fig.xLabel = xLabel;
  BarPanel panel;
  for (size_t i = 0; i < table.rows.size(); ++i) {
    const auto& row = table.rows[i];
    Bar bar;
    bar.label = groupName(table, row, true);
    bar.from = static_cast<double>(i);
    bar.to = static_cast<double>(i + 1);
    if (isSuppressedValue(row[g])) {
      fig.notes.push_back(groupName(table, row, false) +
                          ": count suppressed (disclosure control): gap, not zero");
    } else if (const auto* n = std::get_if<int64_t>(&row[g])) {
      bar.count = static_cast<uint64_t>(*n);
    }
    panel.bars.push_back(std::move(bar));
  }
  fig.panels.push_back(std::move(panel));
  return fig;
}

}  // namespace trialmesh::plot
