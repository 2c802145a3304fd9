// `trialmesh query --plot` (tools/plot): the geometry drawn equals R on the same rows — the
// Kaplan–Meier step vertices and 95% limits (survfit, conf.type "log"), the censoring marks, the
// axis ticks (pretty()) and the numbers at risk under them (summary(fit, times, extend = TRUE)),
// forest-plot ratios and limits (coxph, glm's confint.default, lm's confint) — suppressed
// groups and bins are left out (a gap, and a note), and the files written are valid SVG
// (parsed by python3's xml) and PNG (signature and IHDR size). Bad extensions, unplottable
// queries and unwritable paths are clear errors that leave no file behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "query/disclosure.h"
#include "query/model_runner.h"
#include "query_test_util.h"
#include "tools/plot/figure.h"
#include "tools/plot/plot.h"

namespace trialmesh::plot {
namespace {

namespace fs = std::filesystem;
using query::testing::Cell;
using query::testing::makeVar;
using query::testing::Row;

// Groups 3 and 4 have 4 and 3 subjects (both suppressed under min_cell_size 5, so no secondary
// suppression is needed) with early times; hist(x, 0, 100, 10) has 3 values in [80, 90) and 2 in
// [90, 100) (suppressed bins).
const char* kScript = R"R(
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
set.seed(7)
n <- 120
d <- data.frame(time = sample(1:300, n, replace = TRUE), status = rbinom(n, 1, 0.7),
                g = sample(1:2, n, replace = TRUE), x = sample(0:79, n, replace = TRUE))
d$x[1:2] <- 95L
d$x[3:5] <- 85L
d$time[d$g == 2][1:3] <- 150L                                # tied times
d$status[d$g == 1 & d$time == max(d$time[d$g == 1])] <- 0    # censored at the last time
d <- rbind(d, data.frame(time = c(3L, 5L, 5L, 9L), status = c(1L, 0L, 1L, 1L), g = 3L,
                         x = c(10L, 20L, 30L, 40L)),
           data.frame(time = c(4L, 6L, 8L), status = c(1L, 1L, 0L), g = 4L, x = c(50L, 60L, 70L)))
write.csv(d, file.path(dir, "d.csv"), row.names = FALSE)
out <- file(file.path(dir, "r.txt"), "w")
num <- function(v) ifelse(is.na(v), "NA", sprintf("%.17g", v))
f <- survfit(Surv(time, status) ~ g, data = d)
st <- rep(names(f$strata), f$strata)
for (i in seq_along(f$time))
  writeLines(paste("km", st[i], num(f$time[i]), f$n.risk[i], f$n.event[i], f$n.censor[i],
                   num(f$surv[i]), num(f$lower[i]), num(f$upper[i])), out)
ticks <- pretty(c(0, max(d$time[d$g < 3])))
writeLines(paste("ticks", "all", paste(num(ticks), collapse = " ")), out)
s <- summary(f, times = ticks, extend = TRUE)
ss <- as.character(s$strata)
for (g in c("g=1", "g=2"))
  writeLines(paste("risk", g, paste(s$n.risk[ss == g], collapse = " ")), out)
cox <- coxph(Surv(time, status) ~ x + g, data = d)
ci <- exp(confint(cox))
for (k in 1:2) writeLines(paste("cox", names(coef(cox))[k], num(exp(coef(cox))[k]), num(ci[k, 1]),
                                num(ci[k, 2])), out)
gl <- glm(status ~ x + g, family = binomial, data = d)
ci <- exp(confint.default(gl))
for (k in 2:3) writeLines(paste("glm", names(coef(gl))[k], num(exp(coef(gl))[k]), num(ci[k, 1]),
                                num(ci[k, 2])), out)
l <- lm(time ~ x + g, data = d)
ci <- confint(l)
for (k in 2:3) writeLines(paste("lm", names(coef(l))[k], num(coef(l)[k]), num(ci[k, 1]),
                                num(ci[k, 2])), out)
close(out)
)R";

::testing::AssertionResult relClose(double a, double b, double tol = 1e-12) {
  if (std::isnan(a) && std::isnan(b)) return ::testing::AssertionSuccess();
  if (std::fabs(a - b) <= tol * std::max({std::fabs(a), std::fabs(b), 1.0}))
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << a << " vs R " << b;
}

double parseValue(const std::string& s) { return s == "NA" ? std::nan("") : std::stod(s); }

// One row of R's survfit object.
struct RKm {
  double time, nRisk, nEvent, nCensor, surv, lower, upper;
};

// R's step function vertices, built from R's numbers by the rule plot.survfit draws (and
// figure.h states): from (0, 1), horizontal to each time where the value changes, then down.
std::vector<Point> rSteps(const std::vector<RKm>& rows, double RKm::*field) {
  std::vector<Point> out{{0, 1}};
  double prev = 1;
  for (const auto& r : rows) {
    const double y = r.*field;
    if (std::isnan(y)) {
      if (out.back().x < r.time) out.push_back({r.time, prev});
      return out;
    }
    if (y != prev) {
      if (out.back().x != r.time) out.push_back({r.time, prev});
      out.push_back({r.time, y});
      prev = y;
    }
  }
  if (out.back().x < rows.back().time) out.push_back({rows.back().time, prev});
  return out;
}

void expectSameVertices(const std::vector<Point>& got, const std::vector<Point>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(relClose(got[i].x, want[i].x)) << "vertex " << i;
    EXPECT_TRUE(relClose(got[i].y, want[i].y)) << "vertex " << i;
  }
}

