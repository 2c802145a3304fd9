// chisq(a, b), fisher(a, b) and km's options (times, rmean, strata: two queries) from the
// trialmesh CLI over a 4-site federation in secure mode
// (real trialmesh-node processes on 127.0.0.1): the released test equals R's chisq.test /
// fisher.test on the pooled rows (the sites' CSVs concatenated and read by Rscript), the
// federated --json keeps its keys in the documented order (docs/json-output.md), and --plot
// draws the federated curves.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "e2e_federation_fixture.h"

namespace trialmesh::node {
namespace {

namespace fs = std::filesystem;

const char* kScript = R"(
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
out <- file(args[2], "w")
put <- function(key, v) writeLines(sprintf("%s %.17g", key, v), out)
t <- suppressWarnings(chisq.test(table(d$ARM, d$ph.ecog)))
put("arm_ecog.stat", t$statistic); put("arm_ecog.df", t$parameter); put("arm_ecog.p", t$p.value)
t <- chisq.test(table(d$ARM, d$SEX), correct = FALSE)
put("arm_sex.stat", t$statistic); put("arm_sex.p", t$p.value)
a <- d[!is.na(d$AGE) & d$AGE >= 60, ]
t <- fisher.test(table(a$SEX, a$SMOKER))
put("fisher.p", t$p.value); put("fisher.or", t$estimate)
put("fisher.lo", t$conf.int[1]); put("fisher.hi", t$conf.int[2])
close(out)
)";

// km(time, event, times =, rmean =, strata =) by sex: summary(survfit, times), survmean and
// survdiff with strata(ph.ecog) on the pooled rows.
const char* kKmScript = R"R(
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
out <- file(args[2], "w")
put <- function(key, v) for (i in seq_along(v)) writeLines(sprintf("%s.%d %.17g", key, i, v[i]), out)
f <- survfit(Surv(AVAL, EVENT) ~ SEX, data = d)
s <- summary(f, times = c(180, 365))
put("at.risk", s$n.risk); put("at.event", s$n.event); put("at.surv", s$surv)
put("at.se", s$std.err); put("at.lower", s$lower); put("at.upper", s$upper)
m <- survival:::survmean(f, rmean = 365)$matrix
put("rmean", m[, "rmean"]); put("se.rmean", m[, "se(rmean)"])
sd <- survdiff(Surv(AVAL, EVENT) ~ SEX + strata(ph.ecog), data = d)
put("lr.chisq", sd$chisq); put("lr.exp", rowSums(sd$exp)); put("lr.obs", rowSums(sd$obs))
close(out)
)R";

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class CrossTestE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tm_e2e_cross_" + std::to_string(::getpid()));
    startLocalFederation(dir_, 4, 900, fed_);
  }
  void TearDown() override { stopLocalFederation(fed_, dir_); }

  // Runs `trialmesh query --json` as the coordinator (bounded by `timeout`); the parsed output.
  nlohmann::ordered_json query(const std::string& text) {
    const fs::path out = dir_ / "cli.json";
    const std::string cmd = "timeout 60 " + std::string(TRIALMESH_CLI_BINARY) +
                            " query --json --study LUNG-7 --members " + fed_->membersPath() +
                            " --identity " + fed_->coordinatorKeyPath() + " '" + text + "' > " +
                            out.string() + " 2> " + (dir_ / "cli.err").string();
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << slurp(dir_ / "cli.err");
    return nlohmann::ordered_json::parse(slurp(out), nullptr, false);
  }

  // R on the pooled rows: the site CSVs concatenated (one header).
  std::map<std::string, double> pooledR(const char* script = kScript) {
    writePooledCsv(*fed_, dir_ / "pooled.csv");
    std::ofstream(dir_ / "run.R") << script;
    const std::string cmd = std::string(TRIALMESH_RSCRIPT) + " " + (dir_ / "run.R").string() + " " +
                            (dir_ / "pooled.csv").string() + " " + (dir_ / "r.txt").string();
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::map<std::string, double> r;
    std::ifstream in(dir_ / "r.txt");
    std::string key, v;
    while (in >> key >> v) r[key] = v == "NA" ? std::nan("") : std::strtod(v.c_str(), nullptr);
    return r;
  }

  fs::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

void near(double got, double want, double rel, const std::string& what) {
  EXPECT_LE(std::fabs(got - want), rel * std::max(1.0, std::fabs(want)))
      << what << ": got " << got << ", R " << want;
}

TEST_F(CrossTestE2e, SecureChisqAndFisherEqualROnThePooledRows) {
  const auto r = pooledR();
  ASSERT_EQ(r.size(), 9u) << "R did not answer every figure";

  auto j = query("chisq(arm, ecog)");
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["aggregation"], "secure");
  // Keys in the documented order, not sorted (nlohmann::json would sort them).
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"query", "study", "partial", "aggregation", "approval",
                                            "rounds", "dropped", "refusal", "sites", "result"}));
  const auto& row = j["result"]["rows"][0];
  std::vector<std::string> rowKeys;
  for (auto it = row.begin(); it != row.end(); ++it) rowKeys.push_back(it.key());
  EXPECT_EQ(rowKeys, (std::vector<std::string>{"test", "method", "statistic", "df", "p_value", "n",
                                               "min_expected", "warning", "suppressed"}));
  near(row["statistic"].get<double>(), r.at("arm_ecog.stat"), 1e-10, "chisq statistic");
  near(row["df"].get<double>(), r.at("arm_ecog.df"), 0, "chisq df");
  near(row["p_value"].get<double>(), r.at("arm_ecog.p"), 1e-10, "chisq p");

  auto u = query("chisq(arm, sex, correct = false)");
  ASSERT_FALSE(u.is_discarded());
  near(u["result"]["rows"][0]["statistic"].get<double>(), r.at("arm_sex.stat"), 1e-10,
       "uncorrected statistic");
  near(u["result"]["rows"][0]["p_value"].get<double>(), r.at("arm_sex.p"), 1e-10, "uncorrected p");

  auto f = query("fisher(sex, smoker) where age >= 60");
  ASSERT_FALSE(f.is_discarded());
  const auto& fr = f["result"]["rows"][0];
  near(fr["p_value"].get<double>(), r.at("fisher.p"), 1e-9, "fisher p");
  near(fr["odds_ratio"].get<double>(), r.at("fisher.or"), 1e-6, "odds ratio");
  near(fr["conf_low"].get<double>(), r.at("fisher.lo"), 1e-6, "conf_low");
  near(fr["conf_high"].get<double>(), r.at("fisher.hi"), 1e-6, "conf_high");
  // Only the test is released: no cell of the table in the output.
  EXPECT_EQ(f["result"]["rows"].size(), 1u);
}

