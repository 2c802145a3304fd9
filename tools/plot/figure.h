// What `trialmesh query --plot` draws, in data coordinates, before any drawing: the step
// vertices of Kaplan–Meier curves, forest-plot rows, histogram / count bars. Kept apart from
// the cairo code (tools/plot/render.cc) so tests can compare the geometry with the result
// table and with R without parsing an image.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "query/model_runner.h"
#include "query/partial.h"

namespace trialmesh::plot {

struct Point {
  double x = 0;
  double y = 0;
  bool operator==(const Point&) const = default;
};

// One Kaplan–Meier curve as plot.survfit draws it: a right-continuous step function starting
// at (0, 1) (or at the first time when that is negative), horizontal to each time, then down to
// the survival there, ending at the last time. The confidence limits are step functions over
// the same times (conf.type "log", as the table), cut where R's limit is NA (survival 0).
struct KmCurveFigure {
  std::string name;                // "arm=PBO", "all"
  std::vector<Point> steps;        // vertices of the survival step function
  std::vector<Point> lower;        // vertices of the lower limit (stops at the first NA)
  std::vector<Point> upper;        // of the upper limit
  std::vector<Point> censorMarks;  // (time, survival) at each time with n_censor > 0 (mark.time)
  // Numbers at risk under the axis, one per KmFigure::riskTimes entry: subjects with time >= t,
  // as summary(fit, times = t, extend = TRUE)$n.risk.
  std::vector<uint64_t> atRisk;
};

struct KmFigure {
  std::vector<KmCurveFigure> curves;  // drawn curves, in table order (suppressed ones left out)
  std::vector<double> xTicks;         // pretty() ticks over [0, last time]; also riskTimes
  double xMax = 1;                    // the axis' right end (last tick >= every time)
  std::vector<std::string> notes;     // e.g. "arm=X: suppressed (disclosure control), not drawn"
};

// From a finalized Kaplan–Meier table (kind kSurvival): its rows (those --json prints) split by
// curve. Errors: InvalidArgument for another
// kind of table, or when no curve has a row to draw (every group empty or suppressed).
Result<KmFigure> kmFigure(const query::ResultTable& table);

// One row of a forest plot: a coefficient's estimate and confidence interval on the scale drawn
// (hazard / odds ratios for coxph / logistic glm, the coefficient for lm).
struct ForestRow {
  std::string name;
  double estimate = 0;
  double lower = 0;
  double upper = 0;
};

struct ForestFigure {
  std::string title;      // the model's call
  std::string xLabel;     // "Hazard ratio (95% CI)", "Odds ratio (95% CI)", "Estimate (95% CI)"
  bool logScale = false;  // ratios are drawn on a log axis
  double reference = 0;   // the no-effect line: 1 for ratios, 0 for lm
  std::vector<ForestRow> rows;  // intercept left out
  std::vector<std::string> notes;
};

// coxph: exp(coef) with summary.coxph's limits; glm (logistic): exp(estimate) with Wald limits
// exp(b -/+ qnorm(0.975) se) as confint.default; lm: estimate -/+ qt(0.975, df) se as confint.
// Terms whose estimate or limits are not finite are listed in the notes, not drawn. Errors:
// InvalidArgument when no coefficient is left to draw (e.g. an intercept-only model).
Result<ForestFigure> forestFigure(const query::ModelResult& fit);

// One bar: [from, to) of a histogram, or one cell of `count by ...` (from = index, to = index +
// 1). A suppressed count has no bar (a gap) and is named in the notes.
struct Bar {
  std::string label;  // "[40, 50)", "arm=PBO"
  double from = 0;
  double to = 0;
  std::optional<uint64_t> count;  // nullopt when suppressed
};

struct BarPanel {
  std::string title;  // the group ("sex=F"), empty without `by`
  std::vector<Bar> bars;
};

struct BarFigure {
  bool histogram = false;  // true: a numeric x axis of bin edges; false: one bar per cell
  std::string xLabel;
  std::vector<BarPanel> panels;  // one per group for hist ... by g; one panel for counts
  std::vector<std::string> notes;
};

// hist(...) [by ...] (kind kHistogram; the "outside" and "missing" rows go to the notes) or a
// table whose only statistic is `count` with at least one `by` variable. Errors: InvalidArgument
// for any other table (naming what --plot draws).
Result<BarFigure> barFigure(const query::ResultTable& table);

// R's pretty(c(lo, hi)): about `n` round ticks (1, 2, 5 x 10^k) covering [lo, hi].
std::vector<double> prettyTicks(double lo, double hi, int n = 5);

}  // namespace trialmesh::plot
