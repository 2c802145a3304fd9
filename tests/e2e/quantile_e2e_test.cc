// quantile(x, p) and median(x) from the trialmesh CLI over loopback federations of real
// trialmesh-node processes, plain and secure, with sites of very unequal size (3 to 200
// patients): the released quantiles equal R's quantile(x, p, type = 7, na.rm = TRUE) on the
// pooled rows (the sites' CSVs concatenated and read by Rscript) exactly; a quantile of fewer
// values than the minimum cell size is refused; a site that is down is left out and named.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
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
using namespace std::chrono_literals;

// Only the sites given as arguments 3.. are pooled (the others were down).
const char* kScript = R"(
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d <- d[d$SITEID %in% args[3:length(args)], ]
out <- file(args[2], "w")
put <- function(key, q) for (i in seq_along(q)) writeLines(sprintf("%s.%d %.17g", key, i, q[i]), out)
put("age", quantile(d$AGE, c(0.1, 0.25, 0.5, 0.9), type = 7, na.rm = TRUE))
f <- d[d$SEX == "F", ]
put("bmi_f", quantile(f$BMI, 0.5, type = 7, na.rm = TRUE))
put("meal", quantile(d$meal.cal, c(0.25, 0.5, 0.75), type = 7, na.rm = TRUE))
# A filter keeping 1 to 4 values of AGE: its quantile must be refused (minimum cell 5).
for (t in 95:40) {
  n <- sum(!is.na(d$AGE) & d$AGE >= t & d$SEX == "F")
  if (n >= 1 && n <= 4) { writeLines(sprintf("small.age %d", t), out); break }
}
close(out)
)";

class QuantileE2e : public ::testing::TestWithParam<ethics::AggregationMode> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tm_e2e_quantile_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    LocalFederationOptions o;
    o.directory = dir_.string();
    o.sites = 4;
    o.rows = 1000;
    o.siteRows = {3, 40, 200, 120};
    o.aggregation = GetParam();
    o.minCellSize = 5;
    o.nodeBinary = TRIALMESH_NODE_BINARY;
    auto created = LocalFederation::create(o);
    ASSERT_TRUE(created.isOk()) << created.status().toString();
    fed_ = std::move(*created);
    Status s = fed_->start(30s);
    ASSERT_TRUE(s.isOk()) << s.toString();
  }
  void TearDown() override {
    if (fed_) fed_->stop(5s);
    fed_.reset();
    fs::remove_all(dir_);
  }

  // Runs `trialmesh query` as the coordinator (bounded); its exit status and stdout.
  std::pair<int, std::string> query(const std::string& text, const std::string& flags) {
    const fs::path out = dir_ / "cli.out";
    const std::string cmd = "timeout 60 " + std::string(TRIALMESH_CLI_BINARY) + " query " + flags +
                            " --study LUNG-7 --members " + fed_->membersPath() + " --identity " +
                            fed_->coordinatorKeyPath() + " '" + text + "' > " + out.string() +
                            " 2> " + (dir_ / "cli.err").string();
    const int status = std::system(cmd.c_str());
    return {WEXITSTATUS(status), readFile(out.string()) + readFile((dir_ / "cli.err").string())};
  }

  // R on the pooled rows of `sites` (the site CSVs concatenated, one header).
  std::map<std::string, double> pooledR(const std::vector<size_t>& sites) {
    writePooledCsv(*fed_, dir_ / "pooled.csv");
    std::ofstream(dir_ / "run.R") << kScript;
    std::string cmd = std::string(TRIALMESH_RSCRIPT) + " " + (dir_ / "run.R").string() + " " +
                      (dir_ / "pooled.csv").string() + " " + (dir_ / "r.txt").string();
    for (size_t i : sites) cmd += " " + siteId(i);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::map<std::string, double> r;
    std::ifstream in(dir_ / "r.txt");
    std::string key;
    double v = 0;
    while (in >> key >> v) r[key] = v;
    return r;
  }

  // The SITEID column of site i's CSV (the generator writes the site's id in every row).
  std::string siteId(size_t i) {
    std::ifstream in(fed_->siteCsvPath(i));
    std::string header, row;
    std::getline(in, header);
    std::getline(in, row);
    std::stringstream fields(row);
    std::string usubjid, site;
    std::getline(fields, usubjid, ',');
    std::getline(fields, site, ',');
    return site;
  }

  fs::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

