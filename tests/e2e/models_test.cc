// End-to-end models (issue #6): three real trialmesh-node processes on 127.0.0.1 holding the
// generated LUNG-7 study (integer days: many tied times; ECOG and biomarker with missing
// values), fitted through the coordinator library exactly as `trialmesh query --study` does.
// Every federated fit is compared with the pooled fit computed here, independently of the query
// engine: the site CSVs are read back, the design matrix is built by hand and stats/ fits it.
// An all-censored group comes from `where event = false or sex = "F"` (every man censored).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "crypto/hash.h"
#include "ethics/audit_log.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "node/model_runner.h"
#include "pooled_reference.h"
#include "query/model_runner.h"
#include "stats/cox.h"
#include "stats/km.h"
#include "stats/regression.h"
#include "stats/rows.h"
#include "stats/survival_summary.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;
using namespace e2e;  // NOLINT: the pooled reference
// Every test runs twice: plain aggregation, and secure aggregation (the default; the rounds are
// masked, the cox rounds carry times on the approval's grid of width 1, which the generator's
// whole days fill exactly, so the pooled reference needs no binning).
class ModelsE2eTest : public ::testing::TestWithParam<ethics::AggregationMode> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trialmesh-models-" + std::to_string(::getpid()) + "-" + testName());
    std::filesystem::remove_all(dir_);
    LocalFederationOptions o;
    o.directory = dir_.string();
    o.rows = 3000;
    o.seed = 6;
    o.nodeBinary = TRIALMESH_NODE_BINARY;
    o.aggregation = GetParam();
    auto fed = LocalFederation::create(o);
    ASSERT_TRUE(fed.isOk()) << fed.status().toString();
    fed_ = std::move(*fed);
    Status s = fed_->start(30s);
    ASSERT_TRUE(s.isOk()) << s.toString();
    for (size_t i = 0; i < fed_->siteCount(); ++i) {
      auto part = readSubjects(fed_->siteCsvPath(i));
      pooled_.insert(pooled_.end(), part.begin(), part.end());
    }
    ASSERT_EQ(pooled_.size(), 3000u);
    session_ = std::make_unique<CoordinatorSession>(fed_->coordinator(), fed_->members());
  }
  // "CoxEfron.../Secure" -> "CoxEfron...-Secure": one directory per test and mode.
  static std::string testName() {
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : name)
      if (c == '/') c = '-';
    return name;
  }
  void TearDown() override {
    if (session_) session_->close();
    session_.reset();
    fed_.reset();  // kills and reaps every node still running
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  Result<query::ModelResult> fit(const std::string& text) {
    TM_ASSIGN_OR_RETURN(query::Query q, query::parseQuery(text));
    FederatedQueryOptions options;
    options.deadline = 20s;
    return query::fitModel(q, federatedRoundRunner(*session_, LocalFederation::kStudy, options));
  }

  // Query entries of site `site`'s audit log whose hash is that of `text`.
  size_t auditedQueries(size_t site, const std::string& text) {
    auto log = downloadAuditLog(fed_->committee(), fed_->members(), fed_->siteName(site));
    EXPECT_TRUE(log.isOk()) << log.status().toString();
    if (!log) return 0;
    const ethics::Hash h = crypto::sha256(text);
    size_t n = 0;
    for (const auto& s : log->entries) {
      auto e =
          ethics::decodeEntry({reinterpret_cast<const uint8_t*>(s.bytes.data()), s.bytes.size()});
      if (!e || e->kind != ethics::EntryKind::kQuery) continue;
      if (std::get<ethics::QueryEvent>(e->body).queryHash == h) ++n;
    }
    return n;
  }

  // Every site holds one query entry per round sent: fits that send the same round text (Efron
  // and Breslow share the grid round and the round at beta = 0) add one entry each.
  void expectEveryRoundAuditedOnce(const query::ModelResult& r) {
    for (const auto& text : r.roundQueries) ++sent_[text];
    for (size_t site = 0; site < fed_->siteCount(); ++site)
      for (const auto& text : r.roundQueries)
        EXPECT_EQ(auditedQueries(site, text), sent_[text])
            << fed_->siteName(site) << ": " << text.substr(0, 200);
  }
  std::map<std::string, size_t> sent_;

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
  std::unique_ptr<CoordinatorSession> session_;
  std::vector<Subject> pooled_;
};

