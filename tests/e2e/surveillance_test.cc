// Weekly series and outbreak detection across a loopback federation (issue #15): the federated
// `count by week(randdt)` equals the pooled count of every site's rows in plain and secure
// mode (every ISO week of the dictionary's range present, zeros included), and surveil(...)
// on the federated series gives the same bounds and alarms as on the pooled one (EARS C2 and
// both Farrington variants).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "node/coordinator.h"
#include "node/local_federation.h"
#include "pooled_table.h"
#include "query/engine.h"
#include "query/partial.h"
#include "query/surveil.h"
#include "query/time_group.h"
#include "storage/store.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

class SurveillanceTest : public ::testing::TestWithParam<ethics::AggregationMode> {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trialmesh-surveil-" + std::to_string(::getpid()) + "-" +
            std::to_string(static_cast<int>(GetParam())));
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    fed_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  query::ResultTable pooled(const std::string& text) { return testing::pooledTable(*fed_, text); }

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

TEST_P(SurveillanceTest, FederatedWeeklySeriesAndAlarmsEqualPooled) {
  LocalFederationOptions o;
  o.sites = 3;
  o.directory = dir_.string();
  o.rows = 1500;
  o.seed = 15;
  o.aggregation = GetParam();
  o.nodeBinary = TRIALMESH_NODE_BINARY;
  auto fed = LocalFederation::create(o);
  ASSERT_TRUE(fed.isOk()) << fed.status().toString();
  fed_ = std::move(*fed);
  ASSERT_TRUE(fed_->start(30s).isOk());

  auto request =
      query::parseSurveil("surveil(randdt, method = \"c2\", baseline = 5) where sex = \"F\"");
  ASSERT_TRUE(request.isOk()) << request.status().toString();
  ASSERT_TRUE(request->has_value());
  const std::string countQuery = (*request)->countQuery;
  EXPECT_EQ(countQuery, "count where sex = \"F\" by week(randdt)");

  FederatedQueryOptions options;
  options.deadline = 20s;
  auto result = runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy,
                                  countQuery, options);
  ASSERT_TRUE(result.isOk()) << result.status().toString();
  ASSERT_TRUE(result->table.has_value()) << result->refusal;
  EXPECT_EQ(result->aggregation, GetParam());
  fed_->stop();

  const query::ResultTable want = pooled(countQuery);
  // 2021-01-01 (a Friday, ISO 2020-W53) .. 2024-12-31 (2025-W01): 210 weeks.
  ASSERT_EQ(want.rows.size(), 210u);
  EXPECT_EQ(std::get<std::string>(want.rows.front()[0]), "2020-W53");
  EXPECT_EQ(std::get<std::string>(want.rows.back()[0]), "2025-W01");
  ASSERT_EQ(result->table->rows.size(), want.rows.size());
  size_t zeros = 0;
  for (size_t k = 0; k < want.rows.size(); ++k) {
    EXPECT_EQ(result->table->rows[k], want.rows[k]) << "week " << k;
    zeros += want.rows[k][1] == query::ResultValue{int64_t{0}};
  }
  EXPECT_GT(zeros, 0u);  // weeks without cases are present with 0

  auto got = query::applySurveil(*result->table, **request);
  auto ref = query::applySurveil(want, **request);
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  ASSERT_TRUE(ref.isOk());
  EXPECT_EQ(got->rows, ref->rows);
  EXPECT_EQ(got->columns,
            (std::vector<std::string>{"week(randdt)", "count", "upper_bound", "alarm"}));

  // Farrington on the federated series equals Farrington on the pooled one (both variants;
  // b = 3 years back, as 210 weeks hold no 5 years). The same counts query serves them.
  for (const char* method : {"farrington", "farrington_improved"}) {
    auto f = query::parseSurveil(std::string("surveil(randdt, method = \"") + method +
                                 "\", b = 3) where sex = \"F\"");
    ASSERT_TRUE(f.isOk()) << f.status().toString();
    EXPECT_EQ((*f)->countQuery, countQuery);
    auto fg = query::applySurveil(*result->table, **f);
    auto fr = query::applySurveil(want, **f);
    ASSERT_TRUE(fg.isOk()) << fg.status().toString();
    ASSERT_TRUE(fr.isOk());
    EXPECT_EQ(fg->rows, fr->rows) << method;
    size_t bounds = 0;
    for (const auto& row : fg->rows) bounds += std::holds_alternative<double>(row[2]);
    EXPECT_GT(bounds, 20u) << method;  // weeks 160..210 are assessed
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, SurveillanceTest,
                         ::testing::Values(ethics::AggregationMode::kPlain,
                                           ethics::AggregationMode::kSecure));

}  // namespace
}  // namespace trialmesh::node
