// R's survival::lung, written out by Rscript at test time and loaded under a dictionary that keeps
// R's names (ph.ecog, meal.cal) and lung's 1/2 status coding: coxph with factor(ph.ecog), lm and
// the cross-table tests compared with R on the same rows, through every summary field of
// --json and --csv (what R's summary() prints: lm's residual standard error, R², F; coxph's
// likelihood ratio, Wald and score tests, n and events). 1e-10 closed form, 1e-6 iterative.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "query/cross_test.h"
#include "query/model_runner.h"
#include "query_test_util.h"

namespace trialmesh::query {
namespace {

using namespace testing;  // NOLINT: test fixtures
namespace fs = std::filesystem;

const char* kScript = R"(
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
write.csv(lung[, c("time", "status", "age", "sex", "ph.ecog", "meal.cal")], args[1],
          row.names = FALSE, na = "NA")
out <- file(args[2], "w")
put <- function(key, v) for (i in seq_along(v)) writeLines(sprintf("%s.%d %.17g", key, i, v[i]), out)
f <- coxph(Surv(time, status) ~ age + factor(ph.ecog), data = lung)
s <- summary(f)
put("cox.coef", coef(f)); put("cox.se", sqrt(diag(vcov(f))))
# summary.coxph rounds the Wald statistic to 2 decimals for print; its p is from the exact one.
put("cox.lr", s$logtest); put("cox.wald", c(f$wald.test, s$waldtest[2:3])); put("cox.score", s$sctest)
put("cox.n", s$n); put("cox.events", s$nevent)
l <- summary(lm(meal.cal ~ age + sex, data = lung))
put("lm.coef", coef(l)[, 1]); put("lm.sigma", l$sigma); put("lm.df", l$df[2])
put("lm.r2", l$r.squared); put("lm.adjr2", l$adj.r.squared); put("lm.f", l$fstatistic)
put("lm.fp", pf(l$fstatistic[1], l$fstatistic[2], l$fstatistic[3], lower.tail = FALSE))
put("lm.n", length(l$residuals))
t <- suppressWarnings(chisq.test(table(lung$sex, lung$ph.ecog)))
put("chisq", c(t$statistic, t$parameter, t$p.value))
t <- fisher.test(table(lung$sex, lung$status))
put("fisher", c(t$p.value, t$estimate, t$conf.int))
close(out)
)";

storage::Dictionary lungDictionary() {
  std::vector<storage::Variable> vars;
  vars.push_back(makeVar("time", storage::VariableType::kInteger, false, {}, 0, 5000));
  vars.push_back(makeVar("status", storage::VariableType::kInteger, false, {}, 1, 2));
  vars.push_back(makeVar("age", storage::VariableType::kInteger, false, {}, 0, 120));
  vars.push_back(makeVar("sex", storage::VariableType::kInteger, false, {}, 1, 2));
  vars.push_back(makeVar("ph.ecog", storage::VariableType::kInteger, true, {}, 0, 3));
  vars.push_back(makeVar("meal.cal", storage::VariableType::kInteger, true, {}, 0, 5000));
  auto d = storage::Dictionary::create("LUNG", std::move(vars));
  EXPECT_TRUE(d.isOk()) << d.status().toString();
  return std::move(d).value();
}

class LungRTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tm_lung_r_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    std::ofstream(dir_ / "run.R") << kScript;
    const std::string cmd = std::string(TRIALMESH_RSCRIPT) + " " + (dir_ / "run.R").string() + " " +
                            (dir_ / "lung.csv").string() + " " + (dir_ / "r.txt").string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::ifstream in(dir_ / "r.txt");
    std::string key;
    double v = 0;
    while (in >> key >> v) r_[key] = v;
    std::ifstream csv(dir_ / "lung.csv");
    std::string line;
    std::getline(csv, line);
    ASSERT_EQ(line, R"("time","status","age","sex","ph.ecog","meal.cal")");
    std::vector<Row> rows;
    while (std::getline(csv, line)) {
      Row row;
      std::stringstream fields(line);
      std::string f;
      while (std::getline(fields, f, ','))
        row.push_back(f == "NA" ? Cell::none() : Cell::integer(std::stoll(f)));
      ASSERT_EQ(row.size(), 6u) << line;
      rows.push_back(row);
    }
    ASSERT_EQ(rows.size(), 228u);
    dict_ = lungDictionary();
    table_ = makeTable(dict_, rows);
  }
  void TearDown() override { fs::remove_all(dir_); }

  double r(const std::string& key) const {
    auto it = r_.find(key);
    EXPECT_NE(it, r_.end()) << key << " not in R's output";
    return it == r_.end() ? std::nan("") : it->second;
  }

  fs::path dir_;
  std::map<std::string, double> r_;
  storage::Dictionary dict_;
  std::unique_ptr<storage::InMemoryTable> table_;
};

void near(double got, double want, double rel, const std::string& what) {
  EXPECT_LE(std::fabs(got - want), rel * std::max(1.0, std::fabs(want)))
      << what << ": got " << got << ", R " << want;
}

// The first data row of a CSV as name -> field.
std::map<std::string, std::string> firstCsvRow(const std::string& csv) {
  std::stringstream in(csv);
  std::string header, row;
  std::getline(in, header);
  std::getline(in, row);
  std::map<std::string, std::string> out;
  std::stringstream h(header), v(row);
  std::string name, field;
  while (std::getline(h, name, ',') && std::getline(v, field, ',')) out[name] = field;
  return out;
}