class PlotTest : public ::testing::Test {
 protected:
  // Rscript runs once for the suite (a few seconds), every test reads its output.
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("tm_plot_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "run.R") << kScript;
    const std::string cmd = std::string(TRIALMESH_RSCRIPT) + " --vanilla " +
                            (dir_ / "run.R").string() + " " + dir_.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream in(dir_ / "r.txt");
    for (std::string line; std::getline(in, line);) {
      std::istringstream f(line);
      std::string kind, key;
      f >> kind >> key;
      std::vector<double> v;
      for (std::string x; f >> x;) v.push_back(parseValue(x));
      if (kind == "km") {
        ASSERT_EQ(v.size(), 7u) << line;
        km_[key].push_back({v[0], v[1], v[2], v[3], v[4], v[5], v[6]});
      } else {
        r_[kind + " " + key] = v;
      }
    }
    auto dict = storage::Dictionary::create(
        "PLOT", {makeVar("time", storage::VariableType::kInteger, false, {}, 0, 1000),
                 makeVar("status", storage::VariableType::kInteger, false, {}, 0, 1),
                 makeVar("g", storage::VariableType::kInteger, false, {}, 1, 4),
                 makeVar("x", storage::VariableType::kInteger, false, {}, 0, 100)});
    ASSERT_TRUE(dict.isOk()) << dict.status().toString();
    dict_ = std::make_unique<storage::Dictionary>(std::move(dict).value());
    std::ifstream csv(dir_ / "d.csv");
    std::string line;
    std::getline(csv, line);
    ASSERT_EQ(line, R"("time","status","g","x")");
    std::vector<Row> rows;
    while (std::getline(csv, line)) {
      Row row;
      std::stringstream fields(line);
      for (std::string v; std::getline(fields, v, ',');)
        row.push_back(Cell::integer(std::stoll(v)));
      rows.push_back(row);
    }
    ASSERT_EQ(rows.size(), 127u);
    table_ = query::testing::makeTable(*dict_, rows);
  }
  static void TearDownTestSuite() {
    table_.reset();
    dict_.reset();
    fs::remove_all(dir_);
  }
  void SetUp() override {
    ASSERT_TRUE(table_ != nullptr) << "the R fixture failed (see the first test's output)";
  }

  // The query's table after disclosure control with min_cell_size `m` (0: none), as a node
  // releases it.
  static query::ResultTable released(const std::string& text, uint32_t m) {
    auto q = query::parseQuery(text);
    EXPECT_TRUE(q.isOk()) << q.status().toString();
    auto b = query::bindQuery(*q, *dict_);
    EXPECT_TRUE(b.isOk()) << b.status().toString();
    auto p = query::execute(*b, *table_, query::testing::threadsOnly(1));
    EXPECT_TRUE(p.isOk()) << p.status().toString();
    auto t = query::finalizeWithDisclosureControl(*p, *b, {m});
    EXPECT_TRUE(t.isOk()) << t.status().toString();
    return t.isOk() ? t->table : query::ResultTable{};
  }

  static query::ModelResult fit(const std::string& text) {
    auto q = query::parseQuery(text);
    EXPECT_TRUE(q.isOk()) << q.status().toString();
    auto f = query::fitModel(*q, query::localRoundRunner(*table_));
    EXPECT_TRUE(f.isOk()) << f.status().toString();
    return f.isOk() ? *f : query::ModelResult{};
  }

