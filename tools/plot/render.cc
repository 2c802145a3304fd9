#include "tools/plot/render.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>

namespace trialmesh::plot::detail {
namespace {

struct Rgb {
  double r, g, b;
};

// Okabe–Ito: told apart by colour-blind readers and in greyscale print.
constexpr Rgb kPalette[] = {{0, 0, 0},          {0.90, 0.62, 0},   {0.34, 0.71, 0.91},
                            {0, 0.62, 0.45},    {0, 0.45, 0.70},   {0.84, 0.37, 0},
                            {0.80, 0.47, 0.65}, {0.55, 0.55, 0.55}};
Rgb color(size_t i) { return kPalette[i % (sizeof kPalette / sizeof kPalette[0])]; }

constexpr double kWidth = 800;

// One drawing on an SVG or PNG surface. cairo draws SVG into the file as it goes, so both
// formats write a temporary file first that finish() renames to `path`.
class Canvas {
 public:
  Canvas(PlotFormat format, std::string path, double height)
      : format_(format),
        path_(std::move(path)),
        temp_(path_ + ".tmp-" + std::to_string(::getpid())),
        height_(height) {
    surface_ = format_ == PlotFormat::kSvg
                   ? cairo_svg_surface_create(temp_.c_str(), kWidth, height_)
                   : cairo_image_surface_create(CAIRO_FORMAT_ARGB32, static_cast<int>(kWidth),
                                                static_cast<int>(std::ceil(height_)));
    cr_ = cairo_create(surface_);
    cairo_set_source_rgb(cr_, 1, 1, 1);
    cairo_paint(cr_);
    cairo_select_font_face(cr_, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr_, 12);
    cairo_set_line_width(cr_, 1);
  }
  Canvas(const Canvas&) = delete;
  Canvas& operator=(const Canvas&) = delete;
  ~Canvas() {
    cairo_destroy(cr_);
    cairo_surface_destroy(surface_);
    std::error_code ec;
    std::filesystem::remove(temp_, ec);  // left only when finish() failed or was not reached
  }

  cairo_t* cr() { return cr_; }

  Status finish() {
    cairo_status_t st = cairo_status(cr_);
    if (st == CAIRO_STATUS_SUCCESS) {
      if (format_ == PlotFormat::kPng) {
        cairo_surface_flush(surface_);
        st = cairo_surface_write_to_png(surface_, temp_.c_str());
      } else {
        cairo_surface_finish(surface_);
        st = cairo_surface_status(surface_);
      }
    }
    if (st != CAIRO_STATUS_SUCCESS)
      return Status::ioError("cannot write plot " + path_ + ": " + cairo_status_to_string(st));
    std::error_code ec;
    std::filesystem::rename(temp_, path_, ec);
    if (ec) return Status::ioError("cannot write plot " + path_ + ": " + ec.message());
    return Status::ok();
  }

  // Text anchored at (x, y) on its baseline: align 0 left, 0.5 centred, 1 right.
  void text(double x, double y, const std::string& s, double align = 0, double size = 12) {
    cairo_set_font_size(cr_, size);
    cairo_text_extents_t e;
    cairo_text_extents(cr_, s.c_str(), &e);
    cairo_move_to(cr_, x - align * e.x_advance, y);
    cairo_show_text(cr_, s.c_str());
  }
  void setColor(Rgb c, double alpha = 1) { cairo_set_source_rgba(cr_, c.r, c.g, c.b, alpha); }
  void line(double x1, double y1, double x2, double y2) {
    cairo_move_to(cr_, x1, y1);
    cairo_line_to(cr_, x2, y2);
    cairo_stroke(cr_);
  }
  void dashed(bool on) {
    const double dash[] = {5, 3};
    cairo_set_dash(cr_, dash, on ? 2 : 0, 0);
  }

