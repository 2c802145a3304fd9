// km(time, event, times = [...], rmean = ...) and the stratified log-rank test against Rscript on
// the pooled rows: survival::lung and a generated data set with ties, a time 0 with an event,
// censoring at a group's last time, a group whose survival reaches 0, a group without events
// and times before the start and past the last follow-up. The rows are split over three sites
// whose partials are merged, as the federation does. R's summary(survfit, times =) (n.risk,
// n.event, surv, std.err, lower, upper), survival:::survmean (what print(survfit, rmean =)
// prints) and survdiff(Surv ~ g + strata(s)) are the reference, to 1e-10 relative.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "query/disclosure.h"
#include "query/stratified_km.h"
#include "query_test_util.h"
#include "stats/survival_summary.h"

namespace trialmesh::query {
namespace {

using namespace testing;  // NOLINT: test fixtures
namespace fs = std::filesystem;

const char* kScript = R"R(
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]
set.seed(11)
n <- 150
syn <- data.frame(time = sample(0:25, n, replace = TRUE), status = rbinom(n, 1, 0.6),
                  g = sample(1:3, n, replace = TRUE), s = sample(1:3, n, replace = TRUE))
syn$status[syn$g == 3] <- 0                                       # a group without events
last1 <- max(syn$time[syn$g == 1])
syn$status[syn$g == 1 & syn$time == last1] <- 0                   # censored at its last time
last2 <- max(syn$time[syn$g == 2])
syn$status[syn$g == 2 & syn$time == last2] <- 1                   # survival reaches 0
write.csv(syn, file.path(dir, "syn.csv"), row.names = FALSE)
write.csv(lung[, c("time", "status", "sex", "inst", "ph.ecog")], file.path(dir, "lung.csv"),
          row.names = FALSE, na = "NA")
out <- file(file.path(dir, "r.txt"), "w")
num <- function(v) ifelse(is.na(v), "NA", sprintf("%.17g", v))
attimes <- function(id, fit, times) {
  s <- summary(fit, times = times)
  st <- if (is.null(s$strata)) rep("all", length(s$time)) else as.character(s$strata)
  for (i in seq_along(s$time))
    writeLines(paste("at", id, st[i], num(s$time[i]), s$n.risk[i], s$n.event[i], num(s$surv[i]),
                     num(s$std.err[i]), num(s$lower[i]), num(s$upper[i])), out)
}
rmean <- function(id, fit, tau) {
  m <- survival:::survmean(fit, rmean = tau)$matrix
  if (is.null(dim(m))) m <- matrix(m, nrow = 1, dimnames = list("all", names(m)))
  if (is.null(rownames(m))) rownames(m) <- "all"
  for (i in seq_len(nrow(m)))
    writeLines(paste("rmean", id, rownames(m)[i], num(m[i, "rmean"]), num(m[i, "se(rmean)"])), out)
}
logrank <- function(id, sd) {
  writeLines(paste("lr", id, "chisq", num(sd$chisq), 0, 0, 0), out)
  obs <- rowSums(as.matrix(sd$obs)); ex <- rowSums(as.matrix(sd$exp))
  for (i in seq_along(obs))
    writeLines(paste("lr", id, names(sd$n)[i], sd$n[i], num(obs[i]), num(ex[i]), num(sd$var[i, i])),
               out)
}
f <- survfit(Surv(time, status) ~ g, data = syn)
attimes("syn", f, c(-1, 0, 5, 12, 25, 40))
rmean("syn12", f, 12); rmean("syn40", f, 40); rmean("syncommon", f, "common")
f <- survfit(Surv(time, status) ~ sex, data = lung)
attimes("lungsex", f, c(0, 180, 365, 730, 1000, 1100))
rmean("lungsex365", f, 365); rmean("lungsexcommon", f, "common")
f <- survfit(Surv(time, status) ~ 1, data = lung)
attimes("lung", f, c(5, 180.5, 365))
rmean("lungcommon", f, "common"); rmean("lung730", f, 730)
logrank("syn", survdiff(Surv(time, status) ~ g + strata(s), data = syn))
logrank("lunginst", survdiff(Surv(time, status) ~ sex + strata(inst), data = lung))
logrank("lungecog", survdiff(Surv(time, status) ~ sex + strata(ph.ecog), data = lung))
close(out)
)R";

