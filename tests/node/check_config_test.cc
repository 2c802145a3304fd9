// `trialmesh-node --check-config` (node/check_config.h): each wrong input the node refuses at
// start-up is refused by the check too, with the reason, and the check writes nothing and holds
// no port. Configs come from a one-site LocalFederation (not started).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "crypto/identity.h"
#include "node/check_config.h"
#include "node/local_federation.h"
#include "node/members_signature.h"
#include "storage/store.h"

namespace trialmesh::node {
namespace {

namespace fs = std::filesystem;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Modification times and sizes of every file under `dir`: "nothing written" means equal.
std::map<std::string, std::pair<uintmax_t, fs::file_time_type>> snapshot(const std::string& dir) {
  std::map<std::string, std::pair<uintmax_t, fs::file_time_type>> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[e.path().string()] = {e.file_size(), e.last_write_time()};
  }
  return out;
}

class CheckConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("trialmesh-check-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    LocalFederationOptions o;
    o.directory = dir_;
    o.sites = 1;
    o.rows = 60;
    auto fed = LocalFederation::create(o);
    ASSERT_TRUE(fed.isOk()) << fed.status().toString();
    fed_ = std::move(*fed);
    configPath_ = fed_->siteConfigPath(0);
    original_ = readFile(configPath_);
  }
  void TearDown() override {
    fed_.reset();
    fs::remove_all(dir_);
  }

  // Rewrites `key = ...` (first occurrence) in node.toml, or appends the line to the top level.
  void setKey(const std::string& key, const std::string& value) {
    std::string text = readFile(configPath_);
    std::regex line("(^|\\n)" + key + " = [^\\n]*");
    if (std::regex_search(text, line)) {
      text = std::regex_replace(text, line, "$1" + key + " = " + value,
                                std::regex_constants::format_first_only);
    } else {
      text = key + " = " + value + "\n" + text;
    }
    std::ofstream(configPath_, std::ios::trunc) << text;
  }

  Result<std::vector<std::string>> check() {
    auto config = loadNodeConfig(configPath_);
    if (!config) return config.status();
    return checkNodeConfig(*config);
  }

  // The check fails and its message contains `needle`.
  void expectRefused(const std::string& needle) {
    auto r = check();
    ASSERT_FALSE(r.isOk()) << "accepted; expected: " << needle;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().toString();
  }

  std::string siteDir() const { return fed_->siteDirectory(0); }

  std::string dir_;
  std::unique_ptr<LocalFederation> fed_;
  std::string configPath_;
  std::string original_;
};

TEST_F(CheckConfigTest, AGoodConfigPassesAndNothingIsWritten) {
  const auto before = snapshot(dir_);
  auto r = check();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  std::string all;
  for (const auto& l : *r) all += l + "\n";
  EXPECT_NE(all.find("matches the members file"), std::string::npos) << all;
  EXPECT_NE(all.find("dataset 'lung7'"), std::string::npos) << all;
  EXPECT_NE(all.find("can be bound"), std::string::npos) << all;
  EXPECT_EQ(snapshot(dir_), before) << "--check-config wrote to the store or config";
}

TEST_F(CheckConfigTest, RunsBesideAProcessHoldingTheStore) {
  // A serving node holds the store's RocksDB LOCK; the check opens the store read-only.
  auto writer = storage::Store::open(siteDir() + "/store");
  ASSERT_TRUE(writer.isOk()) << writer.status().toString();
  auto r = check();
  EXPECT_TRUE(r.isOk()) << r.status().toString();
}

TEST_F(CheckConfigTest, RefusesAKeyThatIsNotTheMembersFileKey) {
  const std::string other = siteDir() + "/other.key";
  ASSERT_TRUE(crypto::saveIdentity(other, crypto::generateIdentity(), std::nullopt).isOk());
  setKey("identity", "\"" + other + "\"");
  expectRefused("but the members file lists");
}

// During a key rotation (docs/keys.md) the node may still run on a previous key of its member:
// accepted, and said so, until the key's retirement; refused from then on, naming the state.
TEST_F(CheckConfigTest, APreviousKeyIsAcceptedUntilItsRetirement) {
  const std::string members = readFile(fed_->membersPath());
  const std::string oldKey = fed_->members().findByName(fed_->siteName(0))->publicKey.toText();
  const std::string newKey = crypto::generateIdentity().pub.toText();
  auto withRetirement = [&](const std::string& retired) {
    std::string text = members;
    const std::string line = "public_key = \"" + oldKey + "\"";
    const size_t at = text.find(line);
    ASSERT_NE(at, std::string::npos);
    text.replace(at, line.size(),
                 "public_key = \"" + newKey + "\"\nprevious_keys = [{ key = \"" + oldKey +
                     "\", retired = \"" + retired + "\" }]");
    std::ofstream(fed_->membersPath(), std::ios::trunc) << text;
  };
  withRetirement("2999-01-01T00:00:00Z");
  auto r = check();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  std::string all;
  for (const auto& l : *r) all += l + "\n";
  EXPECT_NE(all.find("is a previous key of '" + fed_->siteName(0) +
                     "', accepted until 2999-01-01T00:00:00Z"),
            std::string::npos)
      << all;
  withRetirement("2001-01-01T00:00:00Z");
  expectRefused("this node's key was retired at 2001-01-01T00:00:00Z: switch to the new key");
}

