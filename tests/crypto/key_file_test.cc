#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "crypto/hash.h"
#include "crypto/identity.h"

namespace trialmesh::crypto {
namespace {

namespace fs = std::filesystem;

// Cheapest Argon2id cost libsodium allows, so tests stay fast; production uses the default.
KeyFileOptions fastOptions() {
  KeyFileOptions o;
  o.kdfOpsLimit = 1;
  o.kdfMemLimitBytes = 8192;
  return o;
}

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tm_keyfile_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "node.key").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  static unsigned modeOf(const std::string& p) {
    struct stat st;
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
  }
  static std::vector<uint8_t> readAll(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  static void writeAll(const std::string& p, const std::vector<uint8_t>& data) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data.data()),
              static_cast<std::streamsize>(data.size()));
  }
  static PassphraseProvider pass(std::string p, int* calls = nullptr) {
    return [p, calls]() -> Result<std::string> {
      if (calls) ++*calls;
      return p;
    };
  }
  static void expectError(const Status& s, StatusCode code, const std::string& fragment) {
    EXPECT_EQ(s.code(), code) << s.toString();
    EXPECT_NE(s.message().find(fragment), std::string::npos)
        << "message: " << s.message() << "\nexpected fragment: " << fragment;
  }
  static bool sameIdentity(const Identity& a, const Identity& b) {
    const uint8_t m[] = {1, 2, 3};
    return a.pub == b.pub && verify(a.pub, m, sign(b.secret, m));
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(KeyFileTest, PlainRoundTripModesAndPubFile) {
  Identity id = generateIdentity();
  ASSERT_TRUE(saveIdentity(path_, id, std::nullopt).isOk());
  EXPECT_EQ(modeOf(path_), 0600u);
  EXPECT_EQ(modeOf(path_ + ".pub"), 0644u);
  std::vector<uint8_t> pub = readAll(path_ + ".pub");
  EXPECT_EQ(std::string(pub.begin(), pub.end()), id.pub.toText() + "\n");
  EXPECT_EQ(readAll(path_).size(), 106u);

  Result<Identity> loaded = loadIdentity(path_);
  ASSERT_TRUE(loaded.isOk()) << loaded.status().toString();
  EXPECT_TRUE(sameIdentity(id, *loaded));
  // No temporary files are left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 2);
}

TEST_F(KeyFileTest, ModeIs0600EvenWithPermissiveUmask) {
  mode_t old = ::umask(0);
  Status s = saveIdentity(path_, generateIdentity(), std::nullopt);
  ::umask(old);
  ASSERT_TRUE(s.isOk()) << s.toString();
  EXPECT_EQ(modeOf(path_), 0600u);
}

TEST_F(KeyFileTest, LoadRefusesGroupOrWorldAccessibleFile) {
  ASSERT_TRUE(saveIdentity(path_, generateIdentity(), std::nullopt).isOk());
  for (mode_t m : {0644, 0640, 0604, 0660, 0610}) {
    ASSERT_EQ(::chmod(path_.c_str(), m), 0);
    Result<Identity> r = loadIdentity(path_);
    ASSERT_FALSE(r.isOk()) << std::oct << m;
    expectError(r.status(), StatusCode::kPermissionDenied, "Fix with: chmod 600 " + path_);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(m));
    EXPECT_NE(r.status().message().find(std::string("has mode ") + mode), std::string::npos);
  }
  ASSERT_EQ(::chmod(path_.c_str(), 0400), 0);
  EXPECT_TRUE(loadIdentity(path_).isOk());
}

TEST_F(KeyFileTest, PassphraseRoundTrip) {
  Identity id = generateIdentity();
  ASSERT_TRUE(saveIdentity(path_, id, "correct horse battery staple", fastOptions()).isOk());
  EXPECT_EQ(modeOf(path_), 0600u);
  std::vector<uint8_t> file = readAll(path_);
  EXPECT_EQ(file.size(), 178u);
  EXPECT_EQ(file[9], 1);  // protection byte
  int calls = 0;
  Result<Identity> loaded = loadIdentity(path_, pass("correct horse battery staple", &calls));
  ASSERT_TRUE(loaded.isOk()) << loaded.status().toString();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(sameIdentity(id, *loaded));
}

TEST_F(KeyFileTest, PlainFileDoesNotAskForPassphrase) {
  ASSERT_TRUE(saveIdentity(path_, generateIdentity(), std::nullopt).isOk());
  int calls = 0;
  EXPECT_TRUE(loadIdentity(path_, pass("x", &calls)).isOk());
  EXPECT_EQ(calls, 0);
}

TEST_F(KeyFileTest, WrongPassphraseRefused) {
  ASSERT_TRUE(saveIdentity(path_, generateIdentity(), "right", fastOptions()).isOk());
  Result<Identity> r = loadIdentity(path_, pass("wrong"));
  ASSERT_FALSE(r.isOk());
  expectError(r.status(), StatusCode::kPermissionDenied, "wrong passphrase for key file " + path_);
}

TEST_F(KeyFileTest, EncryptedWithoutProviderOrFailingProvider) {
  ASSERT_TRUE(saveIdentity(path_, generateIdentity(), "right", fastOptions()).isOk());
  Result<Identity> r = loadIdentity(path_);
  ASSERT_FALSE(r.isOk());
  expectError(r.status(), StatusCode::kFailedPrecondition, "is passphrase-protected");
  r = loadIdentity(path_, [] { return Result<std::string>(Status::unavailable("no tty")); });
  ASSERT_FALSE(r.isOk());
  expectError(r.status(), StatusCode::kUnavailable, "no tty");
}

