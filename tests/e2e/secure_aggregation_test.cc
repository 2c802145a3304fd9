// End-to-end secure aggregation (issue #5; docs/privacy.md): real trialmesh-node processes on
// 127.0.0.1 (LocalFederation), queried through CoordinatorSession as `trialmesh query --study`
// does. The reference is computed independently in the test: each site's own partial, read
// from its store after the federation stopped, merged in plain and encoded with the additive
// layout. Every wait is bounded; the LocalFederation destructor kills what a failing test
// leaves running.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ethics/audit_log.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "query/additive.h"
#include "query/disclosure.h"
#include "query/engine.h"
#include "query/format.h"
#include "query/query.h"
#include "storage/store.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

class SecureAggregationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trialmesh-secagg-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    fed_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  void startFederation(uint32_t sites,
                       const std::function<void(LocalFederationOptions&)>& configure = {}) {
    LocalFederationOptions o;
    o.sites = sites;
    o.directory = dir_.string();
    o.rows = 2000;
    o.seed = 5;
    if (configure) configure(o);
    o.nodeBinary = TRIALMESH_NODE_BINARY;
    auto fed = LocalFederation::create(o);
    ASSERT_TRUE(fed.isOk()) << fed.status().toString();
    fed_ = std::move(*fed);
    Status s = fed_->start(30s);
    ASSERT_TRUE(s.isOk()) << s.toString();
  }
  Result<FederatedResult> query(const std::string& text, FederatedQueryOptions options = {}) {
    options.deadline = 10s;
    return runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, text,
                             options);
  }
  // The partial site `i` computes locally for `text` (its store, read directly; the node must
  // be stopped since RocksDB allows one process per store).
  query::PartialResult localPartial(size_t i, const std::string& text,
                                    std::optional<query::BoundQuery>* boundOut = nullptr) {
    storage::StoreOptions so;
    so.createIfMissing = false;
    auto store = storage::Store::open(fed_->siteDirectory(i) + "/store", so);
    EXPECT_TRUE(store.isOk()) << store.status().toString();
    auto source = (*store)->openDataset(LocalFederation::kDataset);
    EXPECT_TRUE(source.isOk()) << source.status().toString();
    auto parsed = query::parseQuery(text);
    EXPECT_TRUE(parsed.isOk());
    auto bound = query::bindQuery(*parsed, (*source)->dictionary());
    EXPECT_TRUE(bound.isOk()) << bound.status().toString();
    auto partial = query::execute(*bound, **source, {});
    EXPECT_TRUE(partial.isOk()) << partial.status().toString();
    if (boundOut != nullptr) *boundOut = *bound;
    return *partial;
  }
  // Plain merge of the local partials of `sites`.
  query::PartialResult pooled(const std::vector<size_t>& sites, const std::string& text,
                              std::optional<query::BoundQuery>* boundOut = nullptr) {
    query::PartialResult merged = localPartial(sites[0], text, boundOut);
    for (size_t k = 1; k < sites.size(); ++k) {
      Status s = query::mergeInto(merged, localPartial(sites[k], text));
      EXPECT_TRUE(s.isOk()) << s.toString();
    }
    return merged;
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

std::string valueText(const query::ResultValue& v) {
  if (const auto* text = std::get_if<std::string>(&v)) return *text;
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return std::to_string(*d);
  return "NA";
}

bool isSuppressed(const query::ResultValue& v) {
  const auto* text = std::get_if<std::string>(&v);
  return text != nullptr && *text == query::kSuppressedMarker;
}

TEST_F(SecureAggregationTest, SecureResultEqualsPooledAndCoordinatorSeesNoPartial) {
  startFederation(3);
  const std::string text = "count, sum(age), mean(age), sd(age) by arm";
  std::map<std::string, std::vector<crypto::MaskWord>> seen;
  FederatedQueryOptions options;
  options.observeMaskedVector = [&seen](const std::string& site,
                                        std::span<const crypto::MaskWord> words) {
    seen[site].assign(words.begin(), words.end());
  };
  auto r = query(text, options);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->aggregation, ethics::AggregationMode::kSecure);
  EXPECT_EQ(r->approval, "LUNG-7 v1");
  EXPECT_EQ(r->rounds, 1u);
  EXPECT_TRUE(r->dropped.empty());
  ASSERT_EQ(r->answered(), 3u);
  ASSERT_TRUE(r->merged.has_value());
  ASSERT_EQ(seen.size(), 3u);
  auto km = query("km(time, event) by arm");
  ASSERT_TRUE(km.isOk()) << km.status().toString();
  ASSERT_TRUE(km->merged.has_value());
  const std::string histText = "hist(age, 0, 120, 10) by sex";
  auto hist = query(histText);
  ASSERT_TRUE(hist.isOk()) << hist.status().toString();
  fed_->stop();

  std::optional<query::BoundQuery> bound;
  const query::PartialResult expected = pooled({0, 1, 2}, text, &bound);
  const query::PartialResult& got = *r->merged;
  EXPECT_EQ(got.rowsScanned, expected.rowsScanned);
  EXPECT_EQ(got.rowsScanned, 2000u);
  EXPECT_EQ(got.cellRows, expected.cellRows);
  ASSERT_EQ(got.stats.size(), expected.stats.size());
  EXPECT_EQ(got.stats[0].n, expected.stats[0].n);            // count: exact
  EXPECT_EQ(got.stats[1].intSum, expected.stats[1].intSum);  // integer sum: exact
  for (size_t c = 0; c < expected.shape.cells; ++c) {
    EXPECT_EQ(got.stats[2].n[c], expected.stats[2].n[c]);
    // Reals: fixed point 2^-32 per site plus double rounding (docs/privacy.md, Precision).
    EXPECT_NEAR(got.stats[2].mean[c], expected.stats[2].mean[c],
                1e-12 * std::fabs(expected.stats[2].mean[c]) + 1e-9);
    EXPECT_NEAR(got.stats[3].m2[c], expected.stats[3].m2[c],
                1e-10 * std::fabs(expected.stats[3].m2[c]) + 1e-6);
  }
  const query::PartialResult kmExpected = pooled({0, 1, 2}, "km(time, event) by arm");
  // Times are whole days and the approval's time_bin is 1, so the grid loses nothing.
  EXPECT_EQ(km->merged->stats[0].km, kmExpected.stats[0].km);
  EXPECT_EQ(hist->merged->stats[0].binCounts, pooled({0, 1, 2}, histText).stats[0].binCounts);

  // What the coordinator received: no vector equals its site's encoded partial, and the
  // vectors sum to the encoded pooled partial.
  query::AdditiveOptions layoutOptions;
  layoutOptions.kmTimeBin = 1.0;
  auto layout = query::AdditiveLayout::create(*bound, layoutOptions);
  ASSERT_TRUE(layout.isOk()) << layout.status().toString();
  std::vector<query::AdditiveWord> encodedSum(layout->words(), 0);
  std::vector<query::AdditiveWord> receivedSum(layout->words(), 0);
  for (size_t i = 0; i < 3; ++i) {
    auto encoded = query::encodeAdditive(localPartial(i, text), *layout);
    ASSERT_TRUE(encoded.isOk()) << encoded.status().toString();
    const auto& received = seen.at(fed_->siteName(i));
    ASSERT_EQ(received.size(), encoded->size());
    size_t equalWords = 0;
    for (size_t w = 0; w < received.size(); ++w) {
      equalWords += received[w] == (*encoded)[w] ? 1 : 0;
      encodedSum[w] += (*encoded)[w];
      receivedSum[w] += received[w];
    }
    // A uniform 128-bit word matches by chance with probability 2^-128.
    EXPECT_EQ(equalWords, 0u) << fed_->siteName(i);
    // Masked words look uniform: about half of their top bits are set.
    size_t topBits = 0;
    for (auto w : received) topBits += static_cast<size_t>(w >> 127);
    EXPECT_GT(topBits, received.size() / 5) << fed_->siteName(i);
  }
  EXPECT_TRUE(receivedSum == encodedSum);
}