// |a - b| <= tol * max(|a|, |b|, 1e-8); NA (NaN) equals only NA.
::testing::AssertionResult relClose(double a, double b, double tol) {
  if (std::isnan(a) && std::isnan(b)) return ::testing::AssertionSuccess();
  const double scale = std::max({std::fabs(a), std::fabs(b), 1e-8});
  if (std::fabs(a - b) <= tol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << a << " vs R " << b;
}

double parseValue(const std::string& s) { return s == "NA" ? std::nan("") : std::stod(s); }

// One requested time of one curve, as summary.survfit reports it.
struct RAt {
  double time, nRisk, nEvent, surv, stdErr, lower, upper;
};

class SurvivalReportRTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tm_survrep_r_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "run.R") << kScript;
    const std::string cmd = std::string(TRIALMESH_RSCRIPT) + " --vanilla " +
                            (dir_ / "run.R").string() + " " + dir_.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream in(dir_ / "r.txt");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string kind, id, curve;
      f >> kind >> id >> curve;
      std::vector<double> v;
      for (std::string x; f >> x;) v.push_back(parseValue(x));
      if (kind == "at") {
        ASSERT_EQ(v.size(), 7u) << line;
        at_[id][curve].push_back({v[0], v[1], v[2], v[3], v[4], v[5], v[6]});
      } else {
        values_[kind + " " + id + " " + curve] = v;
      }
    }
    ASSERT_FALSE(at_.empty());
    syn_ = load("syn.csv", R"("time","status","g","s")",
                {makeVar("time", storage::VariableType::kInteger, false, {}, 0, 100),
                 makeVar("status", storage::VariableType::kInteger, false, {}, 0, 1),
                 makeVar("g", storage::VariableType::kInteger, false, {}, 1, 3),
                 makeVar("s", storage::VariableType::kInteger, false, {}, 1, 3)});
    lung_ = load("lung.csv", R"("time","status","sex","inst","ph.ecog")",
                 {makeVar("time", storage::VariableType::kInteger, false, {}, 0, 5000),
                  makeVar("status", storage::VariableType::kInteger, false, {}, 1, 2),
                  makeVar("sex", storage::VariableType::kInteger, false, {}, 1, 2),
                  makeVar("inst", storage::VariableType::kInteger, true, {}, 1, 33),
                  makeVar("ph.ecog", storage::VariableType::kInteger, true, {}, 0, 3)});
    ASSERT_EQ(lung_.rows.size(), 228u);
  }
  void TearDown() override { fs::remove_all(dir_); }

  struct Data {
    std::unique_ptr<storage::Dictionary> dict;
    std::vector<Row> rows;
    std::vector<std::unique_ptr<storage::InMemoryTable>> sites;  // rows split three ways
  };

  Data load(const std::string& file, const std::string& header,
            std::vector<storage::Variable> vars) {
    Data d;
    auto dict = storage::Dictionary::create("SURV", std::move(vars));
    EXPECT_TRUE(dict.isOk()) << dict.status().toString();
    d.dict = std::make_unique<storage::Dictionary>(std::move(dict).value());
    std::ifstream csv(dir_ / file);
    std::string line;
    std::getline(csv, line);
    EXPECT_EQ(line, header);
    while (std::getline(csv, line)) {
      Row row;
      std::stringstream fields(line);
      for (std::string f; std::getline(fields, f, ',');)
        row.push_back(f == "NA" ? Cell::none() : Cell::integer(std::stoll(f)));
      EXPECT_EQ(row.size(), d.dict->size()) << line;
      d.rows.push_back(row);
    }
    std::vector<std::vector<Row>> split(3);
    for (size_t i = 0; i < d.rows.size(); ++i) split[i % 3].push_back(d.rows[i]);
    for (const auto& s : split) d.sites.push_back(makeTable(*d.dict, s));
    return d;
  }

  // Each site's partial, merged, finalized: what the coordinator of a federation computes.
  static Result<ResultTable> federated(const Data& d, const std::string& text) {
    TM_ASSIGN_OR_RETURN(Query q, parseQuery(text));
    TM_ASSIGN_OR_RETURN(BoundQuery b, bindQuery(q, *d.dict));
    std::optional<PartialResult> acc;
    for (const auto& site : d.sites) {
      TM_ASSIGN_OR_RETURN(PartialResult p, execute(b, *site, threadsOnly(1)));
      if (!acc) {
        acc = std::move(p);
      } else {
        TM_RETURN_IF_ERROR(mergeInto(*acc, p));
      }
    }
    return finalize(*acc, b);
  }

  const std::vector<double>& value(const std::string& key) {
    static const std::vector<double> none;
    auto it = values_.find(key);
    EXPECT_NE(it, values_.end()) << key << " not in R's output";
    return it == values_.end() ? none : it->second;
  }

  // Every curve's survival at the requested times equals summary(fit, times =), row for row.
  void expectAtTimes(const ResultTable& t, const std::string& id) {
    ASSERT_EQ(t.reports.size(), t.curves.size());
    const auto& want = at_.at(id);
    size_t compared = 0;
    for (size_t c = 0; c < t.curves.size(); ++c) {
      SCOPED_TRACE(id + " " + t.curves[c].name);
      auto it = want.find(t.curves[c].name);
      ASSERT_NE(it, want.end());
      const auto& got = t.reports[c].atTimes;
      ASSERT_EQ(got.size(), it->second.size());
      for (size_t k = 0; k < got.size(); ++k) {
        const RAt& r = it->second[k];
        SCOPED_TRACE("time " + std::to_string(r.time));
        EXPECT_EQ(got[k].time, r.time);
        EXPECT_EQ(static_cast<double>(got[k].nRisk), r.nRisk);
        EXPECT_EQ(static_cast<double>(got[k].nEvent), r.nEvent);
        EXPECT_TRUE(relClose(got[k].survival, r.surv, 1e-10));
        EXPECT_TRUE(relClose(got[k].stdErr, r.stdErr, 1e-10));
        EXPECT_TRUE(relClose(got[k].lower, r.lower, 1e-10));
        EXPECT_TRUE(relClose(got[k].upper, r.upper, 1e-10));
        ++compared;
      }
    }
    size_t total = 0;
    for (const auto& [name, rows] : want) total += rows.size();
    EXPECT_EQ(compared, total) << "R reports a curve the query does not";
  }

  void expectRmean(const ResultTable& t, const std::string& id, double tau) {
    ASSERT_EQ(t.reports.size(), t.curves.size());
    for (size_t c = 0; c < t.curves.size(); ++c) {
      SCOPED_TRACE(id + " " + t.curves[c].name);
      const auto& want = value("rmean " + id + " " + t.curves[c].name);
      ASSERT_EQ(want.size(), 2u);
      ASSERT_TRUE(t.reports[c].rmean.has_value());
      EXPECT_EQ(t.reports[c].rmean->tau, tau);
      EXPECT_TRUE(relClose(t.reports[c].rmean->rmean, want[0], 1e-10));
      EXPECT_TRUE(relClose(t.reports[c].rmean->stdErr, want[1], 1e-10));
    }
  }

  fs::path dir_;
  std::map<std::string, std::map<std::string, std::vector<RAt>>> at_;  // id -> curve -> rows
  std::map<std::string, std::vector<double>> values_;
  Data syn_, lung_;
};

