#include "tools/plot/plot.h"

#include <algorithm>
#include <cctype>

#include "query/cross_test.h"
#include "query/quantile_query.h"
#include "query/stratified_km.h"
#include "query/surveil.h"
#include "tools/plot/figure.h"
#include "tools/plot/render.h"

namespace trialmesh::plot {
namespace {

constexpr const char* kWhatPlots =
    "--plot draws km(...) curves, lm / glm / coxph forest plots, hist(...) and a single count by "
    "groups (e.g. 'count by arm')";

}  // namespace

Result<PlotFormat> plotFormatOf(const std::string& path) {
  const size_t dot = path.rfind('.');
  std::string ext = dot == std::string::npos ? std::string() : path.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (ext == "svg") return PlotFormat::kSvg;
  if (ext == "png") return PlotFormat::kPng;
  return Status::invalidArgument("--plot " + path +
                                 ": the file name must end in .svg or .png (the format drawn)");
}

Status checkPlottable(const std::string& queryText) {
  auto surveil = query::parseSurveil(queryText);
  if (surveil && *surveil)
    return Status::invalidArgument(std::string(kWhatPlots) + "; surveil(...) has no plot");
  auto cross = query::parseCrossTest(queryText);
  if (cross && *cross)
    return Status::invalidArgument(std::string(kWhatPlots) + "; chisq / fisher give one test row");
  auto stratified = query::parseStratifiedKm(queryText);
  if (stratified && *stratified) return Status::ok();  // its curves are a plain km
  auto q = query::parseQuery(queryText);
  if (!q) return Status::ok();  // the query itself reports its syntax error
  if (query::isQuantileQuery(*q))
    return Status::invalidArgument(std::string(kWhatPlots) + "; not quantiles");
  if (q->select.size() == 1) {
    const query::AggFn fn = q->select.front().fn;
    if (query::isModel(fn) || fn == query::AggFn::kKm || fn == query::AggFn::kHist)
      return Status::ok();
    if (fn == query::AggFn::kCount && !q->by.empty()) return Status::ok();
  }
  return Status::invalidArgument(std::string(kWhatPlots) + "; not '" +
                                 query::canonicalQueryText(*q) + "'");
}

Status plotTable(const query::ResultTable& table, const std::string& title,
                 const std::string& path) {
  auto format = plotFormatOf(path);
  if (!format) return format.status();
  if (table.kind == query::ResultTable::Kind::kSurvival) {
    auto fig = kmFigure(table);
    if (!fig) return fig.status();
    return detail::renderKm(*fig, title, *format, path);
  }
  auto fig = barFigure(table);
  if (!fig) return fig.status();
  return detail::renderBars(*fig, title, *format, path);
}

Status plotModel(const query::ModelResult& fit, const std::string& path) {
  auto format = plotFormatOf(path);
  if (!format) return format.status();
  auto fig = forestFigure(fit);
  if (!fig) return fig.status();
  return detail::renderForest(*fig, *format, path);
}

}  // namespace trialmesh::plot