TEST_F(SecureAggregationTest, SiteKilledAfterFirstRoundIsDroppedAndTheRestAnswer) {
  startFederation(4, [](LocalFederationOptions& o) { o.minSites = 3; });
  const std::string victim = fed_->siteName(3);
  int signedFor = 0;
  FederatedQueryOptions options;
  options.adjustRequest = [&](const Member& site, protocol::QueryRequestFields& fields) {
    EXPECT_EQ(fields.aggregation, protocol::wire::Aggregation::SECURE);
    // The round has started (participant list fixed) when the victim's copy is signed.
    if (site.name == victim && signedFor++ == 0) fed_->siteProcess(3)->signal(SIGKILL);
  };
  auto r = query("count, mean(age) by arm", options);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->rounds, 2u);
  ASSERT_EQ(r->dropped.size(), 1u);
  EXPECT_EQ(r->dropped[0], victim);
  EXPECT_EQ(r->answered(), 3u);
  ASSERT_TRUE(r->merged.has_value());
  fed_->stop();
  const query::PartialResult expected = pooled({0, 1, 2}, "count, mean(age) by arm");
  EXPECT_EQ(r->merged->stats[0].n, expected.stats[0].n);
  EXPECT_EQ(r->merged->rowsScanned, expected.rowsScanned);
}

