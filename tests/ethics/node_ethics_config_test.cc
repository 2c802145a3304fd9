// The [ethics] section of node.toml (node/config.h): defaults, both recognition policies and
// the errors a site IT person sees.
#include <gtest/gtest.h>

#include "crypto/identity.h"
#include "node/config.h"

namespace trialmesh::node {
namespace {

const std::string kBase =
    "name = \"west\"\nidentity = \"west.key\"\nlisten = \"127.0.0.1:7401\"\n"
    "data_dir = \"store\"\nmembers = \"members.toml\"\n\n[[dataset]]\nstudy = \"LUNG-7\"\n"
    "name = \"lung7\"\n";

TEST(NodeEthicsConfig, DefaultsLiveUnderDataDirAndRecogniseNobody) {
  auto c = parseNodeConfig(kBase, "node.toml", "/etc/tm");
  ASSERT_TRUE(c.isOk()) << c.status().toString();
  EXPECT_EQ(c->ethics.auditDir, c->dataDir + "/ethics-audit");
  EXPECT_EQ(c->ethics.approvalsDir, c->dataDir + "/ethics-approvals");
  EXPECT_TRUE(c->ethics.recognisedCommittees.empty());
  EXPECT_FALSE(c->ethics.ownCommittee.has_value());
}

TEST(NodeEthicsConfig, StandingListAndCountersignature) {
  const crypto::Identity a = crypto::generateIdentity();
  const crypto::Identity b = crypto::generateIdentity();
  auto standing =
      parseNodeConfig(kBase + "\n[ethics]\nrecognised_committees = [\"" + a.pub.toText() +
                          "\", \"" + b.pub.toText() + "\"]\naudit_dir = \"audit\"\n",
                      "node.toml", "/etc/tm");
  ASSERT_TRUE(standing.isOk()) << standing.status().toString();
  ASSERT_EQ(standing->ethics.recognisedCommittees.size(), 2u);
  EXPECT_EQ(standing->ethics.recognisedCommittees[1], b.pub);
  EXPECT_EQ(standing->ethics.auditDir, "/etc/tm/audit");

  auto own = parseNodeConfig(kBase + "\n[ethics]\nown_committee = \"" + a.pub.toText() + "\"\n",
                             "node.toml", ".");
  ASSERT_TRUE(own.isOk()) << own.status().toString();
  ASSERT_TRUE(own->ethics.ownCommittee.has_value());
  EXPECT_EQ(*own->ethics.ownCommittee, a.pub);
}

TEST(NodeEthicsConfig, PeerCheckIntervalDefaultsToAMinuteAndZeroTurnsItOff) {
  auto def = parseNodeConfig(kBase, "node.toml", ".");
  ASSERT_TRUE(def.isOk()) << def.status().toString();
  EXPECT_EQ(def->ethics.peerCheckIntervalMs, 60'000u);
  auto off = parseNodeConfig(kBase + "\n[ethics]\npeer_check_interval_ms = 0\n", "node.toml", ".");
  ASSERT_TRUE(off.isOk()) << off.status().toString();
  EXPECT_EQ(off->ethics.peerCheckIntervalMs, 0u);
  auto fast =
      parseNodeConfig(kBase + "\n[ethics]\npeer_check_interval_ms = 250\n", "node.toml", ".");
  ASSERT_TRUE(fast.isOk()) << fast.status().toString();
  EXPECT_EQ(fast->ethics.peerCheckIntervalMs, 250u);
  auto negative =
      parseNodeConfig(kBase + "\n[ethics]\npeer_check_interval_ms = -5\n", "node.toml", ".");
  ASSERT_FALSE(negative.isOk());
  EXPECT_NE(negative.status().message().find("'peer_check_interval_ms' = -5 is outside"),
            std::string::npos)
      << negative.status().toString();
}

TEST(NodeEthicsConfig, ErrorsNameTheKey) {
  const crypto::Identity a = crypto::generateIdentity();
  auto both = parseNodeConfig(kBase + "\n[ethics]\nown_committee = \"" + a.pub.toText() +
                                  "\"\nrecognised_committees = [\"" + a.pub.toText() + "\"]\n",
                              "node.toml", ".");
  ASSERT_FALSE(both.isOk());
  EXPECT_NE(both.status().message().find("node.toml: [ethics]: set either recognised_committees"),
            std::string::npos)
      << both.status().toString();

  auto badKey = parseNodeConfig(kBase + "\n[ethics]\nrecognised_committees = [\"tmpk1nope\"]\n",
                                "node.toml", ".");
  ASSERT_FALSE(badKey.isOk());
  EXPECT_NE(badKey.status().message().find("recognised_committees[1]"), std::string::npos)
      << badKey.status().toString();

  // There is no switch to turn enforcement off.
  auto off = parseNodeConfig(kBase + "\n[ethics]\nenforce = false\n", "node.toml", ".");
  ASSERT_FALSE(off.isOk());
  EXPECT_NE(off.status().message().find("unknown key 'enforce'"), std::string::npos)
      << off.status().toString();
}

}  // namespace
}  // namespace trialmesh::node
