// previous_keys in the members file (issue #13 item 3): parsing, which key of a member is
// accepted when, the errors naming the member and the key's state, and the signed members file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "node/config.h"
#include "node/members_signature.h"

namespace trialmesh::node {
namespace {

constexpr int64_t kRetired = 1'793'491'200'000;  // 2026-11-01T00:00:00Z
constexpr int64_t kRevoked = 1'792'483'200'000;  // 2026-10-20T08:00:00Z

std::string siteWithPrevious(const std::string& current, const std::string& previousKeys) {
  return "federation = \"f\"\n[[member]]\nname = \"west\"\nrole = \"site\"\npublic_key = \"" +
         current + "\"\naddress = \"127.0.0.1:7401\"\nprevious_keys = " + previousKeys + "\n";
}

class MemberKeysTest : public ::testing::Test {
 protected:
  crypto::Identity now_ = crypto::generateIdentity();
  crypto::Identity old_ = crypto::generateIdentity();
  crypto::Identity older_ = crypto::generateIdentity();
};

TEST(UtcTime, ParsesAndFormatsRfc3339Utc) {
  auto t = parseUtcTime("2026-11-01T00:00:00Z");
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  EXPECT_EQ(*t, kRetired);  // date -u -d 2026-11-01T00:00:00Z +%s = 1793491200
  EXPECT_EQ(formatUtcTime(kRevoked), "2026-10-20T08:00:00Z");
  for (const char* bad :
       {"2026-11-01", "2026-11-01T00:00:00", "2026-11-01T00:00:00+08:00", "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z", "2026-11-01 00:00:00Z", "2026-11-01T00:00:00.5Z"}) {
    EXPECT_FALSE(parseUtcTime(bad).isOk()) << bad;
  }
}

TEST_F(MemberKeysTest, PreviousKeysParseWithRetirementAndRevocation) {
  auto m =
      parseMembers(siteWithPrevious(now_.pub.toText(),
                                    "[{ key = \"" + old_.pub.toText() +
                                        "\", retired = \"2026-11-01T00:00:00Z\" }, { key = \"" +
                                        older_.pub.toText() +
                                        "\", retired = \"2026-11-01T00:00:00Z\", "
                                        "revoked_from = \"2026-10-20T08:00:00Z\" }]"),
                   "members.toml");
  ASSERT_TRUE(m.isOk()) << m.status().toString();
  const Member& w = m->members[0];
  ASSERT_EQ(w.previousKeys.size(), 2u);
  EXPECT_EQ(w.previousKeys[0].key, old_.pub);
  EXPECT_EQ(w.previousKeys[0].retiredMs, kRetired);
  EXPECT_FALSE(w.previousKeys[0].revokedFromMs);
  EXPECT_EQ(*w.previousKeys[1].revokedFromMs, kRevoked);
  EXPECT_EQ(w.previousKeys[1].refusedFromMs(), kRevoked);
  EXPECT_EQ(w.allKeys().size(), 3u);
  EXPECT_EQ(m->keys().size(), 3u);  // the handshake lets all through; checkKey decides

  // Before retirement: current and previous accepted; the revoked one only before revoked_from.
  EXPECT_EQ(m->keyState(now_.pub, kRetired + 1).second, KeyState::kCurrent);
  EXPECT_EQ(m->keyState(old_.pub, kRetired - 1).second, KeyState::kPrevious);
  EXPECT_EQ(m->keyState(old_.pub, kRetired).second, KeyState::kRetired);
  EXPECT_EQ(m->keyState(older_.pub, kRevoked - 1).second, KeyState::kPrevious);
  EXPECT_EQ(m->keyState(older_.pub, kRevoked).second, KeyState::kRevoked);
  EXPECT_EQ(m->keyState(crypto::generateIdentity().pub, 0).second, KeyState::kUnknown);
  EXPECT_EQ(w.keysAcceptedAt(kRetired - 1).size(), 2u);  // current + old (older revoked)
  EXPECT_EQ(w.keysAcceptedAt(kRetired).size(), 1u);
  EXPECT_EQ(w.keysAcceptedAt(kRevoked - 1).size(), 3u);

  auto accepted = m->checkKey(old_.pub, kRetired - 1, "connection");
  ASSERT_TRUE(accepted.isOk()) << accepted.status().toString();
  EXPECT_EQ((*accepted)->name, "west");
}

TEST_F(MemberKeysTest, RefusalsNameTheMemberAndTheKeyState) {
  auto m =
      parseMembers(siteWithPrevious(now_.pub.toText(),
                                    "[{ key = \"" + old_.pub.toText() +
                                        "\", retired = \"2026-11-01T00:00:00Z\" }, { key = \"" +
                                        older_.pub.toText() +
                                        "\", retired = \"2026-11-01T00:00:00Z\", "
                                        "revoked_from = \"2026-10-20T08:00:00Z\" }]"),
                   "members.toml");
  ASSERT_TRUE(m.isOk()) << m.status().toString();
  auto retired = m->checkKey(old_.pub, kRetired, "connection refused");
  ASSERT_FALSE(retired.isOk());
  EXPECT_EQ(retired.status().code(), StatusCode::kPermissionDenied);
  const std::string r = retired.status().message();
  EXPECT_NE(r.find("connection refused: key " + old_.pub.toText() +
                   " of member 'west' was "
                   "retired at 2026-11-01T00:00:00Z"),
            std::string::npos)
      << r;
  EXPECT_NE(r.find("now uses " + now_.pub.toText()), std::string::npos) << r;

  auto revoked = m->checkKey(older_.pub, kRevoked + 5, "query signer");
  ASSERT_FALSE(revoked.isOk());
  EXPECT_NE(revoked.status().message().find(
                "of member 'west' is revoked (suspected compromise) from 2026-10-20T08:00:00Z"),
            std::string::npos)
      << revoked.status().message();

  auto unknown = m->checkKey(crypto::generateIdentity().pub, 0, "connection refused");
  EXPECT_NE(unknown.status().message().find("is not a key of any member of federation 'f'"),
            std::string::npos);

  // The node's own key: its previous key is fine until retirement, then refused with the fix.
  const Member& w = m->members[0];
  EXPECT_TRUE(checkOwnKey(w, old_.pub, "node.key", kRetired - 1).isOk());
  Status late = checkOwnKey(w, old_.pub, "node.key", kRetired);
  EXPECT_NE(late.message().find("retired at 2026-11-01T00:00:00Z: switch to the new key "
                                "(trialmesh rotate-key"),
            std::string::npos)
      << late.message();
  EXPECT_NE(checkOwnKey(w, older_.pub, "node.key", kRevoked).message().find("revoked from"),
            std::string::npos);
  EXPECT_FALSE(checkOwnKey(w, crypto::generateIdentity().pub, "node.key", 0).isOk());
}

TEST_F(MemberKeysTest, BadPreviousKeysAreRefusedWithTheReason) {
  const std::string cur = now_.pub.toText();
  const std::string old = old_.pub.toText();
  struct Case {
    std::string previous;
    std::string fragment;
  } cases[] = {
      {"\"" + old + "\"", "previous_keys must be a list of tables"},
      {"[\"" + old + "\"]", "previous_keys[1]: previous_keys must be a list of tables"},
      {"[{ key = \"" + old + "\" }]", "previous_keys[1]: missing required key 'retired'"},
      {"[{ key = \"" + old + "\", retired = \"2026-11-01\" }]",
       "previous_keys[1]: retired '2026-11-01' is not a UTC time"},
      {"[{ key = \"" + old + "\", retired = \"2026-11-01T00:00:00Z\", revoked_from = \"soon\" }]",
       "previous_keys[1]: revoked_from 'soon' is not a UTC time"},
      {"[{ key = \"" + old + "\", retired = \"2026-11-01T00:00:00Z\", until = \"x\" }]",
       "unknown key 'until'"},
      {"[{ key = \"tmpk1abc\", retired = \"2026-11-01T00:00:00Z\" }]", "previous_keys[1]: key:"},
      {"[{ key = \"" + cur + "\", retired = \"2026-11-01T00:00:00Z\" }]",
       "previous_keys[1]: key " + cur + " is already listed"},
      {"[{ key = \"" + old + "\", retired = \"2026-11-01T00:00:00Z\" }, { key = \"" + old +
           "\", retired = \"2026-12-01T00:00:00Z\" }]",
       "previous_keys[2]: key " + old + " is already listed"},
  };
  for (const Case& c : cases) {
    auto m = parseMembers(siteWithPrevious(cur, c.previous), "members.toml");
    ASSERT_FALSE(m.isOk()) << c.previous;
    EXPECT_NE(m.status().message().find("members.toml: member[1] (name 'west')"), std::string::npos)
        << m.status().message();
    EXPECT_NE(m.status().message().find(c.fragment), std::string::npos)
        << c.previous << " -> " << m.status().message();
  }
  // A key another member uses now cannot be someone's previous key.
  auto shared = parseMembers(
      siteWithPrevious(cur, "[{ key = \"" + old + "\", retired = \"2026-11-01T00:00:00Z\" }]") +
          "[[member]]\nname = \"c\"\nrole = \"coordinator\"\npublic_key = "
          "\"" +
          old + "\"\n",
      "members.toml");
  EXPECT_NE(shared.status().message().find("public_key is already used by another member"),
            std::string::npos)
      << shared.status().message();
}

TEST_F(MemberKeysTest, SignedMembersFileWithPreviousKeysVerifies) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("tm-member-keys-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/members.toml";
  const std::string text =
      siteWithPrevious(now_.pub.toText(), "[{ key = \"" + old_.pub.toText() +
                                              "\", retired = \"2026-11-01T00:00:00Z\" }]");
  std::ofstream(path) << text;
  crypto::Identity organiser = crypto::generateIdentity();
  std::ofstream(membersSignaturePath(path)) << signMembersFile(organiser, text);
  auto m = loadMembers(path, organiser.pub);
  ASSERT_TRUE(m.isOk()) << m.status().toString();
  EXPECT_EQ(m->members[0].previousKeys.size(), 1u);
  // Moving the retirement date is a change the organiser must sign.
  std::string later = text;
  later.replace(later.find("2026-11-01"), 10, "2027-11-01");
  std::ofstream(path) << later;
  EXPECT_FALSE(loadMembers(path, organiser.pub).isOk());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace trialmesh::node
