// The organiser's signature over the members file (node/members_signature.h): a signed file
// loads; any changed byte, another signer, a malformed or missing .sig is refused with a reason
// the reader can act on; without a configured signer nothing is checked.
#include "node/members_signature.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "crypto/hash.h"

namespace trialmesh::node {
namespace {

namespace fs = std::filesystem;

class MembersSignatureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("trialmesh-members-sig-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "members.toml").string();
    text_ =
        "federation = \"sichuan-chongqing\"\n\n[[member]]\nname = \"west-china\"\n"
        "role = \"site\"\npublic_key = \"" +
        site_.pub.toText() +
        "\"\naddress = \"127.0.0.1:7401\"\n\n[[member]]\n"
        "name = \"coord\"\nrole = \"coordinator\"\npublic_key = \"" +
        coordinator_.pub.toText() + "\"\n";
    write(path_, text_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static void write(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  }
  void signAs(const crypto::Identity& who) {
    write(membersSignaturePath(path_), signMembersFile(who, text_));
  }
  void expectRefused(const std::string& needle) {
    auto m = loadMembers(path_, organiser_.pub);
    ASSERT_FALSE(m.isOk()) << "accepted; expected: " << needle;
    EXPECT_EQ(m.status().code(), StatusCode::kPermissionDenied) << m.status().toString();
    EXPECT_NE(m.status().message().find(needle), std::string::npos) << m.status().toString();
  }

  fs::path dir_;
  std::string path_, text_;
  crypto::Identity organiser_ = crypto::generateIdentity();
  crypto::Identity site_ = crypto::generateIdentity();
  crypto::Identity coordinator_ = crypto::generateIdentity();
};

TEST_F(MembersSignatureTest, ASignedFileLoads) {
  signAs(organiser_);
  auto m = loadMembers(path_, organiser_.pub);
  ASSERT_TRUE(m.isOk()) << m.status().toString();
  EXPECT_EQ(m->federation, "sichuan-chongqing");
  EXPECT_EQ(m->members.size(), 2u);
}

TEST_F(MembersSignatureTest, AnyChangedByteIsRefused) {
  signAs(organiser_);
  // A coordinator turned into an ethics board, a site's key swapped, a comment added: each
  // changes what was signed.
  std::string raised = text_;
  raised.replace(raised.find("role = \"coordinator\""), 20, "role = \"ethics-board\"");
  std::string swapped = text_;
  const std::string intruder = crypto::generateIdentity().pub.toText();
  swapped.replace(swapped.find(site_.pub.toText()), intruder.size(), intruder);
  for (const std::string& changed : {raised, swapped, text_ + "# harmless?\n"}) {
    write(path_, changed);
    expectRefused("does not match the file: it was changed after it was signed");
  }
  write(path_, text_);
  EXPECT_TRUE(loadMembers(path_, organiser_.pub).isOk());
}

TEST_F(MembersSignatureTest, AnotherSignerIsRefusedAndNamed) {
  signAs(coordinator_);
  expectRefused("signed by " + coordinator_.pub.toText() + ", not by the members_signer " +
                organiser_.pub.toText());
}

TEST_F(MembersSignatureTest, AForgedSignatureByteIsRefused) {
  signAs(organiser_);
  std::ifstream in(membersSignaturePath(path_));
  std::string line;
  std::getline(in, line);
  line.back() = line.back() == '0' ? '1' : '0';  // last hex digit of the signature
  write(membersSignaturePath(path_), line + "\n");
  expectRefused("does not match the file");
}

TEST_F(MembersSignatureTest, MissingOrMalformedSignatureIsRefused) {
  expectRefused("members_signer is set, so the members file needs the organiser's signature");
  write(membersSignaturePath(path_), "not a signature\n");
  expectRefused("not a members signature");
  write(membersSignaturePath(path_),
        "trialmesh-members-signature 2 " + organiser_.pub.toText() + " 00\n");
  expectRefused("format version '2' is not supported");
  write(membersSignaturePath(path_),
        "trialmesh-members-signature 1 " + organiser_.pub.toText() + " abcz\n");
  expectRefused("is not 128 hex digits");
}

TEST_F(MembersSignatureTest, WithoutASignerNothingIsChecked) {
  write(membersSignaturePath(path_), "garbage\n");
  auto m = loadMembers(path_, std::nullopt);
  EXPECT_TRUE(m.isOk()) << m.status().toString();
}

TEST(Hex, RoundTripsAndRefusesNonHex) {
  const std::vector<uint8_t> bytes = {0x00, 0x7f, 0xab, 0xff};
  auto back = crypto::fromHex(crypto::toHex(bytes));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(*back, bytes);
  EXPECT_EQ(*crypto::fromHex("ABff"), (std::vector<uint8_t>{0xab, 0xff}));
  EXPECT_FALSE(crypto::fromHex("abc").isOk());
  auto bad = crypto::fromHex("ab0g");
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("not a hex digit"), std::string::npos);
}

}  // namespace
}  // namespace trialmesh::node