// The km options from the CLI over the secure federation (time_bin 1: whole days stay exact):
// survival at times, the restricted mean and the stratified log-rank test (two queries) equal R.
TEST_F(CrossTestE2e, SecureKmTimesRmeanAndStrataEqualROnThePooledRows) {
  const auto r = pooledR(kKmScript);
  ASSERT_EQ(r.size(), 33u) << "R did not answer every figure:\n" << slurp(dir_ / "r.txt");
  auto j = query("km(time, event, times = [180, 365], rmean = 365, strata = ecog) by sex");
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["aggregation"], "secure");
  const auto& result = j["result"];
  ASSERT_EQ(result["curves"].size(), 2u);
  for (size_t c = 0; c < 2; ++c) {
    const auto& curve = result["curves"][c];
    SCOPED_TRACE(curve["group"].get<std::string>());
    const auto& at = curve["survival_at_times"];
    ASSERT_EQ(at.size(), 2u);
    for (size_t k = 0; k < 2; ++k) {
      const std::string i = "." + std::to_string(2 * c + k + 1);
      near(at[k]["n_risk"].get<double>(), r.at("at.risk" + i), 0, "n_risk");
      near(at[k]["n_event"].get<double>(), r.at("at.event" + i), 0, "n_event");
      near(at[k]["survival"].get<double>(), r.at("at.surv" + i), 1e-12, "survival");
      near(at[k]["std_err"].get<double>(), r.at("at.se" + i), 1e-12, "std_err");
      near(at[k]["lower_95"].get<double>(), r.at("at.lower" + i), 1e-12, "lower");
      near(at[k]["upper_95"].get<double>(), r.at("at.upper" + i), 1e-12, "upper");
    }
    const std::string i = "." + std::to_string(c + 1);
    near(curve["rmean"]["rmean"].get<double>(), r.at("rmean" + i), 1e-12, "rmean");
    near(curve["rmean"]["se_rmean"].get<double>(), r.at("se.rmean" + i), 1e-12, "se(rmean)");
    const auto& g = result["logrank"]["groups"][c];
    near(g["observed"].get<double>(), r.at("lr.obs" + i), 0, "observed");
    near(g["expected"].get<double>(), r.at("lr.exp" + i), 1e-10, "expected");
  }
  EXPECT_EQ(result["logrank"]["strata"], "ecog");
  near(result["logrank"]["chi_square"].get<double>(), r.at("lr.chisq.1"), 1e-10, "chisq");

  // An unknown stratum is named, whichever side (coordinator or sites) finds it.
  const fs::path out = dir_ / "bad.txt";
  const std::string cmd = "timeout 60 " + std::string(TRIALMESH_CLI_BINARY) +
                          " query --study LUNG-7 --members " + fed_->membersPath() +
                          " --identity " + fed_->coordinatorKeyPath() +
                          " 'km(time, event, strata = nosuch) by sex' > " + out.string() + " 2>&1";
  (void)std::system(cmd.c_str());
  const std::string text = slurp(out);
  EXPECT_NE(text.find("not cover variable 'nosuch'"), std::string::npos) << text;
  EXPECT_EQ(text.find("log-rank test: chisq"), std::string::npos) << text;

  // --plot on the same federation (tools/plot): the released curves drawn as a well-formed SVG,
  // the table still printed; a wrong extension is refused before any site is asked.
  const fs::path svg = dir_ / "km.svg";
  const std::string base = "timeout 60 " + std::string(TRIALMESH_CLI_BINARY) +
                           " query --study LUNG-7 --members " + fed_->membersPath() +
                           " --identity " + fed_->coordinatorKeyPath();
  const std::string plotCmd =
      base + " --plot " + svg.string() + " 'km(time, event) by sex' > " + out.string() + " 2>&1";
  ASSERT_EQ(std::system(plotCmd.c_str()), 0) << slurp(out);
  EXPECT_NE(slurp(out).find("plot written to " + svg.string()), std::string::npos) << slurp(out);
  const std::string check =
      "python3 -c 'import sys, xml.etree.ElementTree as E; "
      "sys.exit(0 if E.parse(sys.argv[1]).getroot().tag == \"{http://www.w3.org/2000/svg}svg\" "
      "else 1)' " +
      svg.string();
  EXPECT_EQ(std::system(check.c_str()), 0) << "not a well-formed SVG document";
  const std::string bad = base + " --plot " + (dir_ / "km.pdf").string() +
                          " 'km(time, event) by sex' > " + out.string() + " 2>&1";
  EXPECT_NE(std::system(bad.c_str()), 0);
  EXPECT_NE(slurp(out).find("must end in .svg or .png"), std::string::npos) << slurp(out);
}

}  // namespace
}  // namespace trialmesh::node