TEST_F(SecureAggregationTest, BelowQuorumIsRefusedNamingTheRule) {
  startFederation(3);
  fed_->siteProcess(2)->stop(5s);
  auto r = query("count by arm");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_FALSE(r->table.has_value());
  EXPECT_FALSE(r->merged.has_value());
  EXPECT_NE(r->refusal.find("only 2 of 3 sites answered; approval LUNG-7 v1 requires at least 3"),
            std::string::npos)
      << r->refusal;
  EXPECT_NE(r->refusal.find(fed_->siteName(2)), std::string::npos);
}

TEST_F(SecureAggregationTest, ReplayedRoundIdIsRefused) {
  startFederation(3);
  const std::vector<uint8_t> fixed(16, 0x5a);
  FederatedQueryOptions options;
  options.adjustRequest = [&](const Member&, protocol::QueryRequestFields& fields) {
    fields.nonce = fixed;
  };
  auto first = query("count by arm", options);
  ASSERT_TRUE(first.isOk()) << first.status().toString();
  ASSERT_TRUE(first->table.has_value()) << first->refusal;
  auto replay = query("count by arm", options);
  ASSERT_TRUE(replay.isOk()) << replay.status().toString();
  EXPECT_FALSE(replay->table.has_value());
  for (const auto& s : replay->sites) {
    EXPECT_EQ(s.outcome, SiteOutcomeKind::kRefused);
    EXPECT_NE(s.reason.find("nonce already used"), std::string::npos) << s.reason;
  }
}

TEST_F(SecureAggregationTest, SiteRefusesAModeOtherThanItsApprovals) {
  startFederation(3);
  FederatedQueryOptions options;
  options.adjustRequest = [](const Member&, protocol::QueryRequestFields& fields) {
    fields.aggregation = protocol::wire::Aggregation::PLAIN;
    fields.participants.clear();
  };
  auto r = query("count by arm", options);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_FALSE(r->table.has_value());
  for (const auto& s : r->sites) {
    EXPECT_NE(
        s.reason.find("approval LUNG-7 v1 requires secure aggregation; the query asked for plain"),
        std::string::npos)
        << s.reason;
  }
}

TEST_F(SecureAggregationTest, MinMaxAreRefusedInSecureMode) {
  startFederation(3);
  auto r = query("min(age)");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_FALSE(r->table.has_value());
  EXPECT_NE(r->refusal.find("min/max reveal single values"), std::string::npos) << r->refusal;
}