TEST_F(SurvivalReportRTest, GeneratedDataWithTiesEmptyGroupAndTimesPastFollowUp) {
  for (const char* rmean : {"12", "40", "common"}) {
    const std::string text =
        std::string("km(time, status, times = [-1, 0, 5, 12, 25, 40], rmean = ") + rmean + ") by g";
    SCOPED_TRACE(text);
    auto t = federated(syn_, text);
    ASSERT_TRUE(t.isOk()) << t.status().toString();
    expectAtTimes(*t, "syn");
    // common: the largest last time of any curve (25, group 2's and 3's).
    expectRmean(*t, std::string("syn") + rmean,
                std::string(rmean) == "common" ? 25.0 : std::stod(rmean));
  }
}

TEST_F(SurvivalReportRTest, LungBySexAndOverall) {
  auto bySex = federated(lung_,
                         "km(time, status, times = [0, 180, 365, 730, 1000, 1100], "
                         "rmean = 365) by sex");
  ASSERT_TRUE(bySex.isOk()) << bySex.status().toString();
  expectAtTimes(*bySex, "lungsex");
  expectRmean(*bySex, "lungsex365", 365);
  auto common = federated(lung_, "km(time, status, rmean = common) by sex");
  ASSERT_TRUE(common.isOk()) << common.status().toString();
  expectRmean(*common, "lungsexcommon", 1022);
  EXPECT_TRUE(common->reportTimes.empty());
  for (const auto& r : common->reports) EXPECT_TRUE(r.atTimes.empty());

  auto all = federated(lung_, "km(time, status, times = [5, 180.5, 365], rmean = common)");
  ASSERT_TRUE(all.isOk()) << all.status().toString();
  expectAtTimes(*all, "lung");
  expectRmean(*all, "lungcommon", 1022);
  auto tau730 = federated(lung_, "km(time, status, rmean = 730)");
  ASSERT_TRUE(tau730.isOk()) << tau730.status().toString();
  expectRmean(*tau730, "lung730", 730);
}

