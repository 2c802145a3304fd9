#include "node/config.h"

#include <gtest/gtest.h>

namespace trialmesh::node {
namespace {

std::string key() { return crypto::generateIdentity().pub.toText(); }

std::string membersText(const std::string& siteKey, const std::string& coordKey) {
  return "federation = \"sichuan-chongqing-lung\"\n"
         "[[member]]\nname = \"west-china\"\nrole = \"site\"\npublic_key = \"" +
         siteKey +
         "\"\naddress = \"127.0.0.1:7401\"\n"
         "[[member]]\nname = \"alice\"\nrole = \"coordinator\"\npublic_key = \"" +
         coordKey + "\"\n";
}

TEST(MembersFile, ParsesMembersRolesAndAddresses) {
  const std::string sk = key(), ck = key();
  auto m = parseMembers(membersText(sk, ck), "members.toml");
  ASSERT_TRUE(m.isOk()) << m.status().toString();
  EXPECT_EQ(m->federation, "sichuan-chongqing-lung");
  ASSERT_EQ(m->members.size(), 2u);
  EXPECT_EQ(m->members[0].role, Role::kSite);
  EXPECT_EQ(m->members[0].address, "127.0.0.1:7401");
  EXPECT_EQ(m->members[1].role, Role::kCoordinator);
  EXPECT_EQ(m->members[1].publicKey.toText(), ck);
  EXPECT_EQ(m->sitesOf("LUNG-7").size(), 1u);
  EXPECT_EQ(m->findByKey(m->members[1].publicKey), &m->members[1]);
}

TEST(MembersFile, ErrorsNameFileMemberAndKey) {
  const std::string sk = key(), ck = key();
  std::string text = membersText(sk, ck);
  auto typo = parseMembers(text + "[[member]]\nname = \"x\"\nrole = \"site\"\npublickey = \"a\"\n",
                           "members.toml");
  EXPECT_EQ(typo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(typo.status().message().find("members.toml: member[3]:"), std::string::npos)
      << typo.status().message();
  EXPECT_NE(typo.status().message().find("unknown key 'publickey'"), std::string::npos);

  std::string badKey = ck;
  badKey[10] = badKey[10] == 'a' ? 'b' : 'a';
  auto mistyped = parseMembers(membersText(sk, badKey), "members.toml");
  EXPECT_NE(mistyped.status().message().find("member[2] (name 'alice'): public_key:"),
            std::string::npos)
      << mistyped.status().message();

  auto role = parseMembers(
      "federation = \"f\"\n[[member]]\nname = \"a\"\nrole = \"admin\"\n"
      "public_key = \"" +
          ck + "\"\n",
      "m.toml");
  EXPECT_NE(role.status().message().find("role 'admin' must be site, coordinator or ethics-board"),
            std::string::npos);

  auto noAddress = parseMembers(
      "federation = \"f\"\n[[member]]\nname = \"a\"\nrole = \"site\"\n"
      "public_key = \"" +
          sk + "\"\n",
      "m.toml");
  EXPECT_NE(noAddress.status().message().find("a site needs address"), std::string::npos);

  auto dupKey = parseMembers(membersText(sk, sk), "m.toml");
  EXPECT_NE(dupKey.status().message().find("already used by another member"), std::string::npos);

  auto syntax = parseMembers("federation = \n", "m.toml");
  EXPECT_NE(syntax.status().message().find("m.toml:1:"), std::string::npos)
      << syntax.status().message();
}

const char* kNodeToml = R"(
name = "west-china"
identity = "west-china.key"
listen = "127.0.0.1:7401"
data_dir = "store"
members = "../members.toml"
ops_listen = "127.0.0.1:9401"
[limits]
max_concurrent_queries = 4
[[dataset]]
study = "LUNG-7"
name = "lung7"
)";

TEST(NodeConfig, ParsesWithDefaultsAndResolvesPaths) {
  auto c = parseNodeConfig(kNodeToml, "/etc/tm/node.toml", "/etc/tm");
  ASSERT_TRUE(c.isOk()) << c.status().toString();
  EXPECT_EQ(c->identityPath, "/etc/tm/west-china.key");
  EXPECT_EQ(c->dataDir, "/etc/tm/store");
  EXPECT_EQ(c->membersPath, "/etc/members.toml");
  EXPECT_EQ(c->limits.maxConcurrentQueries, 4u);
  EXPECT_EQ(c->limits.maxConnections, 64u);           // default
  EXPECT_EQ(c->limits.maxMessageBytes, 16ull << 20);  // default
  EXPECT_EQ(c->limits.auditRefusalsPerMinute, 20u);   // default
  EXPECT_EQ(c->logFormat, "plain");
  ASSERT_EQ(c->datasets.size(), 1u);
  EXPECT_EQ(c->datasets[0].dataset, "lung7");
}

TEST(NodeConfig, RefusesUnknownKeysAndBadValues) {
  auto unknown = parseNodeConfig("colour = \"blue\"" + std::string(kNodeToml), "node.toml", ".");
  EXPECT_NE(unknown.status().message().find("node.toml:1: unknown key 'colour'"), std::string::npos)
      << unknown.status().message();
  std::string t = kNodeToml;
  auto range = parseNodeConfig(
      t.replace(t.find("max_concurrent_queries = 4"), 26, "max_concurrent_queries = 0"),
      "node.toml", ".");
  EXPECT_NE(range.status().message().find(
                "node.toml: [limits]:9: key 'max_concurrent_queries' = 0 is outside 1..10000"),
            std::string::npos)
      << range.status().message();
  std::string ta = kNodeToml;
  ta.insert(ta.find("max_concurrent_queries = 4"), "audit_refusals_per_minute = 10001\n");
  auto refusals = parseNodeConfig(ta, "node.toml", ".");
  EXPECT_NE(refusals.status().message().find(
                "key 'audit_refusals_per_minute' = 10001 is outside 0..10000"),
            std::string::npos)
      << refusals.status().message();
  std::string tb = kNodeToml;
  tb.insert(tb.find("max_concurrent_queries = 4"), "audit_refusals_per_minute = 0\n");
  auto none = parseNodeConfig(tb, "node.toml", ".");
  ASSERT_TRUE(none.isOk()) << none.status().toString();
  EXPECT_EQ(none->limits.auditRefusalsPerMinute, 0u);
  std::string t2 = kNodeToml;
  auto port = parseNodeConfig(t2.replace(t2.find("127.0.0.1:7401"), 14, "127.0.0.1:99999"),
                              "node.toml", ".");
  EXPECT_NE(port.status().message().find("port '99999' must be a number 0..65535"),
            std::string::npos)
      << port.status().message();
  std::string t3 = kNodeToml;
  auto fmt = parseNodeConfig("log_format = \"xml\"" + t3, "node.toml", ".");
  EXPECT_NE(fmt.status().message().find("log_format 'xml' must be"), std::string::npos)
      << fmt.status().message();
  auto noDataset = parseNodeConfig(
      "name = \"a\"\nidentity = \"k\"\nlisten = \"127.0.0.1:1\"\ndata_dir = \"d\"\n"
      "members = \"m\"\n",
      "node.toml", ".");
  EXPECT_NE(noDataset.status().message().find("needs at least one [[dataset]]"), std::string::npos);
}

}  // namespace
}  // namespace trialmesh::node