TEST_P(ModelsE2eTest, LinearAndLogisticEqualPooled) {
  // lm: closed form, 1e-9.
  auto lm = fit("lm(bmi ~ age + sexM_placeholder)");
  ASSERT_FALSE(lm.isOk());  // an unknown covariate is refused before any fit
  EXPECT_NE(lm.status().message().find("'sexM_placeholder'"), std::string::npos)
      << lm.status().toString();

  lm = fit("lm(bmi ~ age + sex + arm + ecog + biomarker)");
  ASSERT_TRUE(lm.isOk()) << lm.status().toString();
  std::vector<std::string> names;
  auto x = design(pooled_, true, {"age", "sexM", "armTRT", "ecog", "biomarker"}, names);
  std::vector<double> bmi;
  for (const auto& s : pooled_) bmi.push_back(s.bmi);
  auto sums = stats::linearSumsFromRows(x, bmi, stats::allRows(x.rows));
  ASSERT_TRUE(sums.isOk());
  auto ref = stats::fitLinear(names, *sums);
  ASSERT_TRUE(ref.isOk()) << ref.status().toString();
  ASSERT_EQ(lm->linear->coefficients.size(), names.size());
  EXPECT_EQ(lm->linear->n, ref->n);
  EXPECT_EQ(lm->linear->missing, ref->missing);
  EXPECT_GT(ref->missing, 0u);
  for (size_t j = 0; j < names.size(); ++j) {
    EXPECT_EQ(lm->linear->coefficients[j].name, names[j]);
    expectClose(lm->linear->coefficients[j].estimate, ref->coefficients[j].estimate, 1e-9,
                names[j]);
    expectClose(lm->linear->coefficients[j].stdError, ref->coefficients[j].stdError, 1e-9,
                names[j] + " se");
  }
  expectClose(lm->linear->rSquared, ref->rSquared, 1e-9, "R^2");
  expectClose(lm->linear->fStatistic, ref->fStatistic, 1e-9, "F");
  EXPECT_EQ(lm->roundQueries.size(), 1u);
  expectEveryRoundAuditedOnce(*lm);

  // glm: IRLS, 1e-6.
  auto glm = fit("glm(event ~ age + sex + arm + ecog + smoker, family = binomial)");
  ASSERT_TRUE(glm.isOk()) << glm.status().toString();
  x = design(pooled_, true, {"age", "sexM", "armTRT", "ecog", "smokerTRUE"}, names);
  std::vector<double> event;
  for (const auto& s : pooled_) event.push_back(s.event);
  auto refGlm = stats::fitLogistic(names, [&](const std::vector<double>& beta) {
    return stats::logisticSumsFromRows(x, event, stats::allRows(x.rows), beta);
  });
  ASSERT_TRUE(refGlm.isOk()) << refGlm.status().toString();
  EXPECT_TRUE(glm->logistic->converged);
  EXPECT_EQ(glm->logistic->iterations, refGlm->iterations);
  for (size_t j = 0; j < names.size(); ++j) {
    EXPECT_EQ(glm->logistic->coefficients[j].name, names[j]);
    expectClose(glm->logistic->coefficients[j].estimate, refGlm->coefficients[j].estimate, 1e-6,
                names[j]);
    expectClose(glm->logistic->coefficients[j].stdError, refGlm->coefficients[j].stdError, 1e-6,
                names[j] + " se");
  }
  expectClose(glm->logistic->deviance, refGlm->deviance, 1e-6, "deviance");
  expectClose(glm->logistic->aic, refGlm->aic, 1e-6, "AIC");
  EXPECT_EQ(glm->roundQueries.size(), static_cast<size_t>(glm->logistic->rounds));
  expectEveryRoundAuditedOnce(*glm);
}

