// Region scale (issue #15 item 4): a surveillance federation is many small sites. 150
// trialmesh-node processes on 127.0.0.1 in secure mode answer the weekly series, and the
// federated series and its Farrington detection equal the pooled ones. Release builds only
// (tests/e2e/CMakeLists.txt).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "node/coordinator.h"
#include "node/local_federation.h"
#include "pooled_table.h"
#include "query/surveil.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

TEST(RegionScaleTest, OneHundredFiftySecureSitesGiveThePooledSeriesAndAlarms) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("trialmesh-region-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  LocalFederationOptions o;
  o.sites = 150;
  o.rows = 30000;  // 100 to 300 patients per site
  o.seed = 150;
  o.directory = dir.string();
  o.aggregation = ethics::AggregationMode::kSecure;
  o.minSites = 100;  // a region's quorum: most of its sites
  o.nodeBinary = TRIALMESH_NODE_BINARY;
  auto created = LocalFederation::create(o);
  ASSERT_TRUE(created.isOk()) << created.status().toString();
  std::unique_ptr<LocalFederation> fed = std::move(*created);
  Status started = fed->start(240s);
  ASSERT_TRUE(started.isOk()) << started.toString();

  auto request = query::parseSurveil("surveil(randdt, method = \"farrington\", b = 3)");
  ASSERT_TRUE(request.isOk()) << request.status().toString();
  ASSERT_TRUE(request->has_value());
  FederatedQueryOptions options;
  options.deadline = 60s;
  auto result = runFederatedQuery(fed->coordinator(), fed->members(), LocalFederation::kStudy,
                                  (*request)->countQuery, options);
  ASSERT_TRUE(result.isOk()) << result.status().toString();
  ASSERT_TRUE(result->table.has_value()) << result->refusal;
  EXPECT_EQ(result->aggregation, ethics::AggregationMode::kSecure);
  EXPECT_EQ(result->answered(), 150u);
  for (const auto& site : result->sites)
    EXPECT_EQ(site.outcome, SiteOutcomeKind::kAnswered) << site.site << ": " << site.reason;
  fed->stop();

  const query::ResultTable want = testing::pooledTable(*fed, (*request)->countQuery);
  ASSERT_EQ(want.rows.size(), 210u);  // ISO weeks 2020-W53 .. 2025-W01
  EXPECT_EQ(result->table->rows, want.rows);
  auto got = query::applySurveil(*result->table, **request);
  auto ref = query::applySurveil(want, **request);
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  ASSERT_TRUE(ref.isOk()) << ref.status().toString();
  EXPECT_EQ(got->rows, ref->rows);
  size_t bounds = 0;
  for (const auto& row : got->rows) bounds += std::holds_alternative<double>(row[2]);
  EXPECT_GT(bounds, 20u);  // the weeks with 3 years of history are assessed

  fed.reset();
  if (!HasFailure()) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace trialmesh::node