TEST_F(CheckConfigTest, RefusesAWrongPassphrase) {
  const std::string key = siteDir() + "/enc.key";
  // The same key as the members file, re-saved under a passphrase; the config gives another.
  auto plain = crypto::loadIdentity(siteDir() + "/" + fed_->siteName(0) + ".key");
  ASSERT_TRUE(plain.isOk()) << plain.status().toString();
  ASSERT_TRUE(crypto::saveIdentity(key, *plain, std::string("right horse")).isOk());
  std::ofstream(siteDir() + "/pass.txt") << "wrong horse\n";
  setKey("identity", "\"" + key + "\"");
  setKey("identity_passphrase_file", "\"" + siteDir() + "/pass.txt\"");
  auto r = check();
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().toString().find(key), std::string::npos) << r.status().toString();
  // And the right passphrase passes.
  std::ofstream(siteDir() + "/pass.txt", std::ios::trunc) << "right horse\n";
  auto ok = check();
  EXPECT_TRUE(ok.isOk()) << ok.status().toString();
}

TEST_F(CheckConfigTest, RefusesAMissingDataDir) {
  setKey("data_dir", "\"" + siteDir() + "/no-such-store\"");
  expectRefused("does not exist");
  EXPECT_FALSE(fs::exists(siteDir() + "/no-such-store")) << "the check created the store";
}

TEST_F(CheckConfigTest, RefusesAnUnknownDataset) {
  std::string text = readFile(configPath_);
  text = std::regex_replace(text, std::regex("name = \"lung7\""), "name = \"lung8\"");
  std::ofstream(configPath_, std::ios::trunc) << text;
  expectRefused("dataset 'lung8'");
}

TEST_F(CheckConfigTest, RefusesABadLogLevel) {
  setKey("log_level", "\"loud\"");
  expectRefused("log_level");
}

TEST_F(CheckConfigTest, RefusesAnOpsPortInUse) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string taken = "\"127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "\"";
  setKey("ops_listen", taken);
  expectRefused("ops_listen 127.0.0.1:" + std::to_string(ntohs(a.sin_port)) +
                ": address already in use");
  setKey("ops_listen", "\"127.0.0.1:0\"");
  setKey("listen", taken);
  expectRefused("address already in use");
  ::close(fd);
}

TEST_F(CheckConfigTest, StoresArePrivateAndAWorldReadableOneIsRefused) {
  const std::string store = siteDir() + "/store";
  EXPECT_EQ(fs::status(store).permissions() & fs::perms::all, fs::perms::owner_all)
      << "a new store directory must be 0700";
  fs::permissions(store, fs::perms::others_read | fs::perms::others_exec, fs::perm_options::add);
  expectRefused("chmod -R o-rwx " + store);
  fs::permissions(store, fs::perms::others_all, fs::perm_options::remove);
  auto r = check();
  EXPECT_TRUE(r.isOk()) << r.status().toString();
}

TEST_F(CheckConfigTest, RefusesASiteMissingFromTheMembersFile) {
  setKey("name", "\"nobody\"");
  expectRefused("is not a member with role site");
}

// members_signer (issue #13 item 4): the check verifies the organiser's signature as start-up
// and reload do, and refuses an unsigned or changed members file.
TEST_F(CheckConfigTest, MembersSignerRequiresAValidSignature) {
  const crypto::Identity organiser = crypto::generateIdentity();
  setKey("members_signer", "\"" + organiser.pub.toText() + "\"");
  const std::string members = fed_->membersPath();
  expectRefused("needs the organiser's signature");
  const std::string text = readFile(members);
  std::ofstream(membersSignaturePath(members), std::ios::trunc) << signMembersFile(organiser, text);
  auto r = check();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  std::string all;
  for (const auto& l : *r) all += l + "\n";
  EXPECT_NE(all.find("signed by members_signer " + organiser.pub.toText()), std::string::npos)
      << all;
  std::ofstream(members, std::ios::app) << "# edited after signing\n";
  expectRefused("it was changed after it was signed");
  setKey("members_signer", "\"tmpk1nope\"");
  auto bad = loadNodeConfig(configPath_);
  ASSERT_FALSE(bad.isOk());
  EXPECT_NE(bad.status().message().find("members_signer"), std::string::npos)
      << bad.status().toString();
}

// admin_socket (node/admin_server.h): the start-up checks on its path, without binding.
TEST_F(CheckConfigTest, AdminSocketInAnUnsafeOrMissingDirectoryIsRefused) {
  auto ok = check();
  ASSERT_TRUE(ok.isOk()) << ok.status().toString();
  std::string all;
  for (const auto& l : *ok) all += l + "\n";
  EXPECT_NE(all.find("admin_socket"), std::string::npos) << all;

  const std::string open = dir_ + "/shared";
  fs::create_directories(open);
  fs::permissions(open, fs::perms::all, fs::perm_options::replace);
  setKey("admin_socket", "\"" + open + "/admin.sock\"");
  expectRefused("is writable by other users");
  setKey("admin_socket", "\"" + dir_ + "/missing/admin.sock\"");
  expectRefused("does not exist");
  setKey("admin_socket", "\"/" + std::string(120, 'a') + "\"");
  expectRefused("Unix socket path limit");
  setKey("admin_socket", "\"off\"");
  auto off = check();
  ASSERT_TRUE(off.isOk()) << off.status().toString();
}

}  // namespace
}  // namespace trialmesh::node