// The JSON and CSV outputs carry the same figures as the table (what --json / --csv print).
TEST_F(SurvivalReportRTest, JsonAndCsvCarryRsFigures) {
  auto t = federated(lung_, "km(time, status, times = [180, 365, 730, 1000], rmean = 365) by sex");
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  const auto j = nlohmann::json::parse(formatJson(*t));
  ASSERT_EQ(j["curves"].size(), 2u);
  for (size_t c = 0; c < 2; ++c) {
    const auto& curve = j["curves"][c];
    const std::string name = curve["group"].get<std::string>();
    SCOPED_TRACE(name);
    const auto& rm = value("rmean lungsex365 " + name);
    EXPECT_EQ(curve["rmean"]["tau"].get<double>(), 365);
    EXPECT_TRUE(relClose(curve["rmean"]["rmean"].get<double>(), rm[0], 1e-12));
    EXPECT_TRUE(relClose(curve["rmean"]["se_rmean"].get<double>(), rm[1], 1e-12));
    // R's rows at 180, 365, 730, 1000 are rows 2..5 of the lungsex set (0 is its first).
    const auto& want = at_.at("lungsex").at(name);
    const auto& rows = curve["survival_at_times"];
    ASSERT_EQ(rows.size(), name == "sex=1" ? 4u : 3u);  // sex=2's follow-up ends at 965
    for (size_t k = 0; k < rows.size(); ++k) {
      const RAt& r = want[k + 1];
      EXPECT_EQ(rows[k]["time"].get<double>(), r.time);
      EXPECT_EQ(rows[k]["n_risk"].get<double>(), r.nRisk);
      EXPECT_EQ(rows[k]["n_event"].get<double>(), r.nEvent);
      EXPECT_TRUE(relClose(rows[k]["survival"].get<double>(), r.surv, 1e-12));
      EXPECT_TRUE(relClose(rows[k]["std_err"].get<double>(), r.stdErr, 1e-12));
      EXPECT_TRUE(relClose(rows[k]["lower_95"].get<double>(), r.lower, 1e-12));
      EXPECT_TRUE(relClose(rows[k]["upper_95"].get<double>(), r.upper, 1e-12));
    }
  }
  // CSV: every row of a curve repeats its figures; a time past the follow-up is NA.
  std::stringstream csv(formatCsv(*t));
  std::string header, line;
  std::getline(csv, header);
  std::vector<std::string> names;
  std::stringstream h(header);
  for (std::string f; std::getline(h, f, ',');) names.push_back(f);
  std::map<std::string, std::map<std::string, std::string>> firstRow;  // sex -> column -> field
  while (std::getline(csv, line)) {
    std::stringstream v(line);
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < names.size() && !v.eof(); ++i) std::getline(v, row[names[i]], ',');
    firstRow.emplace(row["sex"], row);
  }
  ASSERT_EQ(firstRow.size(), 2u);
  for (const auto& [sex, row] : firstRow) {
    const std::string name = "sex=" + sex;
    SCOPED_TRACE(name);
    const auto& rm = value("rmean lungsex365 " + name);
    EXPECT_TRUE(relClose(std::stod(row.at("rmean")), rm[0], 1e-12));
    EXPECT_TRUE(relClose(std::stod(row.at("se_rmean")), rm[1], 1e-12));
    EXPECT_EQ(row.at("rmean_tau"), "365");
    const RAt& r = at_.at("lungsex").at(name)[2];  // time 365
    EXPECT_EQ(std::stod(row.at("n_risk_at_365")), r.nRisk);
    EXPECT_EQ(std::stod(row.at("n_event_at_365")), r.nEvent);
    EXPECT_TRUE(relClose(std::stod(row.at("survival_at_365")), r.surv, 1e-12));
    EXPECT_TRUE(relClose(std::stod(row.at("std_err_at_365")), r.stdErr, 1e-12));
    EXPECT_TRUE(relClose(std::stod(row.at("lower_95_at_365")), r.lower, 1e-12));
    EXPECT_TRUE(relClose(std::stod(row.at("upper_95_at_365")), r.upper, 1e-12));
    EXPECT_EQ(row.at("survival_at_1000") == "NA", sex == "2");
  }
}