void expectQuantiles(const nlohmann::json& j, const std::map<std::string, double>& r,
                     const std::string& key, size_t count) {
  ASSERT_EQ(j["rows"].size(), count) << j.dump();
  for (size_t i = 0; i < count; ++i) {
    const std::string k = key + "." + std::to_string(i + 1);
    ASSERT_TRUE(r.count(k)) << "R gave no " << k;
    // Exact: type 7 on the same doubles, as R computes it.
    EXPECT_EQ(j["rows"][i]["quantile"].get<double>(), r.at(k)) << k;
  }
}

TEST_P(QuantileE2e, EqualsROnThePooledRowsAndLeavesOutADownSite) {
  const auto all = pooledR({0, 1, 2, 3});
  ASSERT_EQ(all.size(), 9u) << "R did not answer every figure";

  auto [code, out] = query("quantile(age, c(0.1, 0.25, 0.5, 0.9))", "--json");
  ASSERT_EQ(code, 0) << out;
  auto j = nlohmann::json::parse(out.substr(0, out.find('\n')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  expectQuantiles(j, all, "age", 4);
  EXPECT_EQ(j["sites"]["contributed"].size(), 4u) << out;
  EXPECT_EQ(j["sites"]["mode"], ethics::aggregationModeName(GetParam()));
  // Ages are whole numbers: the sites' (pooled, in secure mode masked) count of values that
  // are not is 0, so the select stops at the round that finds each rank's one whole number.
  EXPECT_EQ(j["rounds"], 2) << out;

  auto [code2, out2] = query("median(bmi) where sex = \"F\"", "--json");
  ASSERT_EQ(code2, 0) << out2;
  auto m = nlohmann::json::parse(out2.substr(0, out2.find('\n')), nullptr, false);
  expectQuantiles(m, all, "bmi_f", 1);
  EXPECT_EQ(m["rounds"], 2) << out2;  // BMI is recorded to one decimal

  // R's layout for people: names over values, then n and the sites.
  auto [code3, text] = query("quantile(mealcal, c(0.25, 0.5, 0.75))", "");
  ASSERT_EQ(code3, 0) << text;
  EXPECT_NE(text.find("25%"), std::string::npos) << text;
  EXPECT_NE(text.find("Sites: 4 of 4 contributed"), std::string::npos) << text;

  // Fewer values than the minimum cell size (5): refused, not released.
  const int threshold = static_cast<int>(all.at("small.age"));
  auto [code4, small] =
      query("median(age) where age >= " + std::to_string(threshold) + " and sex = \"F\"", "");
  EXPECT_NE(code4, 0) << small;
  EXPECT_NE(small.find("minimum cell size"), std::string::npos) << small;

  // The smallest site down: left out and named; the result is R's on the other three.
  ASSERT_NE(fed_->siteProcess(0), nullptr);
  fed_->siteProcess(0)->stop(5s);
  const auto rest = pooledR({1, 2, 3});
  auto [code5, out5] = query("quantile(age, c(0.1, 0.25, 0.5, 0.9))", "--json --deadline-ms 8000");
  ASSERT_EQ(code5, 0) << out5;
  auto d = nlohmann::json::parse(out5.substr(0, out5.find('\n')), nullptr, false);
  ASSERT_FALSE(d.is_discarded()) << out5;
  expectQuantiles(d, rest, "age", 4);
  ASSERT_EQ(d["sites"]["left_out"].size(), 1u) << out5;
  EXPECT_EQ(d["sites"]["left_out"][0]["site"], fed_->siteName(0));
}

INSTANTIATE_TEST_SUITE_P(Modes, QuantileE2e,
                         ::testing::Values(ethics::AggregationMode::kPlain,
                                           ethics::AggregationMode::kSecure),
                         [](const auto& info) {
                           return std::string(ethics::aggregationModeName(info.param));
                         });

}  // namespace
}  // namespace trialmesh::node