TEST_F(SecureAggregationTest, PlainApprovalStillWorks) {
  startFederation(
      2, [](LocalFederationOptions& o) { o.aggregation = ethics::AggregationMode::kPlain; });
  auto r = query("count, min(age) by arm");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->aggregation, ethics::AggregationMode::kPlain);
  EXPECT_EQ(r->rounds, 0u);
  EXPECT_EQ(r->answered(), 2u);
  uint64_t scanned = 0;
  for (const auto& s : r->sites) scanned += s.rowsScanned;
  EXPECT_EQ(scanned, 2000u);  // plain: each site's own row count is visible
}

TEST_F(SecureAggregationTest, TwoSiteSecureFederationWithMinSitesTwo) {
  startFederation(2);  // LocalFederation: min_sites = 2 for two sites
  auto r = query("count by arm");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->aggregation, ethics::AggregationMode::kSecure);
  EXPECT_EQ(r->merged->rowsScanned, 2000u);
}

TEST_F(SecureAggregationTest, DisclosureControlSuppressesSmallCellsWithSecondary) {
  constexpr uint32_t kMin = 10;
  startFederation(3, [](LocalFederationOptions& o) { o.minCellSize = kMin; });
  // Two-way tables over few old subjects: the generated data (seed 5) has cells below 10 in
  // the first of these; the others are fallbacks should the generator change.
  const std::vector<std::string> candidates = {"count by ecog, sex where age >= 60",
                                               "count by ecog, sex where age >= 70",
                                               "count by ecog, sex where age >= 80"};
  std::vector<FederatedResult> results;
  for (const auto& text : candidates) {
    auto r = query(text);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    results.push_back(std::move(*r));
  }
  fed_->stop();
  bool checked = false;
  for (size_t q = 0; q < candidates.size() && !checked; ++q) {
    const query::PartialResult expected = pooled({0, 1, 2}, candidates[q]);
    // The reference decides what must be hidden: cells with 0 < n < kMin.
    size_t small = 0;
    for (uint64_t n : expected.stats[0].n) small += (n > 0 && n < kMin) ? 1 : 0;
    if (small == 0) continue;
    checked = true;
    const FederatedResult& r = results[q];
    ASSERT_TRUE(r.table.has_value());
    EXPECT_EQ(r.disclosure.primaryCells, small) << candidates[q];
    // The generated data puts one small cell in a line of larger ones, which needs secondary
    // suppression (the first candidate: ecog 4 among older subjects).
    EXPECT_GE(r.disclosure.secondaryCells, 1u) << query::formatTable(*r.table);
    const query::ResultTable& t = *r.table;
    auto column = [&t](const std::string& name) {
      return static_cast<size_t>(std::find(t.columns.begin(), t.columns.end(), name) -
                                 t.columns.begin());
    };
    const size_t first = column("ecog"), second = column("sex"), count = column("count");
    ASSERT_LT(first, t.columns.size()) << query::formatTable(t);
    ASSERT_LT(second, t.columns.size());
    ASSERT_LT(count, t.columns.size());
    // Every small cell is hidden, and no line (row or column of the two-way table) holds
    // exactly one hidden cell, so no margin gives one back.
    std::map<std::string, int> hiddenPerFirst, hiddenPerSecond;
    size_t hidden = 0;
    for (const auto& row : t.rows) {
      const std::string a = valueText(row[first]);
      const std::string b = valueText(row[second]);
      const bool h = isSuppressed(row[count]);
      hiddenPerFirst[a] += h ? 1 : 0;
      hiddenPerSecond[b] += h ? 1 : 0;
      hidden += h ? 1 : 0;
      if (const auto* n = std::get_if<int64_t>(&row[count])) {
        EXPECT_TRUE(*n == 0 || *n >= static_cast<int64_t>(kMin)) << a << " x " << b << ": " << *n;
      }
    }
    EXPECT_EQ(hidden, r.disclosure.suppressedCells());
    EXPECT_GT(hidden, small - 1);
    for (const auto& [level, k] : hiddenPerFirst) EXPECT_NE(k, 1) << level;
    for (const auto& [level, k] : hiddenPerSecond) EXPECT_NE(k, 1) << level;
    bool noted = false;
    for (const auto& note : t.notes) noted = noted || note.find("suppress") != std::string::npos;
    EXPECT_TRUE(noted);
  }
  EXPECT_TRUE(checked) << "no candidate query has a cell below " << kMin;
}