  void expectForestEqualsR(const std::string& text, const std::string& kind, bool logScale) {
    SCOPED_TRACE(text);
    auto fig = forestFigure(fit(text));
    ASSERT_TRUE(fig.isOk()) << fig.status().toString();
    EXPECT_EQ(fig->logScale, logScale);
    EXPECT_EQ(fig->reference, logScale ? 1.0 : 0.0);
    ASSERT_EQ(fig->rows.size(), 2u);  // the intercept is not drawn
    for (const ForestRow& row : fig->rows) {
      auto it = r_.find(kind + " " + row.name);
      ASSERT_NE(it, r_.end()) << row.name;
      EXPECT_TRUE(relClose(row.estimate, it->second[0], 1e-6)) << row.name;
      EXPECT_TRUE(relClose(row.lower, it->second[1], 1e-6)) << row.name;
      EXPECT_TRUE(relClose(row.upper, it->second[2], 1e-6)) << row.name;
    }
  }

  static inline fs::path dir_;
  static inline std::map<std::string, std::vector<RKm>> km_;
  static inline std::map<std::string, std::vector<double>> r_;
  static inline std::unique_ptr<storage::Dictionary> dict_;
  static inline std::unique_ptr<storage::InMemoryTable> table_;
};

TEST_F(PlotTest, KmStepsBandMarksTicksAndAtRiskEqualR) {
  const query::ResultTable t = released("km(time, status) by g", 5);
  auto fig = kmFigure(t);
  ASSERT_TRUE(fig.isOk()) << fig.status().toString();
  // Groups 3 and 4 (4 and 3 subjects) are withheld: not drawn, and said so on the plot.
  ASSERT_EQ(fig->curves.size(), 2u);
  EXPECT_EQ(fig->notes,
            (std::vector<std::string>{"g=3: suppressed (disclosure control), not drawn",
                                      "g=4: suppressed (disclosure control), not drawn"}));
  // Axis ticks as R's pretty() over [0, last drawn time].
  const auto& ticks = r_.at("ticks all");
  ASSERT_EQ(fig->xTicks.size(), ticks.size());
  for (size_t k = 0; k < ticks.size(); ++k) EXPECT_EQ(fig->xTicks[k], ticks[k]);
  for (const KmCurveFigure& c : fig->curves) {
    SCOPED_TRACE(c.name);
    const std::vector<RKm>& rows = km_.at(c.name);
    ASSERT_FALSE(rows.empty());
    expectSameVertices(c.steps, rSteps(rows, &RKm::surv));
    expectSameVertices(c.lower, rSteps(rows, &RKm::lower));
    expectSameVertices(c.upper, rSteps(rows, &RKm::upper));
    std::vector<Point> marks;
    for (const auto& r : rows)
      if (r.nCensor > 0) marks.push_back({r.time, r.surv});
    expectSameVertices(c.censorMarks, marks);
    const auto& risk = r_.at("risk " + c.name);
    ASSERT_EQ(c.atRisk.size(), risk.size());
    for (size_t k = 0; k < risk.size(); ++k) EXPECT_EQ(static_cast<double>(c.atRisk[k]), risk[k]);
    // At every time of the table (what --json prints) the drawn curve reads its survival: the
    // value of the last vertex at or before that time.
    for (const auto& r : rows) {
      double drawn = std::nan("");
      for (const Point& p : c.steps)
        if (p.x <= r.time) drawn = p.y;
      EXPECT_TRUE(relClose(drawn, r.surv)) << "time " << r.time;
    }
  }
}

TEST_F(PlotTest, ForestPlotsEqualRRatiosAndIntervals) {
  expectForestEqualsR("coxph(time, status ~ x + g)", "cox", true);
  expectForestEqualsR("glm(status ~ x + g, family = binomial)", "glm", true);
  expectForestEqualsR("lm(time ~ x + g)", "lm", false);
}

TEST_F(PlotTest, SuppressedBinsAndCellsAreGapsWithANote) {
  auto hist = barFigure(released("hist(x, 0, 100, 10)", 5));
  ASSERT_TRUE(hist.isOk()) << hist.status().toString();
  ASSERT_EQ(hist->panels.size(), 1u);
  ASSERT_EQ(hist->panels[0].bars.size(), 10u);
  const auto& bars = hist->panels[0].bars;
  EXPECT_EQ(bars[9].from, 90);
  EXPECT_EQ(bars[9].to, 100);
  for (size_t k = 0; k < 10; ++k) EXPECT_EQ(bars[k].count.has_value(), k < 8) << bars[k].label;
  EXPECT_EQ(hist->notes,
            (std::vector<std::string>{"[80, 90) suppressed (disclosure control): gap, not zero",
                                      "[90, 100) suppressed (disclosure control): gap, not zero"}));
  uint64_t shown = 0;
  for (const Bar& b : bars) shown += b.count.value_or(0);
  EXPECT_EQ(shown, 127u - 5u);

  auto counts = barFigure(released("count by g", 5));
  ASSERT_TRUE(counts.isOk()) << counts.status().toString();
  const auto& cells = counts->panels[0].bars;
  ASSERT_EQ(cells.size(), 4u);
  EXPECT_EQ(cells[0].label, "1");
  EXPECT_EQ(cells[0].count.value_or(0) + cells[1].count.value_or(0), 120u);
  EXPECT_FALSE(cells[2].count.has_value());
  EXPECT_FALSE(cells[3].count.has_value());
  EXPECT_EQ(counts->notes, (std::vector<std::string>{
                               "g=3: count suppressed (disclosure control): gap, not zero",
                               "g=4: count suppressed (disclosure control): gap, not zero"}));
}