TEST_F(SurvivalReportRTest, RmeanBelowTheFirstTimeIsRsError) {
  auto t = federated(lung_, "km(time, status, rmean = 4) by sex");  // lung's first time is 5
  ASSERT_FALSE(t.isOk());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(t.status().message().find("below the smallest survival time"), std::string::npos)
      << t.status().message();
}

// stats::stratifiedLogRank on the pooled rows: survdiff(Surv(time, status) ~ g + strata(s)).
std::vector<std::vector<stats::SurvivalGroup>> strataOf(const std::vector<Row>& rows, size_t group,
                                                        size_t stratum, bool oneTwoStatus,
                                                        const std::string& groupName) {
  std::map<int64_t, std::map<int64_t, std::map<double, stats::SurvivalPoint>>> cells;
  std::set<int64_t> groups;
  for (const Row& r : rows) {
    if (r[stratum].missing || r[group].missing) continue;
    const int64_t g = r[group].i, s = r[stratum].i;
    groups.insert(g);
    auto& p = cells[s][g][static_cast<double>(r[0].i)];
    p.time = static_cast<double>(r[0].i);
    const bool event = r[1].i == (oneTwoStatus ? 2 : 1);
    (event ? p.events : p.censored) += 1;
  }
  std::vector<std::vector<stats::SurvivalGroup>> out;
  for (auto& [s, byGroup] : cells) {
    std::vector<stats::SurvivalGroup> strat;
    for (int64_t g : groups) {
      stats::SurvivalGroup sg{groupName + "=" + std::to_string(g), {}};
      for (auto& [time, p] : byGroup[g]) sg.points.push_back(p);
      strat.push_back(std::move(sg));
    }
    out.push_back(std::move(strat));
  }
  return out;
}

TEST_F(SurvivalReportRTest, StratifiedLogRankEqualsSurvdiff) {
  struct Case {
    std::string id;
    const Data* data;
    size_t group, stratum;
    bool oneTwo;
    std::string groupName;
  };
  for (const Case& k :
       {Case{"syn", &syn_, 2, 3, false, "g"}, Case{"lunginst", &lung_, 2, 3, true, "sex"},
        Case{"lungecog", &lung_, 2, 4, true, "sex"}}) {
    SCOPED_TRACE(k.id);
    auto test =
        stats::stratifiedLogRank(strataOf(k.data->rows, k.group, k.stratum, k.oneTwo, k.groupName));
    ASSERT_TRUE(test.isOk()) << test.status().toString();
    EXPECT_TRUE(relClose(test->chiSquare, value("lr " + k.id + " chisq")[0], 1e-10));
    for (const auto& g : test->groups) {
      SCOPED_TRACE(g.name);
      const auto& want = value("lr " + k.id + " " + g.name);
      ASSERT_EQ(want.size(), 4u);
      EXPECT_EQ(static_cast<double>(g.n), want[0]);
      EXPECT_EQ(g.observed, want[1]);
      EXPECT_TRUE(relClose(g.expected, want[2], 1e-10));
      EXPECT_TRUE(relClose(g.variance, want[3], 1e-10));
    }
  }
}

