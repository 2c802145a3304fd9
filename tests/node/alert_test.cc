// Signed surveillance alerts (node/alert.h) and the approval's evaluation interval
// (node/surveillance_pace.h), issue #15 item 3.
#include "node/alert.h"

#include <gtest/gtest.h>

#include "node/surveillance_pace.h"
#include "query/query.h"

namespace trialmesh::node {
namespace {

SurveillanceAlert sampleAlert(const crypto::Identity& id) {
  SurveillanceAlert a;
  a.federation = "north";
  a.study = "FLU";
  a.query = "surveil(onset_date, method = \"farrington\") where disease = \"influenza\"";
  a.method = "farrington";
  a.period = "2024-W10";
  a.count = 57;
  a.upperBound = 23.5;
  a.coordinator = id.pub;
  a.raisedAtMs = 1'790'000'000'000;
  return a;
}

std::span<const uint8_t> sigSpan(const SignedAlert& s) {
  return {s.signature.data(), s.signature.size()};
}

TEST(AlertTest, SignsVerifiesAndRefusesAnyChange) {
  const crypto::Identity id = crypto::generateIdentity();
  const SurveillanceAlert a = sampleAlert(id);
  auto s = signAlert(a, id);
  ASSERT_TRUE(s.isOk()) << s.status().toString();
  EXPECT_EQ(s->bytes.rfind("{\"federation\":\"north\",\"study\":\"FLU\",", 0), 0u) << s->bytes;
  auto back = verifyAlert(s->bytes, sigSpan(*s));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(*back, a);

  // Any changed byte of the alert, or of the signature, is refused.
  std::string changed = s->bytes;
  changed[changed.find("57")] = '9';
  auto forged = verifyAlert(changed, sigSpan(*s));
  ASSERT_FALSE(forged.isOk());
  EXPECT_EQ(forged.status().code(), StatusCode::kPermissionDenied);
  SignedAlert badSig = *s;
  badSig.signature[3] ^= 1;
  EXPECT_EQ(verifyAlert(s->bytes, sigSpan(badSig)).status().code(), StatusCode::kPermissionDenied);

  // Signed by another key than the one it names: refused at signing and at verification.
  const crypto::Identity other = crypto::generateIdentity();
  EXPECT_FALSE(signAlert(a, other).isOk());
  SurveillanceAlert claimed = a;
  claimed.coordinator = other.pub;
  auto mixed = signAlert(a, id);
  std::string relabelled = alertJson(claimed);
  EXPECT_EQ(verifyAlert(relabelled, sigSpan(*mixed)).status().code(),
            StatusCode::kPermissionDenied);
}

TEST(AlertTest, NoBoundIsNullAndMalformedAlertsNameTheField) {
  const crypto::Identity id = crypto::generateIdentity();
  SurveillanceAlert a = sampleAlert(id);
  a.upperBound.reset();
  const std::string json = alertJson(a);
  EXPECT_NE(json.find("\"upper_bound\":null"), std::string::npos) << json;
  auto back = parseAlertJson(json);
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_FALSE(back->upperBound.has_value());
  EXPECT_NE(describeAlert(a).find("upper_bound=none"), std::string::npos);

  EXPECT_EQ(parseAlertJson("[1]").status().message(), "surveillance alert: not a JSON object");
  std::string noPeriod = json;
  noPeriod.replace(noPeriod.find("\"period\""), 8, "\"perxod\"");
  EXPECT_EQ(parseAlertJson(noPeriod).status().message(),
            "surveillance alert: field 'period' is missing");
  std::string badCount = json;
  badCount.replace(badCount.find("57"), 2, "\"57\"");
  EXPECT_EQ(parseAlertJson(badCount).status().message(),
            "surveillance alert: field 'count' must be an integer");
  auto s = signAlert(sampleAlert(id), id);
  EXPECT_EQ(verifyAlert(s->bytes, {s->signature.data(), 10}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(SurveillancePaceTest, RefusesAnEvaluationSoonerThanTheApprovalAllows) {
  SurveillancePace pace;
  ethics::Grant grant;
  grant.study = "FLU";
  grant.protocolVersion = 2;
  grant.surveillanceMinIntervalMs = 1000;
  const auto series = query::parseQuery("count where disease = \"influenza\" by week(onset_date)");
  const auto plain = query::parseQuery("count by arm");
  ASSERT_TRUE(series.isOk());
  ASSERT_TRUE(plain.isOk());
  EXPECT_TRUE(SurveillancePace::isSeries(*series));
  EXPECT_FALSE(SurveillancePace::isSeries(*plain));

  const auto t0 = SurveillancePace::Clock::time_point{} + std::chrono::hours(1);
  using std::chrono::milliseconds;
  EXPECT_TRUE(pace.admit(*series, "k", "q", grant, t0).isOk());
  Status soon = pace.admit(*series, "k", "q", grant, t0 + milliseconds(400));
  ASSERT_FALSE(soon.isOk());
  EXPECT_EQ(soon.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(soon.message(),
            "approval FLU v2 allows one evaluation of a surveillance series every 1000 ms "
            "(surveillance_min_interval_ms); this coordinator evaluated 'q' 400 ms ago: retry in "
            "600 ms");
  // A refused attempt does not move the window; the interval after the admitted one does.
  EXPECT_TRUE(pace.admit(*series, "k", "q", grant, t0 + milliseconds(1000)).isOk());
  // Another series (coordinator, participants or text) has its own window.
  EXPECT_TRUE(pace.admit(*series, "k2", "q", grant, t0 + milliseconds(1001)).isOk());
  // Not a series, or no interval in the approval: never limited.
  EXPECT_TRUE(pace.admit(*plain, "k", "q", grant, t0 + milliseconds(1002)).isOk());
  grant.surveillanceMinIntervalMs = 0;
  EXPECT_TRUE(pace.admit(*series, "k", "q", grant, t0 + milliseconds(1003)).isOk());
}

}  // namespace
}  // namespace trialmesh::node
