// `trialmesh query ... --plot FILE.svg|FILE.png`: draws a result with cairo (one drawing code
// path for both formats), from the same structures `--json` prints:
//   km(...)           survival step curves per group, dashed 95% limits (conf.type "log", as
//                     plot.survfit with conf.int = TRUE) over a light band, "+" censoring
//                     marks, and the numbers at risk under the axis;
//   coxph / glm / lm  a forest plot: estimate and CI per coefficient (hazard / odds ratios on
//                     a log axis), intercept left out;
//   hist(...), count by g   bars per bin / cell (one panel per group for hist ... by g).
// A suppressed value is never drawn as zero: it is a gap, and a note on the plot names it.
// The geometry is computed first (tools/plot/figure.h) so tests can check it.
//
// Thread-safety: each call uses its own cairo surface; calls may run concurrently.
// Errors come back as Status (nothing is thrown); on error no file is left at `path`.
#pragma once

#include <string>

#include "common/status.h"
#include "query/model_runner.h"
#include "query/partial.h"
#include "query/query.h"

namespace trialmesh::plot {

enum class PlotFormat { kSvg, kPng };

// The format named by the file's extension (.svg or .png, any case). Errors: InvalidArgument
// naming the path and the extensions accepted.
Result<PlotFormat> plotFormatOf(const std::string& path);

// Before running anything: whether --plot can draw the result of `queryText` (the text as the
// user wrote it). Errors: InvalidArgument naming what --plot draws (e.g. for 'mean(bmi) by
// arm', quantiles, surveil, chisq / fisher).
Status checkPlottable(const std::string& queryText);

// Draws a finalized table (km, hist, count by ...) with `title` (the query text) on top.
Status plotTable(const query::ResultTable& table, const std::string& title,
                 const std::string& path);
// Draws a model fit's forest plot.
Status plotModel(const query::ModelResult& fit, const std::string& path);

}  // namespace trialmesh::plot