// The query surface: km(time, status, strata = s) by g runs the km by g and the km by g, s;
// the curves are those of the km by g, the test is survdiff(... ~ g + strata(s)).
TEST_F(SurvivalReportRTest, KmWithStrataGivesSurvdiffWithStrata) {
  struct Case {
    std::string id, text;
    const Data* data;
  };
  for (const Case& k :
       {Case{"syn", "km(time, status, strata = s) by g", &syn_},
        Case{"lunginst", "km(time, status, times = [365], strata = inst) by sex", &lung_},
        Case{"lungecog", "km(time, status, strata = `ph.ecog`) by sex", &lung_}}) {
    SCOPED_TRACE(k.text);
    auto request = parseStratifiedKm(k.text);
    ASSERT_TRUE(request.isOk() && request->has_value()) << request.status().toString();
    const StratifiedKmRequest& r = **request;
    auto curves = federated(*k.data, r.curveQuery);
    auto strata = federated(*k.data, r.strataQuery);
    ASSERT_TRUE(curves.isOk() && strata.isOk());
    const ResultTable plain = *curves;
    ASSERT_TRUE(applyStratifiedLogRank(*curves, *strata, r).isOk());
    ASSERT_TRUE(curves->logRank.has_value());
    EXPECT_EQ(curves->logRankStrata, k.id == "syn" ? "s" : k.id == "lunginst" ? "inst" : "ph.ecog");
    EXPECT_TRUE(relClose(curves->logRank->chiSquare, value("lr " + k.id + " chisq")[0], 1e-10));
    for (const auto& g : curves->logRank->groups) {
      const auto& want = value("lr " + k.id + " " + g.name);
      ASSERT_EQ(want.size(), 4u) << g.name;
      EXPECT_EQ(static_cast<double>(g.n), want[0]) << g.name;
      EXPECT_EQ(g.observed, want[1]) << g.name;
      EXPECT_TRUE(relClose(g.expected, want[2], 1e-10)) << g.name;
      EXPECT_TRUE(relClose(g.variance, want[3], 1e-10)) << g.name;
    }
    // The curves (with the rows whose stratum is missing) are the km by the groups.
    EXPECT_EQ(curves->rows, plain.rows);
    EXPECT_NE(plain.logRank->chiSquare, curves->logRank->chiSquare);
    std::string notes;
    for (const auto& n : curves->notes) notes += n + "\n";
    EXPECT_EQ(notes.find("\nlog-rank test: "), std::string::npos) << notes;
    EXPECT_NE(notes.find("stratified log-rank test (strata = "), std::string::npos) << notes;
    EXPECT_EQ(curves->appendix.find("Call:\n" + r.curveQuery + "\n"), std::string::npos)
        << curves->appendix;  // the plain survdiff printout is gone
    EXPECT_NE(curves->appendix.find("Call:\n" + r.call + "\n"), std::string::npos)
        << curves->appendix;
    const auto j = nlohmann::json::parse(formatJson(*curves));
    EXPECT_EQ(j["logrank"]["strata"].get<std::string>(), curves->logRankStrata);
    EXPECT_TRUE(relClose(j["logrank"]["chi_square"].get<double>(), curves->logRank->chiSquare, 0));
  }
}

// A (group, stratum) cell below the minimum withholds the test (its counts were not released).
TEST_F(SurvivalReportRTest, KmWithStrataWithholdsTheTestWhenACellIsSuppressed) {
  auto request = parseStratifiedKm("km(time, status, strata = inst) by sex");
  ASSERT_TRUE(request.isOk() && request->has_value());
  auto curves = federated(lung_, (*request)->curveQuery);
  ASSERT_TRUE(curves.isOk());
  auto q = parseQuery((*request)->strataQuery);
  auto b = bindQuery(*q, *lung_.dict);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  auto p = execute(*b, *lung_.sites[0], threadsOnly(1));  // one site: many small cells
  ASSERT_TRUE(p.isOk());
  auto released = finalizeWithDisclosureControl(*p, *b, DisclosurePolicy{5});
  ASSERT_TRUE(released.isOk()) << released.status().toString();
  ASSERT_TRUE(applyStratifiedLogRank(*curves, released->table, **request).isOk());
  EXPECT_FALSE(curves->logRank.has_value());
  std::string notes;
  for (const auto& n : curves->notes) notes += n + "\n";
  EXPECT_NE(notes.find("stratified log-rank test (strata = inst): withheld because"),
            std::string::npos)
      << notes;
  EXPECT_EQ(notes.find("\nlog-rank test: chisq"), std::string::npos) << notes;
}

TEST(StratifiedKmRequest, RewritesTheQueryIntoTwo) {
  auto r = parseStratifiedKm("km(t, e, rmean = common, strata = site) where age > 50 by arm");
  ASSERT_TRUE(r.isOk() && r->has_value()) << r.status().toString();
  EXPECT_EQ((*r)->curveQuery, "km(t, e, rmean = common) where age > 50 by arm");
  EXPECT_EQ((*r)->strataQuery, "km(t, e) where age > 50 and site is not missing by arm, site");
  EXPECT_EQ((*r)->call, "km(t, e, rmean = common, strata = site) where age > 50 by arm");
  auto plain = parseStratifiedKm("km(t, e) by arm");
  ASSERT_TRUE(plain.isOk());
  EXPECT_FALSE(plain->has_value());
  auto bad = parseStratifiedKm("km(t, e, strata = arm) by arm");
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("also a 'by' variable"), std::string::npos);
}

}  // namespace
}  // namespace trialmesh::query