TEST_F(SecureAggregationTest, SecureDpChargesTheBudgetAndRefusesBeyondIt) {
  startFederation(3, [](LocalFederationOptions& o) {
    o.aggregation = ethics::AggregationMode::kSecureDp;
    o.dpEpsilonPerQuery = 0.5;
    o.dpBudget = 1.5;
  });
  // A survival curve under secure-dp: sites and coordinator build the same noisy layout (km
  // counts in two runs, never paired), so it decodes; it spends 0.5 of the budget.
  auto km = query("km(time, event) by arm");
  ASSERT_TRUE(km.isOk()) << km.status().toString();
  ASSERT_TRUE(km->merged.has_value()) << km->refusal;
  EXPECT_EQ(km->merged->stats[0].km.size(), 2u);
  EXPECT_FALSE(km->merged->stats[0].km[0].empty());
  std::vector<uint64_t> counts;
  for (int i = 0; i < 2; ++i) {
    auto r = query("count by arm");
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    ASSERT_TRUE(r->merged.has_value()) << r->refusal;
    EXPECT_EQ(r->aggregation, ethics::AggregationMode::kSecureDp);
    counts.push_back(r->merged->stats[0].n[0]);
  }
  auto over = query("count by arm");
  ASSERT_TRUE(over.isOk()) << over.status().toString();
  EXPECT_FALSE(over->table.has_value());
  for (const auto& s : over->sites) {
    EXPECT_NE(s.reason.find("privacy budget of LUNG-7 for coordinator"), std::string::npos)
        << s.reason;
    EXPECT_NE(s.reason.find("exhausted: spent 1.5 of 1.5"), std::string::npos) << s.reason;
  }
  fed_->stop();
  // Each site's audit log holds one query decision per query and, next to it, one budget entry
  // per charge (three charged, the fourth refused), so a board counting queries counts four.
  for (size_t site = 0; site < 3; ++site) {
    auto stored = ethics::AuditLog::readAllUnchecked(fed_->siteAuditDir(site));
    ASSERT_TRUE(stored.isOk()) << stored.status().toString();
    size_t decisions = 0;
    std::vector<ethics::BudgetChargeEvent> charges;
    for (const auto& s : *stored) {
      auto e =
          ethics::decodeEntry({reinterpret_cast<const uint8_t*>(s.bytes.data()), s.bytes.size()});
      ASSERT_TRUE(e.isOk()) << e.status().toString();
      if (e->kind == ethics::EntryKind::kQuery) ++decisions;
      if (e->kind == ethics::EntryKind::kPrivacyBudgetCharged)
        charges.push_back(std::get<ethics::BudgetChargeEvent>(e->body));
    }
    EXPECT_EQ(decisions, 4u) << "site " << site;
    ASSERT_EQ(charges.size(), 4u) << "site " << site;
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_TRUE(charges[i].charged);
      EXPECT_EQ(charges[i].epsilon, 0.5);
      EXPECT_DOUBLE_EQ(charges[i].spent, 0.5 * static_cast<double>(i + 1));
      EXPECT_EQ(charges[i].budget, 1.5);
      EXPECT_EQ(charges[i].study, "LUNG-7");
      EXPECT_EQ(charges[i].protocolVersion, 1u);
    }
    EXPECT_FALSE(charges[3].charged);
    EXPECT_NE(charges[3].reason.find("exhausted: spent 1.5 of 1.5"), std::string::npos)
        << charges[3].reason;
  }
  const query::PartialResult expected = pooled({0, 1, 2}, "count by arm");
  // Discrete Laplace with scale 1 / 0.5 = 2: |noise| > 60 has probability below 1e-13.
  for (uint64_t c : counts) {
    EXPECT_LT(
        std::llabs(static_cast<long long>(c) - static_cast<long long>(expected.stats[0].n[0])), 60);
  }
}

}  // namespace
}  // namespace trialmesh::node