 private:
  PlotFormat format_;
  std::string path_;
  std::string temp_;
  double height_;
  cairo_surface_t* surface_ = nullptr;
  cairo_t* cr_ = nullptr;
};

// Numbers on axes and in the risk table: integers plainly, others with up to 4 significant
// digits.
std::string tickLabel(double v) {
  if (std::abs(v - std::round(v)) < 1e-9 && std::abs(v) < 1e15)
    return fmt::format("{}", static_cast<long long>(std::llround(v)));
  return fmt::format("{:.4g}", v);
}

void drawNotes(Canvas& c, const std::vector<std::string>& notes, double y) {
  c.setColor({0.35, 0.35, 0.35});
  for (const auto& n : notes) {
    c.text(20, y, "Note: " + n, 0, 11);
    y += 15;
  }
}

}  // namespace

Status renderKm(const KmFigure& fig, const std::string& title, PlotFormat format,
                const std::string& path) {
  const double left = 150, right = kWidth - 30, top = 50, plotH = 340;
  const double x0 = fig.xTicks.front();
  const double riskTop = top + plotH + 62;
  const double height =
      riskTop + 18.0 * static_cast<double>(fig.curves.size() + 1) + 15.0 * fig.notes.size() + 25;
  Canvas c(format, path, height);
  cairo_t* cr = c.cr();
  auto px = [&](double x) { return left + (x - x0) / (fig.xMax - x0) * (right - left); };
  auto py = [&](double y) { return top + (1 - y) * plotH; };

  c.setColor({0, 0, 0});
  c.text(kWidth / 2, 28, title, 0.5, 14);
  // Axes, ticks and labels.
  c.line(left, top + plotH, right, top + plotH);
  c.line(left, top, left, top + plotH);
  for (double t : fig.xTicks) {
    c.line(px(t), top + plotH, px(t), top + plotH + 5);
    c.text(px(t), top + plotH + 18, tickLabel(t), 0.5, 11);
  }
  for (int k = 0; k <= 5; ++k) {
    const double y = k / 5.0;
    c.line(left - 5, py(y), left, py(y));
    c.text(left - 8, py(y) + 4, fmt::format("{:.1f}", y), 1, 11);
  }
  c.text((left + right) / 2, top + plotH + 36, "Time", 0.5);
  cairo_save(cr);
  cairo_translate(cr, left - 40, top + plotH / 2);
  cairo_rotate(cr, -M_PI / 2);
  c.text(0, 0, "Survival probability", 0.5);
  cairo_restore(cr);

  auto path_of = [&](const std::vector<Point>& pts) {
    cairo_new_path(cr);
    for (size_t i = 0; i < pts.size(); ++i) {
      if (i == 0) {
        cairo_move_to(cr, px(pts[i].x), py(pts[i].y));
      } else {
        cairo_line_to(cr, px(pts[i].x), py(pts[i].y));
      }
    }
  };
  for (size_t i = 0; i < fig.curves.size(); ++i) {
    const KmCurveFigure& k = fig.curves[i];
    // The band between the limits (only where both exist over the same span).
    if (!k.lower.empty() && !k.upper.empty() && k.lower.back().x == k.upper.back().x) {
      path_of(k.upper);
      for (auto it = k.lower.rbegin(); it != k.lower.rend(); ++it)
        cairo_line_to(cr, px(it->x), py(it->y));
      cairo_close_path(cr);
      c.setColor(color(i), 0.12);
      cairo_fill(cr);
    }
    c.setColor(color(i));
    c.dashed(true);
    for (const auto* limit : {&k.lower, &k.upper}) {
      path_of(*limit);
      cairo_stroke(cr);
    }
    c.dashed(false);
    cairo_set_line_width(cr, 2);
    path_of(k.steps);
    cairo_stroke(cr);
    cairo_set_line_width(cr, 1);
    for (const Point& m : k.censorMarks) {
      c.line(px(m.x) - 4, py(m.y), px(m.x) + 4, py(m.y));
      c.line(px(m.x), py(m.y) - 4, px(m.x), py(m.y) + 4);
    }
    // Legend, top right inside the plot.
    const double ly = top + 16 + 18.0 * static_cast<double>(i);
    cairo_set_line_width(cr, 2);
    c.line(right - 190, ly - 4, right - 165, ly - 4);
    cairo_set_line_width(cr, 1);
    c.text(right - 158, ly, k.name, 0, 11);
  }
  // Numbers at risk, one row per curve under the time axis (as survminer's risk table).
  c.setColor({0, 0, 0});
  c.text(20, riskTop, "Number at risk", 0, 12);
  for (size_t i = 0; i < fig.curves.size(); ++i) {
    const double y = riskTop + 18.0 * static_cast<double>(i + 1);
    c.setColor(color(i));
    c.text(20, y, fig.curves[i].name, 0, 11);
    for (size_t t = 0; t < fig.xTicks.size() && t < fig.curves[i].atRisk.size(); ++t)
      c.text(px(fig.xTicks[t]), y, std::to_string(fig.curves[i].atRisk[t]), 0.5, 11);
  }
  drawNotes(c, fig.notes, riskTop + 18.0 * static_cast<double>(fig.curves.size() + 1) + 10);
  return c.finish();
}

Status renderForest(const ForestFigure& fig, PlotFormat format, const std::string& path) {
  const double top = 70, rowH = 26, left = 210, right = 560;
  const double bottom = top + rowH * static_cast<double>(fig.rows.size());
  const double height = bottom + 60 + 15.0 * fig.notes.size() + 10;
  Canvas c(format, path, height);
  auto tf = [&](double v) { return fig.logScale ? std::log(v) : v; };
  double lo = fig.reference, hi = fig.reference;
  for (const auto& r : fig.rows) {
    lo = std::min(lo, r.lower);
    hi = std::max(hi, r.upper);
  }
  std::vector<double> ticks;
  if (fig.logScale) {
    // 1, 2, 5 x 10^k within the range; only powers of ten when that makes too many.
    for (int e = static_cast<int>(std::floor(std::log10(lo))) - 1;
         e <= static_cast<int>(std::ceil(std::log10(hi))); ++e)
      for (double m : {1.0, 2.0, 5.0})
        if (double v = m * std::pow(10.0, e); v >= lo * 0.999 && v <= hi * 1.001)
          ticks.push_back(v);
    if (ticks.size() < 3) {
      // A narrow range (e.g. ratios 0.6 to 1.02): evenly spaced round values inside it.
      ticks.clear();
      for (double v : prettyTicks(lo, hi, 5))
        if (v > 0 && v >= lo * 0.999 && v <= hi * 1.001) ticks.push_back(v);
    }
    if (ticks.size() > 9) {
      std::erase_if(ticks, [](double v) {
        return std::abs(std::log10(v) - std::round(std::log10(v))) > 1e-9;
      });
    }
  } else {
    ticks = prettyTicks(lo, hi, 5);
    lo = ticks.front();
    hi = ticks.back();
  }
  const double pad = (tf(hi) - tf(lo)) * 0.05 + 1e-12;
  const double a = tf(lo) - pad, b = tf(hi) + pad;
  auto px = [&](double v) { return left + (tf(v) - a) / (b - a) * (right - left); };

  c.setColor({0, 0, 0});
  c.text(kWidth / 2, 28, fig.title, 0.5, 14);
  c.text(20, top - 14, "Term", 0, 12);
  c.text(580, top - 14, fig.logScale ? "Ratio (95% CI)" : "Estimate (95% CI)", 0, 12);
  cairo_t* cr = c.cr();
  c.setColor({0.5, 0.5, 0.5});
  c.dashed(true);
  c.line(px(fig.reference), top - 6, px(fig.reference), bottom);
  c.dashed(false);
  for (size_t i = 0; i < fig.rows.size(); ++i) {
    const ForestRow& r = fig.rows[i];
    const double y = top + rowH * (static_cast<double>(i) + 0.5);
    c.setColor({0, 0, 0});
    c.text(20, y + 4, r.name, 0, 12);
    c.line(px(r.lower), y, px(r.upper), y);
    c.line(px(r.lower), y - 4, px(r.lower), y + 4);
    c.line(px(r.upper), y - 4, px(r.upper), y + 4);
    cairo_rectangle(cr, px(r.estimate) - 4, y - 4, 8, 8);
    cairo_fill(cr);
    c.text(580, y + 4, fmt::format("{:.3g} ({:.3g}, {:.3g})", r.estimate, r.lower, r.upper), 0, 12);
  }
  c.line(left, bottom, right, bottom);
  for (double t : ticks) {
    c.line(px(t), bottom, px(t), bottom + 5);
    c.text(px(t), bottom + 18, tickLabel(t), 0.5, 11);
  }
  c.text((left + right) / 2, bottom + 36, fig.xLabel + (fig.logScale ? ", log scale" : ""), 0.5);
  drawNotes(c, fig.notes, bottom + 58);
  return c.finish();
}

Status renderBars(const BarFigure& fig, const std::string& title, PlotFormat format,
                  const std::string& path) {
  // Many cells (e.g. `count by week(date)`): labels turned to the vertical, every k-th one, so
  // they do not overprint; the space under the axis grows to hold them.
  size_t cells = 0;
  size_t longest = 0;
  for (const auto& p : fig.panels) {
    cells = std::max(cells, p.bars.size());
    for (const auto& bar : p.bars) longest = std::max(longest, bar.label.size());
  }
  const bool turned = !fig.histogram && cells > 8;
  const size_t every = turned ? (cells + 39) / 40 : 1;
  const double labelRoom = turned ? 6.0 * static_cast<double>(std::min<size_t>(longest, 30)) : 0;
  const double left = 80, right = kWidth - 30, top = 50, panelH = 170, gap = 62 + labelRoom;
  const double n = static_cast<double>(fig.panels.size());
  const double height = top + n * (panelH + gap) + 15.0 * fig.notes.size() + 20;
  Canvas c(format, path, height);
  cairo_t* cr = c.cr();
  // Shared scales: every panel has the same axes, so groups compare at a glance.
  double xlo = INFINITY, xhi = -INFINITY;
  uint64_t ymax = 1;
  for (const auto& p : fig.panels)
    for (const auto& bar : p.bars) {
      xlo = std::min(xlo, bar.from);
      xhi = std::max(xhi, bar.to);
      if (bar.count) ymax = std::max(ymax, *bar.count);
    }
  if (!(xhi > xlo)) xhi = xlo + 1;
  const std::vector<double> yTicks = prettyTicks(0, static_cast<double>(ymax), 4);
  const double ytop = yTicks.back();
  c.setColor({0, 0, 0});
  c.text(kWidth / 2, 28, title, 0.5, 14);
  for (size_t p = 0; p < fig.panels.size(); ++p) {
    const BarPanel& panel = fig.panels[p];
    const double ptop = top + static_cast<double>(p) * (panelH + gap) + 14;
    const double base = ptop + panelH - 14;
    auto px = [&](double x) { return left + (x - xlo) / (xhi - xlo) * (right - left); };
    auto py = [&](double y) { return base - y / ytop * (base - ptop); };
    c.setColor({0, 0, 0});
    if (!panel.title.empty()) c.text(left, ptop - 4, panel.title, 0, 12);
    c.line(left, base, right, base);
    c.line(left, ptop, left, base);
    for (double t : yTicks) {
      c.line(left - 5, py(t), left, py(t));
      c.text(left - 8, py(t) + 4, tickLabel(t), 1, 11);
    }
    for (size_t k = 0; k < panel.bars.size(); ++k) {
      const Bar& bar = panel.bars[k];
      const double inset = fig.histogram ? 0 : 0.1;
      const double x1 = px(bar.from + inset), x2 = px(bar.to - inset);
      if (bar.count) {
        cairo_rectangle(cr, x1, py(static_cast<double>(*bar.count)), x2 - x1,
                        base - py(static_cast<double>(*bar.count)));
        c.setColor(color(4), 0.55);
        cairo_fill_preserve(cr);
        c.setColor({0, 0, 0});
        cairo_stroke(cr);
      } else {
        // A gap, marked so that nobody reads it as a zero.
        c.setColor({0.6, 0.2, 0.2});
        c.text((x1 + x2) / 2, base - 4, "suppressed", 0.5, 9);
      }
      if (!fig.histogram && !turned) {
        c.setColor({0, 0, 0});
        c.text((x1 + x2) / 2, base + 16, bar.label, 0.5, 11);
      } else if (turned && k % every == 0) {
        c.setColor({0, 0, 0});
        cairo_save(cr);
        cairo_translate(cr, (x1 + x2) / 2 + 3, base + 6);
        cairo_rotate(cr, M_PI / 2);
        c.text(0, 0, bar.label.substr(0, 30), 0, 9);
        cairo_restore(cr);
      }
    }
    if (fig.histogram) {
      c.setColor({0, 0, 0});
      for (double t : prettyTicks(xlo, xhi, 8)) {
        if (t < xlo - 1e-9 || t > xhi + 1e-9) continue;
        c.line(px(t), base, px(t), base + 5);
        c.text(px(t), base + 17, tickLabel(t), 0.5, 11);
      }
    }
    c.setColor({0, 0, 0});
    c.text((left + right) / 2, base + 34 + labelRoom, fig.xLabel, 0.5, 11);
    cairo_save(cr);
    cairo_translate(cr, left - 45, (ptop + base) / 2);
    cairo_rotate(cr, -M_PI / 2);
    c.text(0, 0, "Count", 0.5, 11);
    cairo_restore(cr);
  }
  drawNotes(c, fig.notes, top + n * (panelH + gap) + 5);
  return c.finish();
}

}  // namespace trialmesh::plot::detail