TEST_F(KeyFileTest, EmptyPassphraseRefused) {
  expectError(saveIdentity(path_, generateIdentity(), "", fastOptions()),
              StatusCode::kInvalidArgument, "empty passphrase");
  EXPECT_FALSE(fs::exists(path_));
}

TEST_F(KeyFileTest, EveryCorruptedByteIsDetected) {
  for (bool encrypted : {false, true}) {
    fs::remove(path_);
    fs::remove(path_ + ".pub");
    std::optional<std::string_view> pp;
    if (encrypted) pp = "pw";
    ASSERT_TRUE(saveIdentity(path_, generateIdentity(), pp, fastOptions()).isOk());
    const std::vector<uint8_t> good = readAll(path_);
    for (size_t i = 0; i < good.size(); ++i) {
      std::vector<uint8_t> bad = good;
      bad[i] ^= 0x10;
      writeAll(path_, bad);
      Result<Identity> r = loadIdentity(path_, pass("pw"));
      ASSERT_FALSE(r.isOk()) << "byte " << i << " encrypted=" << encrypted;
      // The version byte reports an unsupported version; everything else is corruption.
      if (i == 8) {
        expectError(r.status(), StatusCode::kFailedPrecondition, "format version 17");
      } else {
        EXPECT_EQ(r.status().code(), StatusCode::kCorruption)
            << "byte " << i << ": " << r.status().toString();
      }
    }
    writeAll(path_, good);
    EXPECT_TRUE(loadIdentity(path_, pass("pw")).isOk());
  }
}

TEST_F(KeyFileTest, TruncatedAndForeignFilesRefused) {
  ASSERT_TRUE(saveIdentity(path_, generateIdentity(), std::nullopt).isOk());
  std::vector<uint8_t> good = readAll(path_);
  writeAll(path_, std::vector<uint8_t>(good.begin(), good.end() - 1));
  expectError(loadIdentity(path_).status(), StatusCode::kCorruption, "105 bytes, expected 106");
  writeAll(path_, std::vector<uint8_t>(good.begin(), good.begin() + 5));
  expectError(loadIdentity(path_).status(), StatusCode::kCorruption, "bad magic");
  std::string pem = "-----BEGIN OPENSSH PRIVATE KEY-----\n";
  writeAll(path_, std::vector<uint8_t>(pem.begin(), pem.end()));
  expectError(loadIdentity(path_).status(), StatusCode::kCorruption,
              "is not a trialmesh identity key file");
  writeAll(path_, std::vector<uint8_t>(10000, 'A'));
  EXPECT_EQ(loadIdentity(path_).status().code(), StatusCode::kCorruption);
}

// A modified seed with a recomputed checksum is still caught: the seed must reproduce the
// stored public key.
TEST_F(KeyFileTest, SeedSwapWithRecomputedChecksumRefused) {
  ASSERT_TRUE(saveIdentity(path_, generateIdentity(), std::nullopt).isOk());
  std::vector<uint8_t> f = readAll(path_);
  f[50] ^= 1;
  Sha256Digest d = sha256(std::span<const uint8_t>(f.data(), f.size() - 32));
  std::copy(d.begin(), d.end(), f.end() - 32);
  writeAll(path_, f);
  expectError(loadIdentity(path_).status(), StatusCode::kCorruption,
              "does not match the stored public key");
}

TEST_F(KeyFileTest, NoOverwriteUnlessAsked) {
  Identity first = generateIdentity();
  Identity second = generateIdentity();
  ASSERT_TRUE(saveIdentity(path_, first, std::nullopt).isOk());
  const std::vector<uint8_t> before = readAll(path_);
  expectError(saveIdentity(path_, second, std::nullopt), StatusCode::kAlreadyExists,
              path_ + " already exists");
  EXPECT_EQ(readAll(path_), before);
  // Only the .pub left over from an earlier run also blocks.
  fs::remove(path_);
  expectError(saveIdentity(path_, second, std::nullopt), StatusCode::kAlreadyExists,
              path_ + ".pub already exists");
  EXPECT_FALSE(fs::exists(path_));

  KeyFileOptions o;
  o.overwrite = true;
  ASSERT_TRUE(saveIdentity(path_, second, std::nullopt, o).isOk());
  Result<Identity> loaded = loadIdentity(path_);
  ASSERT_TRUE(loaded.isOk());
  EXPECT_TRUE(sameIdentity(second, *loaded));
  std::vector<uint8_t> pub = readAll(path_ + ".pub");
  EXPECT_EQ(std::string(pub.begin(), pub.end()), second.pub.toText() + "\n");
  EXPECT_EQ(modeOf(path_), 0600u);
}

TEST_F(KeyFileTest, MissingFileAndDirectory) {
  expectError(loadIdentity(path_).status(), StatusCode::kNotFound, "does not exist");
  expectError(saveIdentity((dir_ / "no/such/dir/k").string(), generateIdentity(), std::nullopt),
              StatusCode::kIOError, "cannot create");
}

TEST_F(KeyFileTest, NonRegularFileRefused) {
  expectError(loadIdentity(dir_.string()).status(), StatusCode::kInvalidArgument,
              "is not a regular file");
  const std::string fifo = (dir_ / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // Must not block waiting for a writer.
  expectError(loadIdentity(fifo).status(), StatusCode::kInvalidArgument, "is not a regular file");
}

TEST_F(KeyFileTest, KdfLimitsValidated) {
  KeyFileOptions o;
  o.kdfOpsLimit = 0;
  expectError(saveIdentity(path_, generateIdentity(), "pw", o), StatusCode::kInvalidArgument,
              "Argon2id limits out of range");
}

}  // namespace
}  // namespace trialmesh::crypto
