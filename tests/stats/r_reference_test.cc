// Reference values from R 4.2.2 with survival 3.5-3 on the first 80 rows of survival::lung,
// embedded below. The R code that produced every number:
//
//   library(survival); options(digits = 15)
//   d <- lung[1:80, c("time", "status", "age", "sex", "ph.ecog", "wt.loss")]
//   fit <- coxph(Surv(time, status) ~ age + sex + ph.ecog, data = d)   # and ties = "breslow"
//   coef(fit); sqrt(diag(vcov(fit))); fit$loglik; fit$score; fit$wald.test; fit$iter
//   s <- summary(lm(wt.loss ~ age + sex + ph.ecog, data = d)); coef(s); s$sigma; s$r.squared
//   s$adj.r.squared; s$fstatistic
//   g <- glm(I(status == 2) ~ age + sex + wt.loss, family = binomial, data = d)
//   coef(summary(g)); g$deviance; g$null.deviance; g$aic; g$iter
//   km <- survfit(Surv(time, status) ~ sex, data = d); summary(km)$table
//   sm <- summary(km, censored = TRUE); cbind(sm$time, sm$n.risk, sm$surv, sm$std.err,
//                                             sm$lower, sm$upper)[c(1, 2, 3, 10, 20, 30, 40), ]
//   sd <- survdiff(Surv(time, status) ~ sex, data = d); sd$obs; sd$exp; sd$var; sd$chisq
#include <gtest/gtest.h>

#include <set>

#include "stats/cox.h"
#include "stats/format.h"
#include "stats/km.h"
#include "stats/regression.h"
#include "stats/rows.h"
#include "stats_test_util.h"

