// Internal to tm_plot: drawing a figure (tools/plot/figure.h) on a cairo surface, SVG or PNG.
#pragma once

#include <string>

#include "common/status.h"
#include "tools/plot/figure.h"
#include "tools/plot/plot.h"

namespace trialmesh::plot::detail {

// Each writes `path` (through a temporary file renamed on success, so a failed draw leaves no
// half-written plot). Errors: IOError with cairo's reason (e.g. the directory does not exist).
Status renderKm(const KmFigure& fig, const std::string& title, PlotFormat format,
                const std::string& path);
Status renderForest(const ForestFigure& fig, PlotFormat format, const std::string& path);
Status renderBars(const BarFigure& fig, const std::string& title, PlotFormat format,
                  const std::string& path);

}  // namespace trialmesh::plot::detail
