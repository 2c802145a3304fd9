// Check against R (a registered test; CMake stops when Rscript or the survival package is
// missing, scripts/install-deps.sh installs both): generates a trial with ties, missing values and
// an all-censored cohort, fits every model here from site-split sums, fits the same models in R on
// the pooled rows, and compares. Usage: stats_r_compare <path to Rscript>. Exit status 0 when
// everything agrees (1e-9 relative for closed-form results, 1e-6 for iterative fits).
#include <unistd.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <string>

#include "stats/format.h"
#include "stats_test_util.h"

namespace ts = trialmesh::stats;
using trialmesh::Result;

namespace {

const char* kScript = R"(
library(survival)
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
out <- file(args[2], "w")
put <- function(key, v) for (i in seq_along(v)) writeLines(sprintf("%s.%d %.17g", key, i, v[i]), out)
l <- summary(lm(y ~ age + sex + armB + armC, data = d))
put("lm.coef", coef(l)[, 1]); put("lm.se", coef(l)[, 2]); put("lm.sigma", l$sigma)
put("lm.r2", l$r.squared); put("lm.adjr2", l$adj.r.squared); put("lm.f", l$fstatistic[1])
put("lm.fdf", l$fstatistic[2:3])
put("lm.fp", pf(l$fstatistic[1], l$fstatistic[2], l$fstatistic[3], lower.tail = FALSE))
g <- glm(binary ~ age + sex + armB + armC, family = binomial, data = d)
put("glm.coef", coef(g)); put("glm.se", sqrt(diag(vcov(g)))); put("glm.dev", g$deviance)
put("glm.nulldev", g$null.deviance); put("glm.aic", g$aic); put("glm.iter", g$iter)
put("glm.events", sum(g$y))
g0 <- glm(binary ~ 1, family = binomial, data = model.frame(g))
a <- anova(g0, g, test = "Chisq")
put("glm.lr", a$Deviance[2]); put("glm.lrdf", a$Df[2]); put("glm.lrp", a[[5]][2])  # the Pr(>Chi) column
for (ties in c("efron", "breslow")) {
  f <- coxph(Surv(time, event) ~ age + sex + armB + armC, data = d, ties = ties)
  k <- paste0("cox.", ties)
  put(paste0(k, ".coef"), coef(f)); put(paste0(k, ".se"), sqrt(diag(vcov(f))))
  put(paste0(k, ".ll"), f$loglik); put(paste0(k, ".score"), f$score)
  put(paste0(k, ".wald"), f$wald.test); put(paste0(k, ".iter"), f$iter)
  sf <- summary(f)
  put(paste0(k, ".lrtest"), sf$logtest); put(paste0(k, ".waldtest"), sf$waldtest)
  put(paste0(k, ".sctest"), sf$sctest); put(paste0(k, ".nevent"), f$nevent)
}
f <- coxph(Surv(time, event) ~ age + sex + armB + armC + strata(site), data = d)
put("cox.strata.coef", coef(f)); put("cox.strata.se", sqrt(diag(vcov(f))))
put("cox.strata.ll", f$loglik)
km <- survfit(Surv(time, event) ~ cohort, data = d)
tab <- summary(km)$table
put("km.median", tab[, "median"]); put("km.lcl", tab[, "0.95LCL"]); put("km.ucl", tab[, "0.95UCL"])
put("km.summary.stderr", summary(km)$std.err)  # SE of S, at event times
put("km.object.stderr", km$std.err)            # SE of -log S (cumulative hazard), every time
sd <- survdiff(Surv(time, event) ~ cohort, data = d)
put("lr.chisq", sd$chisq); put("lr.exp", sd$exp); put("lr.obs", sd$obs); put("lr.var", sd$var)
put("lr.p", pchisq(sd$chisq, sum(sd$exp > 0) - 1, lower.tail = FALSE))
close(out)
)";