namespace trialmesh::stats {
namespace {

using testing::kNA;

struct LungRow {
  double time, status, age, sex, ecog, wtLoss;
};
// time, status (1 = censored, 2 = dead), age, sex, ph.ecog, wt.loss
const LungRow kLung[] = {
    {306, 2, 74, 1, 1, kNA}, {455, 2, 68, 1, 0, 15},  {1010, 1, 56, 1, 0, 15},
    {210, 2, 57, 1, 1, 11},  {883, 2, 60, 1, 0, 0},   {1022, 1, 74, 1, 1, 0},
    {310, 2, 68, 2, 2, 10},  {361, 2, 71, 2, 2, 1},   {218, 2, 53, 1, 1, 16},
    {166, 2, 61, 1, 2, 34},  {170, 2, 57, 1, 1, 27},  {654, 2, 68, 2, 2, 23},
    {728, 2, 68, 2, 1, 5},   {71, 2, 60, 1, kNA, 32}, {567, 2, 57, 1, 1, 60},
    {144, 2, 67, 1, 1, 15},  {613, 2, 70, 1, 1, -5},  {707, 2, 63, 1, 2, 22},
    {61, 2, 56, 2, 2, 10},   {88, 2, 57, 1, 1, kNA},  {301, 2, 67, 1, 1, 17},
    {81, 2, 49, 2, 0, -8},   {624, 2, 50, 1, 1, 16},  {371, 2, 58, 1, 0, 13},
    {394, 2, 72, 1, 0, 0},   {520, 2, 70, 2, 1, 6},   {574, 2, 60, 1, 0, -13},
    {118, 2, 70, 1, 3, 20},  {390, 2, 53, 1, 1, -7},  {12, 2, 74, 1, 2, 20},
    {473, 2, 69, 2, 1, -1},  {26, 2, 73, 1, 2, 20},   {533, 2, 48, 1, 2, -11},
    {107, 2, 60, 2, 2, -15}, {53, 2, 61, 1, 2, 10},   {122, 2, 62, 2, 2, kNA},
    {814, 2, 65, 1, 2, 28},  {965, 1, 66, 2, 1, 4},   {93, 2, 74, 1, 2, 24},
    {731, 2, 64, 2, 1, 15},  {460, 2, 70, 1, 1, 10},  {153, 2, 73, 2, 2, 11},
    {433, 2, 59, 2, 0, 27},  {145, 2, 60, 2, 2, kNA}, {583, 2, 68, 1, 1, 7},
    {95, 2, 76, 2, 2, -24},  {303, 2, 74, 1, 0, 30},  {519, 2, 63, 1, 1, 10},
    {643, 2, 74, 1, 0, 2},   {765, 2, 50, 2, 1, 4},   {735, 2, 72, 2, 1, 9},
    {189, 2, 63, 1, 0, 0},   {53, 2, 68, 1, 0, 0},    {246, 2, 58, 1, 0, 7},
    {689, 2, 59, 1, 1, 15},  {65, 2, 62, 1, 0, kNA},  {5, 2, 65, 2, 0, 5},
    {132, 2, 57, 1, 2, 18},  {687, 2, 58, 2, 1, 10},  {345, 2, 64, 2, 1, -3},
    {444, 2, 75, 2, 2, 8},   {223, 2, 48, 1, 1, 68},  {175, 2, 73, 1, 1, kNA},
    {60, 2, 65, 2, 1, 0},    {163, 2, 69, 1, 1, 0},   {65, 2, 68, 1, 2, 8},
    {208, 2, 67, 2, 2, 2},   {821, 1, 64, 2, 0, 3},   {428, 2, 68, 1, 0, 0},
    {230, 2, 67, 1, 1, 23},  {840, 1, 63, 1, 0, -1},  {305, 2, 48, 2, 1, 29},
    {11, 2, 74, 1, 2, 0},    {132, 2, 40, 1, 1, 3},   {226, 2, 53, 2, 1, 3},
    {426, 2, 71, 2, 1, 19},  {705, 2, 51, 2, 0, 0},   {363, 2, 56, 2, 1, -2},
    {11, 2, 81, 1, 0, 15},   {176, 2, 73, 1, 0, 30},
};
constexpr size_t kRows = sizeof(kLung) / sizeof(kLung[0]);

struct Lung {
  std::vector<double> time, event, age, sex, ecog, wtLoss, dead;
  Lung() {
    for (const LungRow& r : kLung) {
      time.push_back(r.time);
      event.push_back(r.status - 1);
      age.push_back(r.age);
      sex.push_back(r.sex);
      ecog.push_back(r.ecog);
      wtLoss.push_back(r.wtLoss);
    }
  }
  DesignMatrix design(const std::vector<const std::vector<double>*>& cols, bool intercept) const {
    DesignMatrix x;
    x.rows = kRows;
    x.cols = cols.size() + (intercept ? 1 : 0);
    for (size_t r = 0; r < kRows; ++r) {
      if (intercept) x.values.push_back(1);
      for (const auto* c : cols) x.values.push_back((*c)[r]);
    }
    return x;
  }
};

// Splits rows 0..79 into three "sites" by row index mod 3.
std::vector<std::vector<size_t>> sites() {
  std::vector<std::vector<size_t>> s(3);
  for (size_t r = 0; r < kRows; ++r) s[r % 3].push_back(r);
  return s;
}

TEST(RReference, CoxphLungEfronAndBreslow) {
  Lung lung;
  DesignMatrix x = lung.design({&lung.age, &lung.sex, &lung.ecog}, false);
  SurvivalRows data{&x, lung.time, lung.event, {}};
  std::set<double> uni;
  for (const auto& s : sites()) {
    auto t = coxEventTimes(data, s, 1);
    ASSERT_TRUE(t.isOk());
    uni.insert((*t)[0].begin(), (*t)[0].end());
  }
  std::vector<std::vector<double>> grid = {{uni.begin(), uni.end()}};
  const std::vector<double> center = {62.5, 1.4, 1.0};  // any centre gives the same fit
  CoxEvaluator evaluate = [&](const std::vector<double>& beta) -> Result<CoxSums> {
    CoxSums merged;
    for (const auto& s : sites()) {
      TM_ASSIGN_OR_RETURN(CoxSums part, coxSumsFromRows(data, s, beta, center, grid));
      TM_RETURN_IF_ERROR(mergeInto(merged, part));
    }
    return merged;
  };
  struct Want {
    CoxTies ties;
    double coef[3], se[3], ll0, ll1, score, wald;
  };
  const Want wants[] = {
      {CoxTies::kEfron,
       {0.00436494747275808, -0.26882589489976028, 0.44436657768198867},
       {0.0156006055508553, 0.2429369702989689, 0.1673448895914990},
       -264.098140800130,
       -260.213143164766,
       8.03939549997602,
       7.95774944361092},
      {CoxTies::kBreslow,
       {0.00437854785943658, -0.26730721383324513, 0.44373943846245678},
       {0.0155948060082668, 0.2429367281884374, 0.1673172320550559},
       -264.155567896425,
       -260.282508175032,
       8.01367108850707,
       7.93209197976145},
  };
  for (const Want& w : wants) {
    CoxOptions options;
    options.ties = w.ties;
    auto fit = fitCox({"age", "sex", "ph.ecog"}, evaluate, options);
    ASSERT_TRUE(fit.isOk()) << fit.status().toString();
    EXPECT_EQ(fit->n, 79u);
    EXPECT_EQ(fit->events, 74u);
    EXPECT_EQ(fit->missing, 1u);
    EXPECT_EQ(fit->iterations, 3);  // fit$iter
    for (int j = 0; j < 3; ++j) {
      EXPECT_REL(fit->coefficients[j].coef, w.coef[j], 1e-9);
      EXPECT_REL(fit->coefficients[j].stdError, w.se[j], 1e-9);
    }
    EXPECT_REL(fit->loglikNull, w.ll0, 1e-12);
    EXPECT_REL(fit->loglik, w.ll1, 1e-12);
    EXPECT_REL(fit->score.statistic, w.score, 1e-10);
    EXPECT_REL(fit->wald.statistic, w.wald, 1e-9);
    if (w.ties == CoxTies::kEfron) {
      // print(summary(coxph(...))) in R, less the concordance.
      const std::string text = formatCox(*fit);
      for (const char* line : {
               "  n= 79, number of events= 74 \n   (1 observation deleted due to missingness)\n",
               "             coef exp(coef)  se(coef)      z Pr(>|z|)\n",
               "age      0.004365  1.004374  0.015601  0.280  0.77964\n",
               "ph.ecog  0.444367  1.559502  0.167345  2.655  0.00792 **\n",
               "        exp(coef) exp(-coef) lower .95 upper .95\n",
               "age        1.0044     0.9956    0.9741     1.036\n",
               "sex        0.7643     1.3084    0.4747     1.230\n",
               "Likelihood ratio test= 7.77  on 3 df,   p=0.05\n",
               "Wald test            = 7.96  on 3 df,   p=0.05\n",
               "Score (logrank) test = 8.04  on 3 df,   p=0.05\n",
           }) {
        EXPECT_NE(text.find(line), std::string::npos) << "missing line: " << line << "in:\n"
                                                      << text;
      }
    }
  }
}

TEST(RReference, LmLung) {
  Lung lung;
  DesignMatrix x = lung.design({&lung.age, &lung.sex, &lung.ecog}, true);
  LinearSums merged;
  for (const auto& s : sites()) {
    auto part = linearSumsFromRows(x, lung.wtLoss, s);
    ASSERT_TRUE(part.isOk());
    ASSERT_TRUE(mergeInto(merged, *part).isOk());
  }
  auto fit = fitLinear({kInterceptName, "age", "sex", "ph.ecog"}, merged);
  ASSERT_TRUE(fit.isOk()) << fit.status().toString();
  const double est[] = {30.528106245427175, -0.181261285681483, -8.334961385917879,
                        2.652840815929820};
  const double se[] = {13.84182141182014, 0.20232914066542, 3.46974367772266, 2.19197981298226};
  const double p[] = {0.0307533650628185, 0.3734352469658154, 0.0189935273218404,
                      0.2303131251098025};
  for (int j = 0; j < 4; ++j) {
    EXPECT_REL(fit->coefficients[j].estimate, est[j], 1e-11);
    EXPECT_REL(fit->coefficients[j].stdError, se[j], 1e-11);
    EXPECT_REL(fit->coefficients[j].pValue, p[j], 1e-9);
  }
  EXPECT_EQ(fit->missing, 7u);
  EXPECT_EQ(fit->dfResidual, 69);
  EXPECT_REL(fit->sigma, 14.3041783015897, 1e-12);
  EXPECT_REL(fit->rSquared, 0.0932925091557277, 1e-10);
  EXPECT_REL(fit->adjRSquared, 0.0538704443364115, 1e-10);
  EXPECT_REL(fit->fStatistic, 2.36650488966818, 1e-10);
  EXPECT_EQ(fit->fDf1, 3);
  // print(summary(lm(...))) in R, less the residual quantiles sums cannot give (R pads the
  // star column with trailing blanks; we trim them).
  const std::string text = formatLinear(*fit, "lm(formula = wt.loss ~ age + sex + ph.ecog)");
  for (const char* line : {
           "            Estimate Std. Error t value Pr(>|t|)\n",
           "(Intercept)  30.5281    13.8418   2.205   0.0308 *\n",
           "age          -0.1813     0.2023  -0.896   0.3734\n",
           "sex          -8.3350     3.4697  -2.402   0.0190 *\n",
           "ph.ecog       2.6528     2.1920   1.210   0.2303\n",
           "Residual standard error: 14.3 on 69 degrees of freedom\n",
           "  (7 observations deleted due to missingness)\n",
           "Multiple R-squared:  0.09329,\tAdjusted R-squared:  0.05387 \n",
           "F-statistic: 2.367 on 3 and 69 DF,  p-value: 0.07835\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing line: " << line << "in:\n" << text;
  }
}

TEST(RReference, GlmBinomialLung) {
  Lung lung;
  for (double& e : lung.event) e = e == 1 ? 1 : 0;  // I(status == 2)
  DesignMatrix x = lung.design({&lung.age, &lung.sex, &lung.wtLoss}, true);
  auto fit = fitLogistic({kInterceptName, "age", "sex", "wt.loss"},
                         [&](const std::vector<double>& beta) -> Result<LogisticSums> {
                           LogisticSums merged;
                           for (const auto& s : sites()) {
                             TM_ASSIGN_OR_RETURN(LogisticSums part,
                                                 logisticSumsFromRows(x, lung.event, s, beta));
                             TM_RETURN_IF_ERROR(mergeInto(merged, part));
                           }
                           return merged;
                         });
  ASSERT_TRUE(fit.isOk()) << fit.status().toString();
  const double est[] = {3.0111839277578105, -0.0144211261814661, 0.1732826244602556,
                        0.0405370523939233};
  const double se[] = {3.9551318095258430, 0.0568539112186477, 0.9841248127703593,
                       0.0397009666689852};
  for (int j = 0; j < 4; ++j) {
    // glm stops at its own convergence rule; we replicate its path, so the iterates agree
    // far below the rule's tolerance.
    EXPECT_REL(fit->coefficients[j].estimate, est[j], 1e-9);
    EXPECT_REL(fit->coefficients[j].stdError, se[j], 1e-9);
  }
  EXPECT_EQ(fit->iterations, 6);  // g$iter
  EXPECT_REL(fit->deviance, 35.3741044631885, 1e-11);
  EXPECT_REL(fit->nullDeviance, 36.6005570354543, 1e-11);
  EXPECT_REL(fit->aic, 43.3741044631885, 1e-11);
  EXPECT_EQ(fit->dfResidual, 70);
  EXPECT_EQ(fit->dfNull, 73);
  const std::string text = formatLogistic(*fit);
  for (const char* line : {
           "            Estimate Std. Error z value Pr(>|z|)\n",
           "(Intercept)  3.01118    3.95513   0.761    0.446\n",
           "age         -0.01442    0.05685  -0.254    0.800\n",
           "wt.loss      0.04054    0.03970   1.021    0.307\n",
           "    Null deviance: 36.601  on 73  degrees of freedom\n",
           "Residual deviance: 35.374  on 70  degrees of freedom\n",
           "  (6 observations deleted due to missingness)\n",
           "AIC: 43.374\n",
           "Number of Fisher Scoring iterations: 6\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing line: " << line << "in:\n" << text;
  }
  EXPECT_EQ(text.find("Signif. codes"), std::string::npos);  // no p < 0.1: no legend, as R
}

TEST(RReference, SurvfitAndSurvdiffLungBySex) {
  Lung lung;
  std::vector<SurvivalGroup> groups;
  for (double sex : {1.0, 2.0}) {
    std::vector<size_t> rows;
    for (size_t r = 0; r < kRows; ++r) {
      if (lung.sex[r] == sex) rows.push_back(r);
    }
    auto p = survivalPointsFromRows(SurvivalRows{nullptr, lung.time, lung.event, {}}, rows);
    ASSERT_TRUE(p.isOk());
    groups.push_back({sex == 1 ? "sex=1" : "sex=2", *p});
  }
  auto m = kaplanMeier(groups[0].name, groups[0].points);
  auto f = kaplanMeier(groups[1].name, groups[1].points);
  ASSERT_TRUE(m.isOk() && f.isOk());
  EXPECT_EQ(m->n, 50u);
  EXPECT_EQ(m->events, 47u);
  EXPECT_EQ(m->median, 238);
  EXPECT_EQ(m->medianLower, 175);
  EXPECT_EQ(m->medianUpper, 455);
  EXPECT_EQ(f->median, 362);
  EXPECT_EQ(f->medianLower, 226);
  EXPECT_EQ(f->medianUpper, 654);
  struct Row {
    size_t index;
    double time, nRisk, surv, se, lower, upper;
  };
  const Row rows[] = {
      {0, 11, 50, 0.96, 0.0277128129211020, 0.9071918940087905, 1.000000000000000},
      {1, 12, 48, 0.94, 0.0335857112474933, 0.8764252174208310, 1.000000000000000},
      {2, 26, 47, 0.92, 0.0383666521865018, 0.8477938642924041, 0.998355892450852},
      {9, 132, 38, 0.72, 0.0634980314655502, 0.6057083720222562, 0.855857412485875},
      {19, 223, 27, 0.52, 0.0706540869306228, 0.3984261442528821, 0.678670322970513},
      {29, 455, 17, 0.32, 0.0659696900098825, 0.2136339570193376, 0.479324548534814},
      {39, 689, 7, 0.12, 0.0459565011723042, 0.0566494729137507, 0.254194774626131},
  };
  for (const Row& r : rows) {
    const KmRow& got = m->rows[r.index];
    EXPECT_EQ(got.time, r.time);
    EXPECT_EQ(got.nRisk, r.nRisk);
    EXPECT_REL(got.survival, r.surv, 1e-13);
    EXPECT_REL(got.stdErr, r.se, 1e-12);
    EXPECT_REL(got.lower, r.lower, 1e-12);
    EXPECT_REL(got.upper, r.upper, 1e-12);
  }
  auto test = logRank(groups);
  ASSERT_TRUE(test.isOk());
  EXPECT_EQ(test->groups[0].observed, 47);
  EXPECT_EQ(test->groups[1].observed, 28);
  EXPECT_REL(test->groups[0].expected, 43.6777340646404, 1e-12);
  EXPECT_REL(test->groups[1].expected, 31.3222659353596, 1e-12);
  EXPECT_REL(test->groups[0].variance, 18.0135489211917, 1e-12);
  EXPECT_REL(test->chiSquare, 0.612730505995189, 1e-11);
  EXPECT_EQ(test->df, 1);
  const std::string table = formatKmTable({*m, *f});
  EXPECT_EQ(table,
            "       n events median 0.95LCL 0.95UCL\n"
            "sex=1 50     47    238     175     455\n"
            "sex=2 30     28    362     226     654\n");
  const std::string diff = formatLogRank(*test);
  EXPECT_EQ(diff,
            "       N Observed Expected (O-E)^2/E (O-E)^2/V\n"
            "sex=1 50       47     43.7     0.253     0.613\n"
            "sex=2 30       28     31.3     0.352     0.613\n"
            "\n Chisq= 0.6  on 1 degrees of freedom, p= 0.4 \n");
}

}  // namespace
}  // namespace trialmesh::stats
