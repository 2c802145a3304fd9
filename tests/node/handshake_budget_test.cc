// The unauthenticated-connection budget (issue #12 item 2) and the refusal log throttle.
#include "node/handshake_budget.h"

#include <gtest/gtest.h>

namespace trialmesh::node {
namespace {

TEST(HandshakeBudgetTest, PerAddressLimitRefusesOnlyThatAddress) {
  HandshakeBudget b(100, 3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(b.admit("10.0.0.9").admitted);
  const auto refused = b.admit("10.0.0.9");
  EXPECT_FALSE(refused.admitted);
  EXPECT_NE(refused.refusal.find("limits.max_unauthenticated_per_address = 3"), std::string::npos)
      << refused.refusal;
  EXPECT_NE(refused.refusal.find("10.0.0.9"), std::string::npos);
  // Another host is not affected.
  const auto other = b.admit("10.0.0.1");
  EXPECT_TRUE(other.admitted);
  EXPECT_FALSE(other.evict.has_value());
  EXPECT_EQ(b.pending(), 4u);
  EXPECT_EQ(b.pendingFrom("10.0.0.9"), 3u);
}

TEST(HandshakeBudgetTest, FullBudgetEvictsTheOldestAndReleaseFreesSlots) {
  HandshakeBudget b(3, 10);
  const uint64_t first = b.admit("a").id;
  const uint64_t second = b.admit("b").id;
  b.admit("c");
  const auto d = b.admit("d");
  ASSERT_TRUE(d.admitted);
  ASSERT_TRUE(d.evict.has_value());
  EXPECT_EQ(*d.evict, first);
  EXPECT_EQ(b.pending(), 3u);
  EXPECT_EQ(b.pendingFrom("a"), 0u);
  b.release(second);
  b.release(second);  // idempotent
  EXPECT_EQ(b.pending(), 2u);
  const auto e = b.admit("e");
  EXPECT_TRUE(e.admitted);
  EXPECT_FALSE(e.evict.has_value());
}

TEST(HandshakeBudgetTest, HostOfAddress) {
  EXPECT_EQ(hostOfAddress("127.0.0.1:5123"), "127.0.0.1");
  EXPECT_EQ(hostOfAddress("[::1]:5123"), "::1");
  EXPECT_EQ(hostOfAddress("unknown"), "unknown");
}

TEST(LogThrottleTest, OneLinePerIntervalWithTheSuppressedCount) {
  LogThrottle t(1000);
  uint64_t suppressed = 99;
  ASSERT_TRUE(t.shouldLog(0, suppressed));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 1; i <= 500; ++i) EXPECT_FALSE(t.shouldLog(i, suppressed));
  ASSERT_TRUE(t.shouldLog(1000, suppressed));
  EXPECT_EQ(suppressed, 500u);
  ASSERT_TRUE(t.shouldLog(5000, suppressed));
  EXPECT_EQ(suppressed, 0u);
}

}  // namespace
}  // namespace trialmesh::node
