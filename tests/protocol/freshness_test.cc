#include "protocol/freshness.h"

#include <gtest/gtest.h>

namespace trialmesh::protocol {
namespace {

constexpr int64_t kStart = 1'700'000'000'000;

QueryRequestFields request(int64_t issued, int64_t lifetime, uint8_t nonceByte) {
  QueryRequestFields f;
  f.nonce = std::vector<uint8_t>(16, nonceByte);
  f.issuedAtMs = issued;
  f.expiresAtMs = issued + lifetime;
  return f;
}

FreshnessPolicy policy() {
  FreshnessPolicy p;
  p.maxQueryAgeMs = 60'000;
  p.clockSkewMs = 1'000;
  p.maxRememberedNonces = 3;
  return p;
}

TEST(ReplayGuard, AcceptsFreshQueryOnceThenRefusesTheReplay) {
  ManualClock clock(kStart);
  ReplayGuard guard(clock, policy());
  EXPECT_TRUE(guard.admit(request(kStart, 10'000, 1)).isOk());
  Status replay = guard.admit(request(kStart, 10'000, 1));
  EXPECT_EQ(replay.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(replay.message().find("nonce already used"), std::string::npos);
}

TEST(ReplayGuard, RefusesExpiredFutureTooLongAndPreStartQueries) {
  ManualClock clock(kStart + 5'000);
  ReplayGuard guard(clock, policy());
  Status expired = guard.admit(request(kStart + 1'000, 2'000, 1));
  EXPECT_NE(expired.message().find("query expired"), std::string::npos) << expired.message();
  Status future = guard.admit(request(kStart + 7'000, 2'000, 2));
  EXPECT_NE(future.message().find("issued in the future"), std::string::npos);
  Status tooLong = guard.admit(request(kStart + 5'000, 120'000, 3));
  EXPECT_NE(tooLong.message().find("max_query_age_ms"), std::string::npos);
  // Issued 3 s before the site started (skew allowance 1 s), still unexpired.
  Status preStart = guard.admit(request(kStart + 2'000, 50'000, 4));
  EXPECT_NE(preStart.message().find("before this site started"), std::string::npos);
  // Within the skew allowance: accepted.
  EXPECT_TRUE(guard.admit(request(kStart + 4'500, 50'000, 5)).isOk());
  EXPECT_EQ(guard.rememberedNonces(), 1u);
}

TEST(ReplayGuard, ForgetsNoncesAfterExpiryAndBoundsMemory) {
  ManualClock clock(kStart);
  ReplayGuard guard(clock, policy());
  EXPECT_TRUE(guard.admit(request(kStart, 1'000, 1)).isOk());
  EXPECT_TRUE(guard.admit(request(kStart, 1'000, 2)).isOk());
  EXPECT_TRUE(guard.admit(request(kStart, 1'000, 3)).isOk());
  Status full = guard.admit(request(kStart, 1'000, 4));
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  clock.advance(1'001);  // all three expired: forgotten, and a replay is refused as expired
  EXPECT_TRUE(guard.admit(request(kStart + 1'001, 1'000, 4)).isOk());
  EXPECT_EQ(guard.rememberedNonces(), 1u);
  Status replay = guard.admit(request(kStart, 1'000, 1));
  EXPECT_NE(replay.message().find("query expired"), std::string::npos);
}

}  // namespace
}  // namespace trialmesh::protocol