// What a reader of the file sees: a well-formed SVG document and a PNG of the right size.
TEST_F(PlotTest, WritesValidSvgAndPng) {
  const query::ResultTable km = released("km(time, status) by g", 0);
  const fs::path svgs[] = {dir_ / "km.svg", dir_ / "hist.svg", dir_ / "cox.svg"};
  Status st = plotTable(km, "km", svgs[0].string());
  ASSERT_TRUE(st.isOk()) << st.toString();
  st = plotTable(released("hist(x, 0, 100, 10) by g", 5), "hist", svgs[1].string());
  ASSERT_TRUE(st.isOk()) << st.toString();
  st = plotModel(fit("coxph(time, status ~ x + g)"), svgs[2].string());
  ASSERT_TRUE(st.isOk()) << st.toString();
  const std::string check =
      "python3 -c 'import sys, xml.etree.ElementTree as E; "
      "sys.exit(0 if all(E.parse(f).getroot().tag == \"{http://www.w3.org/2000/svg}svg\" "
      "for f in sys.argv[1:]) else 1)' " +
      svgs[0].string() + " " + svgs[1].string() + " " + svgs[2].string();
  EXPECT_EQ(std::system(check.c_str()), 0) << "not well-formed SVG documents";
  const fs::path png = dir_ / "km.PNG";  // the extension in any case
  ASSERT_TRUE(plotTable(km, "km", png.string()).isOk());
  std::ifstream in(png, std::ios::binary);
  unsigned char head[24] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  ASSERT_EQ(in.gcount(), 24);
  const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  EXPECT_EQ(std::memcmp(head, signature, 8), 0);
  EXPECT_EQ(std::memcmp(head + 12, "IHDR", 4), 0);
  auto be32 = [&](int at) {
    return (uint32_t{head[at]} << 24) | (uint32_t{head[at + 1]} << 16) |
           (uint32_t{head[at + 2]} << 8) | uint32_t{head[at + 3]};
  };
  EXPECT_EQ(be32(16), 800u);
  EXPECT_GT(be32(20), 400u);  // the plot and the numbers-at-risk table under it
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().string().find(".tmp-"), std::string::npos) << "left " << e.path();
}

TEST_F(PlotTest, BadExtensionUnplottableQueryAndUnwritablePathAreClearErrors) {
  auto pdf = plotFormatOf("km.pdf");
  ASSERT_FALSE(pdf.isOk());
  EXPECT_NE(pdf.status().message().find("must end in .svg or .png"), std::string::npos);
  EXPECT_FALSE(plotFormatOf("svg").isOk());
  EXPECT_TRUE(plotFormatOf("a/b.Svg").isOk());

  for (const char* ok : {"km(time, status) by g", "km(time, status, strata = x) by g",
                         "coxph(time, status ~ x)", "hist(x, 0, 100, 10)", "count by g"}) {
    EXPECT_TRUE(checkPlottable(ok).isOk()) << ok;
  }
  for (const char* bad :
       {"mean(x) by g", "count", "median(x)", "chisq(g, status)", "count, mean(x) by g"}) {
    Status st = checkPlottable(bad);
    EXPECT_FALSE(st.isOk()) << bad;
    EXPECT_NE(st.message().find("--plot draws km"), std::string::npos) << st.message();
  }
  // A table that slipped past the check is refused by the drawing itself, with the same words.
  Status cells = plotTable(released("mean(x) by g", 0), "t", (dir_ / "m.svg").string());
  EXPECT_FALSE(cells.isOk());
  EXPECT_NE(cells.message().find("--plot draws km"), std::string::npos) << cells.message();
  EXPECT_FALSE(fs::exists(dir_ / "m.svg"));

  const fs::path nowhere = dir_ / "no-such-dir" / "km.svg";
  Status io = plotTable(released("km(time, status)", 0), "t", nowhere.string());
  EXPECT_EQ(io.code(), StatusCode::kIOError) << io.toString();
  EXPECT_NE(io.message().find(nowhere.string()), std::string::npos) << io.message();
}

}  // namespace
}  // namespace trialmesh::plot