TEST_P(ModelsE2eTest, CoxEfronBreslowStrataAndKaplanMeierEqualPooled) {
  struct Case {
    std::string text;
    stats::CoxTies ties;
    bool strata;
  };
  // The stratified model keeps only censored men: stratum M has no event at all.
  std::vector<Subject> censoredMen;
  for (const auto& s : pooled_)
    if (s.event == 0 || s.male == 0) censoredMen.push_back(s);
  for (const Case& c :
       {Case{"coxph(time, event ~ age + sex + arm + ecog + biomarker)", stats::CoxTies::kEfron,
             false},
        Case{"coxph(time, event ~ age + sex + arm + ecog + biomarker, ties = breslow)",
             stats::CoxTies::kBreslow, false},
        Case{"coxph(time, event ~ age + arm + ecog, strata = sex) where event = false or sex = "
             "\"F\"",
             stats::CoxTies::kEfron, true}}) {
    SCOPED_TRACE(c.text);
    auto cox = fit(c.text);
    ASSERT_TRUE(cox.isOk()) << cox.status().toString();
    std::vector<std::string> names;
    auto ref = c.strata ? pooledCox(censoredMen, {"age", "armTRT", "ecog"}, c.ties, true, names)
                        : pooledCox(pooled_, {"age", "sexM", "armTRT", "ecog", "biomarker"}, c.ties,
                                    false, names);
    ASSERT_TRUE(ref.isOk()) << ref.status().toString();
    EXPECT_TRUE(cox->cox->converged);
    EXPECT_EQ(cox->cox->n, ref->n);
    EXPECT_EQ(cox->cox->events, ref->events);
    EXPECT_EQ(cox->cox->missing, ref->missing);
    ASSERT_EQ(cox->cox->coefficients.size(), names.size());
    for (size_t j = 0; j < names.size(); ++j) {
      EXPECT_EQ(cox->cox->coefficients[j].name, names[j]);
      expectClose(cox->cox->coefficients[j].coef, ref->coefficients[j].coef, 1e-6, names[j]);
      expectClose(cox->cox->coefficients[j].stdError, ref->coefficients[j].stdError, 1e-6,
                  names[j] + " se");
    }
    expectClose(cox->cox->loglik, ref->loglik, 1e-6, "loglik");
    expectClose(cox->cox->likelihoodRatio.statistic, ref->likelihoodRatio.statistic, 1e-6, "LR");
    expectClose(cox->cox->score.statistic, ref->score.statistic, 1e-6, "score");
    EXPECT_EQ(cox->roundQueries.size(), static_cast<size_t>(cox->cox->rounds) + 1);
    expectEveryRoundAuditedOnce(*cox);
  }

  // Kaplan–Meier by sex with the all-censored group, and the log-rank test.
  auto km = session_->query(LocalFederation::kStudy,
                            "km(time, event) by sex where event = false or sex = \"F\"");
  ASSERT_TRUE(km.isOk()) << km.status().toString();
  ASSERT_FALSE(km->partial());
  ASSERT_TRUE(km->table.has_value());
  std::vector<stats::SurvivalGroup> groups(2);
  groups[0].name = "sex=F";
  groups[1].name = "sex=M";
  for (int g = 0; g < 2; ++g) {
    std::map<double, stats::SurvivalPoint> points;
    for (const auto& s : censoredMen) {
      if (s.male != g) continue;
      auto& p = points[s.time];
      p.time = s.time;
      (s.event == 1 ? p.events : p.censored) += 1;
    }
    for (const auto& [t, p] : points) groups[g].points.push_back(p);
  }
  size_t row = 0;
  const auto& cols = km->table->columns;
  auto column = [&](std::string_view name) {
    auto it = std::find(cols.begin(), cols.end(), name);
    EXPECT_NE(it, cols.end()) << name;
    return static_cast<size_t>(it - cols.begin());
  };
  const size_t lowerCol = column("lower_95"), survCol = column("survival");
  for (const auto& group : groups) {
    auto curve = stats::kaplanMeier(group.name, group.points);
    ASSERT_TRUE(curve.isOk());
    for (const auto& r : curve->rows) {
      ASSERT_LT(row, km->table->rows.size());
      const auto& out = km->table->rows[row++];
      EXPECT_EQ(std::get<double>(out[survCol]), r.survival);
      if (std::isfinite(r.lower)) {
        EXPECT_EQ(std::get<double>(out[lowerCol]), r.lower);
      }
    }
    if (group.name == "sex=M") {
      EXPECT_EQ(curve->events, 0u);
    }
  }
  EXPECT_EQ(row, km->table->rows.size());
  auto test = stats::logRank(groups);
  ASSERT_TRUE(test.isOk());
  const std::string expected =
      fmt::format("log-rank test: chisq = {} on {} degrees of freedom, p = {}", test->chiSquare,
                  test->df, test->pValue);
  bool found = false;
  for (const auto& n : km->table->notes) found = found || n == expected;
  EXPECT_TRUE(found) << expected;

  // Survival at times and the restricted mean (R-checked in tests/query/survival_report_r_test)
  // read off the federated curves equal those of the pooled curves; in secure mode the times
  // are on the approval's grid of width 1, which whole days do not move.
  auto report = session_->query(LocalFederation::kStudy,
                                "km(time, event, times = [30, 180, 365], rmean = 365) by sex");
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  ASSERT_TRUE(report->table.has_value());
  const auto& t = *report->table;
  ASSERT_EQ(t.reports.size(), 2u);
  EXPECT_EQ(t.reportTimes, (std::vector<double>{30, 180, 365}));
  for (int g = 0; g < 2; ++g) {
    std::map<double, stats::SurvivalPoint> points;
    for (const auto& s : pooled_) {
      if (s.male != g) continue;
      auto& p = points[s.time];
      p.time = s.time;
      (s.event == 1 ? p.events : p.censored) += 1;
    }
    std::vector<stats::SurvivalPoint> list;
    for (const auto& [time, p] : points) list.push_back(p);
    auto curve = stats::kaplanMeier(g == 0 ? "sex=F" : "sex=M", list);
    ASSERT_TRUE(curve.isOk());
    const auto at = stats::survivalAtTimes(*curve, {30, 180, 365}, 0.0);
    const auto rm = stats::restrictedMean(*curve, 365, 0.0);
    const auto& got = t.reports[static_cast<size_t>(g)];
    ASSERT_EQ(got.atTimes.size(), 3u) << g;
    for (size_t k = 0; k < at.size(); ++k) {
      EXPECT_EQ(got.atTimes[k].nRisk, at[k].nRisk) << g << " " << k;
      EXPECT_EQ(got.atTimes[k].nEvent, at[k].nEvent) << g << " " << k;
      EXPECT_EQ(got.atTimes[k].survival, at[k].survival) << g << " " << k;
      EXPECT_EQ(got.atTimes[k].stdErr, at[k].stdErr) << g << " " << k;
    }
    ASSERT_TRUE(got.rmean.has_value());
    EXPECT_EQ(got.rmean->rmean, rm.rmean) << g;
    EXPECT_EQ(got.rmean->stdErr, rm.stdErr) << g;
  }
}

TEST_P(ModelsE2eTest, ARoundWithoutEverySiteFailsNamingTheSite) {
  fed_->siteProcess(1)->stop(5s);
  auto r = fit("lm(bmi ~ age)");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("round 1 (lm_sums)"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find(fed_->siteName(1) + " unreachable"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("every site contributes to every round"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Aggregation, ModelsE2eTest,
                         ::testing::Values(ethics::AggregationMode::kPlain,
                                           ethics::AggregationMode::kSecure),
                         [](const ::testing::TestParamInfo<ethics::AggregationMode>& info) {
                           return info.param == ethics::AggregationMode::kPlain ? "Plain"
                                                                                : "Secure";
                         });

}  // namespace
}  // namespace trialmesh::node