std::string csvValue(double v) {
  if (std::isnan(v)) return "NA";
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

int failures = 0;
std::map<std::string, double> r;

void check(const std::string& key, double ours, double tol) {
  auto it = r.find(key);
  if (it == r.end()) {
    std::cerr << "missing R value " << key << "\n";
    ++failures;
    return;
  }
  auto ok = ts::testing::relClose(ours, it->second, tol);
  if (!ok) {
    std::cerr << "MISMATCH " << key << ": " << ok.message() << "\n";
    ++failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: stats_r_compare <Rscript>\n";
    return 2;
  }
  const ts::testing::Trial t = ts::testing::makeTrial(1200, 77);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tm_stats_r_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream csv(dir / "data.csv");
    csv << "age,sex,armB,armC,y,binary,time,event,site,cohort\n";
    for (size_t i = 0; i < t.n; ++i) {
      csv << csvValue(t.age[i]) << ',' << t.sex[i] << ',' << t.armB[i] << ',' << t.armC[i] << ','
          << csvValue(t.y[i]) << ',' << t.binary[i] << ',' << t.time[i] << ','
          << csvValue(t.event[i]) << ',' << t.site[i] << ',' << t.cohort[i] << '\n';
    }
    std::ofstream(dir / "ref.R") << kScript;
  }
  const std::string cmd = "timeout 120 '" + std::string(argv[1]) + "' --vanilla '" +
                          (dir / "ref.R").string() + "' '" + (dir / "data.csv").string() + "' '" +
                          (dir / "out.txt").string() + "' > /dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  {
    std::ifstream in(dir / "out.txt");
    std::string key, value;
    while (in >> key >> value) r[key] = value == "NA" ? std::nan("") : std::stod(value);
  }
  std::filesystem::remove_all(dir);
  if (rc != 0 || r.empty()) {
    std::cerr << "Rscript failed (status " << rc << ")\n";
    return 1;
  }

  const std::vector<std::string> names = {ts::kInterceptName, "age", "sex", "armB", "armC"};
  const ts::DesignMatrix x = t.design(names);
  ts::LinearSums lin;
  for (uint32_t s = 0; s < 3; ++s) {
    if (!ts::mergeInto(lin, *ts::linearSumsFromRows(x, t.y, t.rowsOfSite(s))).isOk()) return 1;
  }
  auto lm = ts::fitLinear(names, lin);
  if (!lm.isOk()) return std::cerr << lm.status().toString() << "\n", 1;
  std::cout << ts::formatLinear(*lm, "lm(formula = y ~ age + sex + armB + armC)") << "\n";
  for (size_t j = 0; j < names.size(); ++j) {
    check("lm.coef." + std::to_string(j + 1), lm->coefficients[j].estimate, 1e-9);
    check("lm.se." + std::to_string(j + 1), lm->coefficients[j].stdError, 1e-9);
  }
  check("lm.sigma.1", lm->sigma, 1e-9);
  check("lm.r2.1", lm->rSquared, 1e-9);
  check("lm.adjr2.1", lm->adjRSquared, 1e-9);
  check("lm.f.1", lm->fStatistic, 1e-9);
  check("lm.fdf.1", lm->fDf1, 0);
  check("lm.fdf.2", lm->fDf2, 0);
  check("lm.fp.1", lm->fPValue, 1e-9);

  auto glm = ts::fitLogistic(names, [&](const std::vector<double>& b) -> Result<ts::LogisticSums> {
    ts::LogisticSums sum;
    for (uint32_t s = 0; s < 3; ++s) {
      TM_ASSIGN_OR_RETURN(ts::LogisticSums part,
                          ts::logisticSumsFromRows(x, t.binary, t.rowsOfSite(s), b));
      TM_RETURN_IF_ERROR(ts::mergeInto(sum, part));
    }
    return sum;
  });
  if (!glm.isOk()) return std::cerr << glm.status().toString() << "\n", 1;
  std::cout << ts::formatLogistic(*glm,
                                  "glm(formula = binary ~ age + sex + armB + armC, "
                                  "family = binomial)")
            << "\n";
  for (size_t j = 0; j < names.size(); ++j) {
    check("glm.coef." + std::to_string(j + 1), glm->coefficients[j].estimate, 1e-6);
    check("glm.se." + std::to_string(j + 1), glm->coefficients[j].stdError, 1e-6);
  }
  check("glm.dev.1", glm->deviance, 1e-9);
  check("glm.nulldev.1", glm->nullDeviance, 1e-9);
  check("glm.aic.1", glm->aic, 1e-9);
  check("glm.iter.1", glm->iterations, 0);
  check("glm.events.1", static_cast<double>(glm->events), 0);
  check("glm.lr.1", glm->lrStatistic, 1e-9);
  check("glm.lrdf.1", glm->lrDf, 0);
  check("glm.lrp.1", glm->lrPValue, 1e-9);

  const std::vector<std::string> coxNames = {"age", "sex", "armB", "armC"};
  const ts::DesignMatrix cx = t.design(coxNames);
  for (int stratified = 0; stratified < 2; ++stratified) {
    const ts::SurvivalRows data{
        &cx, t.time, t.event,
        stratified ? std::span<const uint32_t>(t.site) : std::span<const uint32_t>()};
    const size_t strata = stratified ? 3 : 1;
    std::vector<std::set<double>> uni(strata);
    for (uint32_t s = 0; s < 3; ++s) {
      auto times = ts::coxEventTimes(data, t.rowsOfSite(s), strata);
      for (size_t k = 0; k < strata; ++k) uni[k].insert((*times)[k].begin(), (*times)[k].end());
    }
    std::vector<std::vector<double>> grid;
    for (const auto& u : uni) grid.emplace_back(u.begin(), u.end());
    const std::vector<double> center = {60, 0.5, 0.3, 0.3};
    auto evaluate = [&](const std::vector<double>& b) -> Result<ts::CoxSums> {
      ts::CoxSums sum;
      for (uint32_t s = 0; s < 3; ++s) {
        TM_ASSIGN_OR_RETURN(ts::CoxSums part,
                            ts::coxSumsFromRows(data, t.rowsOfSite(s), b, center, grid));
        TM_RETURN_IF_ERROR(ts::mergeInto(sum, part));
      }
      return sum;
    };
    for (ts::CoxTies ties : {ts::CoxTies::kEfron, ts::CoxTies::kBreslow}) {
      if (stratified && ties == ts::CoxTies::kBreslow) continue;
      ts::CoxOptions options;
      options.ties = ties;
      auto fit = ts::fitCox(coxNames, evaluate, options);
      if (!fit.isOk()) return std::cerr << fit.status().toString() << "\n", 1;
      const std::string k = stratified ? "cox.strata" : std::string("cox.") + ts::coxTiesName(ties);
      std::cout << ts::formatCox(*fit,
                                 "coxph(formula = Surv(time, event) ~ age + sex + armB + "
                                 "armC" +
                                     std::string(stratified ? " + strata(site)" : "") +
                                     ", ties = \"" + ts::coxTiesName(ties) + "\")")
                << "\n";
      for (size_t j = 0; j < coxNames.size(); ++j) {
        check(k + ".coef." + std::to_string(j + 1), fit->coefficients[j].coef, 1e-6);
        check(k + ".se." + std::to_string(j + 1), fit->coefficients[j].stdError, 1e-6);
      }
      check(k + ".ll.2", fit->loglik, 1e-9);
      if (!stratified) {
        check(k + ".ll.1", fit->loglikNull, 1e-9);
        check(k + ".score.1", fit->score.statistic, 1e-9);
        check(k + ".wald.1", fit->wald.statistic, 1e-6);
        check(k + ".iter.1", fit->iterations, 0);
        // summary.coxph: test, df, pvalue of the likelihood-ratio, Wald and score tests.
        const std::pair<const char*, const ts::CoxTest*> tests[] = {
            {".lrtest.", &fit->likelihoodRatio},
            {".waldtest.", &fit->wald},
            {".sctest.", &fit->score}};
        for (const auto& [name, test] : tests) {
          // summary.coxph rounds the Wald statistic to 2 decimals (f$wald.test, checked
          // above, is the exact one); its p-value is from the exact statistic.
          if (test != &fit->wald) check(k + name + "1", test->statistic, 1e-6);
          check(k + name + "2", test->df, 0);
          check(k + name + "3", test->pValue, 1e-6);
        }
        check(k + ".nevent.1", static_cast<double>(fit->events), 0);
      }
    }
  }

  std::vector<ts::SurvivalGroup> groups;
  std::vector<ts::KmCurve> curves;
  size_t objectRow = 0, summaryRow = 0;
  for (uint32_t c = 0; c < 4; ++c) {
    std::vector<size_t> rows;
    for (size_t i = 0; i < t.n; ++i) {
      if (t.cohort[i] == c) rows.push_back(i);
    }
    auto p = ts::survivalPointsFromRows(ts::SurvivalRows{nullptr, t.time, t.event, {}}, rows);
    groups.push_back({"cohort=" + std::to_string(c), *p});
    curves.push_back(*ts::kaplanMeier(groups.back().name, *p));
    check("km.median." + std::to_string(c + 1), curves.back().median, 0);
    check("km.lcl." + std::to_string(c + 1), curves.back().medianLower, 0);
    check("km.ucl." + std::to_string(c + 1), curves.back().medianUpper, 0);
    for (const ts::KmRow& row : curves.back().rows) {
      ++objectRow;
      if (row.nEvent > 0) ++summaryRow;
      // KmRow::stdErr is summary.survfit's std.err (of S); the survfit object's std.err is
      // that of -log S, i.e. stdErr / S (undefined once S reaches 0).
      if (row.nEvent > 0 && row.survival > 0)
        check("km.summary.stderr." + std::to_string(summaryRow), row.stdErr, 1e-9);
      if (row.survival > 0)
        check("km.object.stderr." + std::to_string(objectRow), row.stdErr / row.survival, 1e-9);
    }
  }
  std::cout << ts::formatKmTable(curves, "survfit(formula = Surv(time, event) ~ cohort)") << "\n";
  auto lr = ts::logRank(groups);
  std::cout << ts::formatLogRank(*lr, "survdiff(formula = Surv(time, event) ~ cohort)") << "\n";
  check("lr.chisq.1", lr->chiSquare, 1e-9);
  for (size_t g = 0; g < 4; ++g)
    check("lr.exp." + std::to_string(g + 1), lr->groups[g].expected, 1e-9);
  for (size_t g = 0; g < 4; ++g)
    check("lr.obs." + std::to_string(g + 1), lr->groups[g].observed, 0);
  for (size_t i = 0; i < 16; ++i) check("lr.var." + std::to_string(i + 1), lr->variance[i], 1e-9);
  check("lr.p.1", lr->pValue, 1e-9);

  std::cout << (failures == 0 ? "all values agree with R\n" : "values differ from R\n");
  return failures == 0 ? 0 : 1;
}