TEST_F(LungRTest, CoxWithFactorEcogAndEverySummaryField) {
  auto fit = fitModel(*parseQuery("coxph(time, status ~ age + factor(ph.ecog))"),
                      localRoundRunner(*table_));
  ASSERT_TRUE(fit.isOk()) << fit.status().toString();
  ASSERT_TRUE(fit->cox);
  ASSERT_EQ(fit->cox->coefficients.size(), 4u);  // age, ph.ecog 1, 2, 3 (0 the reference)
  EXPECT_EQ(fit->cox->coefficients[1].name, "factor(ph.ecog)1");  // R's model.matrix names
  EXPECT_EQ(fit->cox->coefficients[3].name, "factor(ph.ecog)3");
  for (size_t k = 0; k < 4; ++k) {
    near(fit->cox->coefficients[k].coef, r("cox.coef." + std::to_string(k + 1)), 1e-6, "coef");
    near(fit->cox->coefficients[k].stdError, r("cox.se." + std::to_string(k + 1)), 1e-6, "se");
  }
  const auto j = nlohmann::json::parse(modelJson(*fit));
  const auto csv = firstCsvRow(modelCsv(*fit));
  EXPECT_EQ(j["n"].get<double>(), r("cox.n.1"));
  EXPECT_EQ(j["events"].get<double>(), r("cox.events.1"));
  EXPECT_EQ(std::stod(csv.at("n")), r("cox.n.1"));
  EXPECT_EQ(std::stod(csv.at("events")), r("cox.events.1"));
  const std::pair<const char*, const char*> tests[] = {
      {"likelihood_ratio_test", "lr"}, {"wald_test", "wald"}, {"score_test", "score"}};
  for (const auto& [jsonName, key] : tests) {
    const std::string rk = std::string("cox.") + key;
    near(j[jsonName]["statistic"].get<double>(), r(rk + ".1"), 1e-6, jsonName);
    near(j[jsonName]["df"].get<double>(), r(rk + ".2"), 0, jsonName);
    near(j[jsonName]["p_value"].get<double>(), r(rk + ".3"), 1e-6, jsonName);
    near(std::stod(csv.at(std::string(key) + "_statistic")), r(rk + ".1"), 1e-6, key);
    near(std::stod(csv.at(std::string(key) + "_df")), r(rk + ".2"), 0, key);
    near(std::stod(csv.at(std::string(key) + "_p_value")), r(rk + ".3"), 1e-6, key);
  }
}

TEST_F(LungRTest, LinearModelEverySummaryField) {
  auto fit = fitModel(*parseQuery("lm(meal.cal ~ age + sex)"), localRoundRunner(*table_));
  ASSERT_TRUE(fit.isOk()) << fit.status().toString();
  ASSERT_TRUE(fit->linear);
  for (size_t k = 0; k < 3; ++k)
    near(fit->linear->coefficients[k].estimate, r("lm.coef." + std::to_string(k + 1)), 1e-10,
         "coef");
  const auto j = nlohmann::json::parse(modelJson(*fit));
  const auto csv = firstCsvRow(modelCsv(*fit));
  const std::tuple<const char*, double, double> fields[] = {
      {"residual_standard_error", j["residual_standard_error"].get<double>(), r("lm.sigma.1")},
      {"df_residual", j["df_residual"].get<double>(), r("lm.df.1")},
      {"r_squared", j["r_squared"].get<double>(), r("lm.r2.1")},
      {"adj_r_squared", j["adj_r_squared"].get<double>(), r("lm.adjr2.1")},
      {"n", j["n"].get<double>(), r("lm.n.1")}};
  for (const auto& [name, got, want] : fields) {
    near(got, want, 1e-10, std::string("json ") + name);
    near(std::stod(csv.at(name)), want, 1e-10, std::string("csv ") + name);
  }
  near(j["f_statistic"]["value"].get<double>(), r("lm.f.1"), 1e-10, "F");
  near(j["f_statistic"]["df1"].get<double>(), r("lm.f.2"), 0, "F df1");
  near(j["f_statistic"]["df2"].get<double>(), r("lm.f.3"), 0, "F df2");
  near(j["f_statistic"]["p_value"].get<double>(), r("lm.fp.1"), 1e-10, "F p");
  near(std::stod(csv.at("f_statistic")), r("lm.f.1"), 1e-10, "csv F");
  near(std::stod(csv.at("f_df1")), r("lm.f.2"), 0, "csv F df1");
  near(std::stod(csv.at("f_df2")), r("lm.f.3"), 0, "csv F df2");
  near(std::stod(csv.at("f_p_value")), r("lm.fp.1"), 1e-10, "csv F p");
}

TEST_F(LungRTest, CrossTablesOfLung) {
  auto run = [&](const std::string& text) -> ResultTable {
    auto request = parseCrossTest(text);
    EXPECT_TRUE(request.isOk() && request->has_value()) << text;
    ResultTable counts = runQuery((*request)->countQuery, *table_, 1);
    auto t = applyCrossTest(counts, **request);
    EXPECT_TRUE(t.isOk()) << t.status().toString();
    return *t;
  };
  const ResultTable c = run("chisq(sex, ph.ecog)");
  near(std::get<double>(c.rows[0][2]), r("chisq.1"), 1e-10, "chisq statistic");
  near(std::get<double>(c.rows[0][3]), r("chisq.2"), 0, "chisq df");
  near(std::get<double>(c.rows[0][4]), r("chisq.3"), 1e-10, "chisq p");
  const ResultTable f = run("fisher(sex, status)");
  near(std::get<double>(f.rows[0][2]), r("fisher.1"), 1e-9, "fisher p");
  for (size_t k = 0; k < 3; ++k)
    near(std::get<double>(f.rows[0][3 + k]), r("fisher." + std::to_string(k + 2)), 1e-6,
         "fisher odds ratio / limits");
}

}  // namespace
}  // namespace trialmesh::query
