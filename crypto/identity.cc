#include "crypto/identity.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <system_error>
#include <utility>
#include <vector>

#include "crypto/hash.h"
#include "crypto/key_access.h"

namespace trialmesh::crypto {

static_assert(crypto_sign_PUBLICKEYBYTES == kPublicKeyBytes);
static_assert(crypto_sign_BYTES == kSignatureBytes);
static_assert(crypto_sign_SECRETKEYBYTES == 64);
static_assert(crypto_scalarmult_curve25519_BYTES == 32);

namespace detail {

void ensureSodium() {
  static const bool initialised = [] { return sodium_init() >= 0; }();
  if (!initialised) {
    // No safe way to continue: every key and nonce depends on libsodium's RNG.
    std::fputs("trialmesh: libsodium failed to initialise (sodium_init)\n", stderr);
    std::abort();
  }
}

SecretBytes::SecretBytes(size_t size) : size_(size) {
  ensureSodium();
  p_ = static_cast<uint8_t*>(sodium_malloc(size));
  if (p_ == nullptr) {
    throw std::bad_alloc();
  }
}

SecretBytes::~SecretBytes() {
  if (p_ != nullptr) {
    sodium_free(p_);  // sodium_free wipes before unmapping
  }
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : p_(std::exchange(other.p_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    if (p_ != nullptr) {
      sodium_free(p_);
    }
    p_ = std::exchange(other.p_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

uint8_t* SecretBytes::data() {
  if (p_ == nullptr) {
    std::abort();  // use after move: a bug in the caller
  }
  return p_;
}

const uint8_t* SecretBytes::data() const {
  if (p_ == nullptr) {
    std::abort();
  }
  return p_;
}

}  // namespace detail

using detail::KeyAccess;

// ---------------------------------------------------------------- text form

namespace {

constexpr char kBase32Alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
constexpr size_t kChecksumBytes = 4;
constexpr size_t kTextPayloadBytes = kPublicKeyBytes + kChecksumBytes;  // 36
constexpr size_t kTextPayloadChars = (kTextPayloadBytes * 8 + 4) / 5;   // 58

std::array<uint8_t, kChecksumBytes> keyChecksum(const std::array<uint8_t, kPublicKeyBytes>& key) {
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  static constexpr std::string_view kDomain = "trialmesh-pk";
  crypto_hash_sha256_update(&st, reinterpret_cast<const uint8_t*>(kDomain.data()), kDomain.size());
  crypto_hash_sha256_update(&st, key.data(), key.size());
  Sha256Digest digest;
  crypto_hash_sha256_final(&st, digest.data());
  std::array<uint8_t, kChecksumBytes> out;
  std::memcpy(out.data(), digest.data(), kChecksumBytes);
  return out;
}

// RFC 4648 base32, lower case, no padding. Bits are taken most significant first.
std::string base32Encode(std::span<const uint8_t> bytes) {
  std::string out;
  out.reserve((bytes.size() * 8 + 4) / 5);
  uint32_t buffer = 0;
  int bits = 0;
  for (uint8_t b : bytes) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out.push_back(kBase32Alphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  if (bits > 0) {
    out.push_back(kBase32Alphabet[(buffer << (5 - bits)) & 31]);
  }
  return out;
}

int base32Value(char c) {
  if (c >= 'a' && c <= 'z') {
    return c - 'a';
  }
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= '2' && c <= '7') {
    return c - '2' + 26;
  }
  return -1;
}

std::string_view trimAscii(std::string_view s) {
  auto isSpace = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && isSpace(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && isSpace(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

std::string printable(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) {
    return std::string("'") + c + "'";
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", u);
  return buf;
}

}  // namespace

Result<PublicKey> PublicKey::fromBytes(std::span<const uint8_t> bytes) {
  if (bytes.size() != kPublicKeyBytes) {
    return Status::invalidArgument("public key must be " + std::to_string(kPublicKeyBytes) +
                                   " bytes, got " + std::to_string(bytes.size()));
  }
  std::array<uint8_t, kPublicKeyBytes> a;
  std::memcpy(a.data(), bytes.data(), a.size());
  return PublicKey(a);
}

std::string PublicKey::toText() const {
  detail::ensureSodium();
  std::array<uint8_t, kTextPayloadBytes> payload;
  std::memcpy(payload.data(), bytes_.data(), kPublicKeyBytes);
  auto sum = keyChecksum(bytes_);
  std::memcpy(payload.data() + kPublicKeyBytes, sum.data(), kChecksumBytes);
  return std::string(kPublicKeyTextPrefix) + base32Encode(payload);
}

Result<PublicKey> parsePublicKey(std::string_view text) {
  detail::ensureSodium();
  text = trimAscii(text);
  const size_t p = kPublicKeyTextPrefix.size();
  bool prefixOk = text.size() >= p;
  for (size_t i = 0; prefixOk && i < p; ++i) {
    char c = text[i];
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    prefixOk = c == kPublicKeyTextPrefix[i];
  }
  if (!prefixOk) {
    return Status::invalidArgument("public key '" + std::string(text.substr(0, 16)) +
                                   (text.size() > 16 ? "...'" : "'") + " does not start with '" +
                                   std::string(kPublicKeyTextPrefix) +
                                   "': copy the whole key from the peer's .pub file");
  }
  std::string_view body = text.substr(p);
  std::vector<uint8_t> values;
  values.reserve(body.size());
  for (size_t i = 0; i < body.size(); ++i) {
    int v = base32Value(body[i]);
    if (v < 0) {
      return Status::invalidArgument("public key has invalid character " + printable(body[i]) +
                                     " at position " + std::to_string(p + i + 1) +
                                     ": only a-z and 2-7 are used (no 0, 1, 8, 9)");
    }
    values.push_back(static_cast<uint8_t>(v));
  }
  if (values.size() != kTextPayloadChars) {
    return Status::invalidArgument("public key has " + std::to_string(values.size()) +
                                   " characters after '" + std::string(kPublicKeyTextPrefix) +
                                   "', expected " + std::to_string(kTextPayloadChars) +
                                   ": it was probably cut off or pasted twice");
  }
  std::array<uint8_t, kTextPayloadBytes> payload{};
  uint32_t buffer = 0;
  int bits = 0;
  size_t n = 0;
  for (uint8_t v : values) {
    buffer = (buffer << 5) | v;
    bits += 5;
    if (bits >= 8) {
      payload[n++] = static_cast<uint8_t>(buffer >> (bits - 8));
      bits -= 8;
    }
  }
  // 58 characters carry 290 bits; the 2 spare bits of the last character must be zero, so
  // that each key has exactly one text form.
  if ((buffer & ((1u << bits) - 1)) != 0) {
    return Status::invalidArgument(
        "public key checksum does not match: a character was probably mistyped (the last "
        "character " +
        printable(body.back()) + " cannot end a key)");
  }
  std::array<uint8_t, kPublicKeyBytes> key;
  std::memcpy(key.data(), payload.data(), kPublicKeyBytes);
  auto sum = keyChecksum(key);
  if (sodium_memcmp(sum.data(), payload.data() + kPublicKeyBytes, kChecksumBytes) != 0) {
    return Status::invalidArgument(
        "public key checksum does not match: a character was probably mistyped");
  }
  return PublicKey(key);
}

// ---------------------------------------------------------------- signing

Identity generateIdentity() {
  detail::ensureSodium();
  SecretKey sk = KeyAccess::newSecretKey();
  std::array<uint8_t, kPublicKeyBytes> pk;
  crypto_sign_keypair(pk.data(), KeyAccess::bytes(sk));
  return Identity{PublicKey(pk), std::move(sk)};
}

Signature sign(const SecretKey& key, std::span<const uint8_t> message) {
  detail::ensureSodium();
  Signature sig;
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), KeyAccess::bytes(key));
  return sig;
}

bool verify(const PublicKey& pub, std::span<const uint8_t> message, const Signature& sig) {
  detail::ensureSodium();
  return crypto_sign_verify_detached(sig.data(), message.data(), message.size(),
                                     pub.bytes().data()) == 0;
}

// ---------------------------------------------------------------- X25519

Result<X25519PublicKey> toX25519(const PublicKey& pub) {
  // The conversion decompresses a curve point (a field exponentiation, tens of µs) and a node
  // converts the same few member keys on every secure query, so valid results are kept. Public
  // data only; bounded, cleared when full.
  static std::mutex mu;
  static auto* cache = new std::map<PublicKey, X25519PublicKey>;  // never destroyed: no exit races
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(pub);
    if (it != cache->end()) return it->second;
  }
  detail::ensureSodium();
  X25519PublicKey out;
  if (crypto_sign_ed25519_pk_to_curve25519(out.bytes.data(), pub.bytes().data()) != 0) {
    return Status::invalidArgument("public key " + pub.toText() +
                                   " is not a valid Ed25519 point; it cannot be converted");
  }
  std::lock_guard<std::mutex> lock(mu);
  if (cache->size() >= 4096) cache->clear();
  cache->emplace(pub, out);
  return out;
}

X25519KeyPair toX25519(const Identity& identity) {
  detail::ensureSodium();
  X25519SecretKey sk = KeyAccess::newX25519SecretKey();
  crypto_sign_ed25519_sk_to_curve25519(KeyAccess::bytes(sk), KeyAccess::bytes(identity.secret));
  X25519PublicKey pk;
  // Derive from the secret scalar, which always succeeds for our own key.
  crypto_scalarmult_curve25519_base(pk.bytes.data(), KeyAccess::bytes(sk));
  return X25519KeyPair{pk, std::move(sk)};
}

X25519KeyPair generateX25519KeyPair() {
  detail::ensureSodium();
  X25519SecretKey sk = KeyAccess::newX25519SecretKey();
  X25519PublicKey pk;
  crypto_box_keypair(pk.bytes.data(), KeyAccess::bytes(sk));
  return X25519KeyPair{pk, std::move(sk)};
}

// ---------------------------------------------------------------- key files
//
// Layout (docs/keys.md). All integers big-endian.
//   0   8  magic "TMIDKEY\0"
//   8   1  format version (1)
//   9   1  protection: 0 = none, 1 = Argon2id13 + XChaCha20-Poly1305-IETF
//  10  32  Ed25519 public key
// protection 0:
//  42  32  Ed25519 seed
//  74  32  SHA-256 of bytes [0, 74)                               total 106
// protection 1:
//  42   8  Argon2id opslimit
//  50   8  Argon2id memlimit (bytes)
//  58  16  salt
//  74  24  nonce
//  98  48  AEAD ciphertext of the seed, associated data = bytes [0, 98)
// 146  32  SHA-256 of bytes [0, 146)                              total 178
// The trailing SHA-256 is not a secret-keyed MAC: it separates accidental corruption
// ("restore from backup") from a wrong passphrase. Forgery is still stopped by the AEAD tag
// and by checking that the seed reproduces the stored public key.

namespace {

constexpr char kKeyFileMagic[8] = {'T', 'M', 'I', 'D', 'K', 'E', 'Y', '\0'};
constexpr uint8_t kKeyFileVersion = 1;
constexpr uint8_t kProtectionNone = 0;
constexpr uint8_t kProtectionArgon2idXChaCha = 1;
constexpr size_t kHeaderBytes = 42;
constexpr size_t kSeedBytes = crypto_sign_SEEDBYTES;
constexpr size_t kPlainFileBytes = kHeaderBytes + kSeedBytes + 32;
constexpr size_t kSaltBytes = crypto_pwhash_SALTBYTES;
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kAdBytes = kHeaderBytes + 8 + 8 + kSaltBytes + kNonceBytes;
constexpr size_t kCipherBytes = kSeedBytes + crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kEncryptedFileBytes = kAdBytes + kCipherBytes + 32;
constexpr size_t kMaxKeyFileBytes = 4096;
// Upper bounds accepted when loading, so a modified file cannot make us allocate or spin
// without limit. They match libsodium's SENSITIVE preset.
constexpr uint64_t kMaxOpsLimit = crypto_pwhash_OPSLIMIT_SENSITIVE;
constexpr uint64_t kMaxMemLimit = crypto_pwhash_MEMLIMIT_SENSITIVE;

static_assert(crypto_pwhash_OPSLIMIT_MODERATE == KeyFileOptions{}.kdfOpsLimit);
static_assert(crypto_pwhash_MEMLIMIT_MODERATE == KeyFileOptions{}.kdfMemLimitBytes);
static_assert(kSaltBytes == 16 && kNonceBytes == 24 && kAdBytes == 98);

std::string errnoText(int err) { return std::system_category().message(err); }

void putU64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

uint64_t getU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | p[i];
  }
  return v;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now so that close() errors (delayed write errors on NFS) are reported.
  int release() { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

std::string dirOf(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  if (slash == 0) {
    return "/";
  }
  return path.substr(0, slash);
}

bool pathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Writes `data` to `path` with exactly `mode`, never exposing a partial file: temp file in the
// same directory (O_CREAT|O_EXCL), fsync, then link() (fails atomically if `path` exists) or,
// when overwriting, rename(); then fsync of the directory so the new name survives a crash.
Status writeFileAtomically(const std::string& path, std::span<const uint8_t> data, mode_t mode,
                           bool overwrite) {
  uint8_t rnd[8];
  randombytes_buf(rnd, sizeof rnd);
  const std::string tmp = path + ".tmp-" + toHex(rnd);
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
    if (fd.get() < 0) {
      return Status::ioError("cannot create " + tmp + ": " + errnoText(errno) +
                             " (check that the directory exists and is writable)");
    }
    auto fail = [&](const std::string& what) {
      int err = errno;
      ::unlink(tmp.c_str());
      return Status::ioError(what + " " + tmp + ": " + errnoText(err));
    };
    // The umask may have removed bits; make the mode exactly what was asked.
    if (::fchmod(fd.get(), mode) != 0) {
      return fail("cannot chmod");
    }
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return fail("cannot write");
      }
      off += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) {
      return fail("cannot fsync");
    }
    if (fd.release() != 0) {
      return fail("cannot close");
    }
  }
  if (overwrite) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return Status::ioError("cannot rename " + tmp + " to " + path + ": " + errnoText(err));
    }
  } else {
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      if (err == EEXIST) {
        return Status::alreadyExists(path +
                                     " already exists; refusing to overwrite a key file (move it "
                                     "away first, or ask explicitly to overwrite)");
      }
      return Status::ioError("cannot create " + path + ": " + errnoText(err));
    }
    ::unlink(tmp.c_str());
  }
  Fd dir(::open(dirOf(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0 || ::fsync(dir.get()) != 0) {
    return Status::ioError("wrote " + path + " but cannot fsync its directory " + dirOf(path) +
                           ": " + errnoText(errno));
  }
  return Status::ok();
}

void appendChecksum(std::vector<uint8_t>& file) {
  Sha256Digest d = sha256(std::span<const uint8_t>(file));
  file.insert(file.end(), d.begin(), d.end());
}

}  // namespace

Status saveIdentity(const std::string& path, const Identity& identity,
                    std::optional<std::string_view> passphrase, const KeyFileOptions& options) {
  detail::ensureSodium();
  const std::string pubPath = path + ".pub";
  if (!options.overwrite) {
    for (const std::string& p : {path, pubPath}) {
      if (pathExists(p)) {
        return Status::alreadyExists(p +
                                     " already exists; refusing to overwrite a key file (move it "
                                     "away first, or ask explicitly to overwrite)");
      }
    }
  }
  const uint8_t* sk = KeyAccess::bytes(identity.secret);
  // The secret key's second half is its public key; a mismatched Identity is a caller bug
  // that would write an unusable file.
  if (sodium_memcmp(sk + kSeedBytes, identity.pub.bytes().data(), kPublicKeyBytes) != 0) {
    return Status::invalidArgument("identity's public key does not match its secret key");
  }

  std::vector<uint8_t> file(kKeyFileMagic, kKeyFileMagic + sizeof kKeyFileMagic);
  file.push_back(kKeyFileVersion);
  file.push_back(passphrase ? kProtectionArgon2idXChaCha : kProtectionNone);
  file.insert(file.end(), identity.pub.bytes().begin(), identity.pub.bytes().end());

  if (!passphrase) {
    file.insert(file.end(), sk, sk + kSeedBytes);
  } else {
    if (passphrase->empty()) {
      return Status::invalidArgument(
          "empty passphrase for key file " + path +
          "; give a real passphrase, or none to write an unencrypted key file");
    }
    if (options.kdfOpsLimit < crypto_pwhash_OPSLIMIT_MIN || options.kdfOpsLimit > kMaxOpsLimit ||
        options.kdfMemLimitBytes < crypto_pwhash_MEMLIMIT_MIN ||
        options.kdfMemLimitBytes > kMaxMemLimit) {
      return Status::invalidArgument(
          "Argon2id limits out of range (opslimit " + std::to_string(options.kdfOpsLimit) +
          ", memlimit " + std::to_string(options.kdfMemLimitBytes) + " bytes); allowed: ops " +
          std::to_string(crypto_pwhash_OPSLIMIT_MIN) + ".." + std::to_string(kMaxOpsLimit) +
          ", mem " + std::to_string(crypto_pwhash_MEMLIMIT_MIN) + ".." +
          std::to_string(kMaxMemLimit));
    }
    uint8_t params[16];
    putU64(params, options.kdfOpsLimit);
    putU64(params + 8, options.kdfMemLimitBytes);
    file.insert(file.end(), params, params + 16);
    uint8_t salt[kSaltBytes];
    uint8_t nonce[kNonceBytes];
    randombytes_buf(salt, sizeof salt);
    randombytes_buf(nonce, sizeof nonce);
    file.insert(file.end(), salt, salt + kSaltBytes);
    file.insert(file.end(), nonce, nonce + kNonceBytes);

    detail::SecretBytes key(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
    if (crypto_pwhash(key.data(), key.size(), passphrase->data(), passphrase->size(), salt,
                      options.kdfOpsLimit, options.kdfMemLimitBytes,
                      crypto_pwhash_ALG_ARGON2ID13) != 0) {
      return Status::resourceExhausted("Argon2id could not allocate " +
                                       std::to_string(options.kdfMemLimitBytes >> 20) +
                                       " MiB to protect " + path);
    }
    const size_t adLen = file.size();
    file.resize(adLen + kCipherBytes);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(file.data() + adLen, &clen, sk, kSeedBytes,
                                               file.data(), adLen, nullptr, nonce, key.data());
  }
  appendChecksum(file);

  Status st = writeFileAtomically(path, file, 0600, options.overwrite);
  sodium_memzero(file.data(), file.size());  // may hold the plain seed
  TM_RETURN_IF_ERROR(st);
  std::string pubText = identity.pub.toText() + "\n";
  return writeFileAtomically(
      pubPath,
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pubText.data()), pubText.size()),
      0644, options.overwrite);
}

Result<Identity> loadIdentity(const std::string& path, const PassphraseProvider& passphrase) {
  detail::ensureSodium();
  // O_NONBLOCK: a FIFO planted at `path` must not hang us before the S_ISREG check.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) {
    int err = errno;
    if (err == ENOENT) {
      return Status::notFound("key file " + path + " does not exist");
    }
    return Status::ioError("cannot open key file " + path + ": " + errnoText(err));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return Status::ioError("cannot stat key file " + path + ": " + errnoText(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::invalidArgument("key file " + path + " is not a regular file");
  }
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::permissionDenied("key file " + path + " has mode " + mode +
                                    ", so other users may read the secret key; refusing to use "
                                    "it. Fix with: chmod 600 " +
                                    path);
  }

  std::vector<uint8_t> file(kMaxKeyFileBytes + 1);
  size_t got = 0;
  while (got < file.size()) {
    ssize_t n = ::read(fd.get(), file.data() + got, file.size() - got);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Status::ioError("cannot read key file " + path + ": " + errnoText(errno));
    }
    if (n == 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  file.resize(got);
  // Wipe the buffer on every return path: it may hold a plain seed.
  struct Wipe {
    std::vector<uint8_t>& v;
    ~Wipe() { sodium_memzero(v.data(), v.size()); }
  } wipe{file};

  auto corrupt = [&](const std::string& why) {
    return Status::corruption("key file " + path + " is damaged (" + why +
                              "); restore it from a backup or generate a new identity");
  };
  if (got < kHeaderBytes || std::memcmp(file.data(), kKeyFileMagic, sizeof kKeyFileMagic) != 0) {
    return Status::corruption("key file " + path +
                              " is not a trialmesh identity key file (bad magic)");
  }
  if (file[8] != kKeyFileVersion) {
    return Status::failedPrecondition("key file " + path + " has format version " +
                                      std::to_string(file[8]) + "; this build reads version " +
                                      std::to_string(kKeyFileVersion) + " (upgrade trialmesh)");
  }
  const uint8_t protection = file[9];
  size_t expected = 0;
  if (protection == kProtectionNone) {
    expected = kPlainFileBytes;
  } else if (protection == kProtectionArgon2idXChaCha) {
    expected = kEncryptedFileBytes;
  } else {
    return corrupt("unknown protection type " + std::to_string(protection));
  }
  if (got != expected) {
    return corrupt(std::to_string(got) + " bytes, expected " + std::to_string(expected));
  }
  Sha256Digest sum = sha256(std::span<const uint8_t>(file.data(), got - 32));
  if (sodium_memcmp(sum.data(), file.data() + got - 32, 32) != 0) {
    return corrupt("checksum mismatch");
  }
  std::array<uint8_t, kPublicKeyBytes> storedPub;
  std::memcpy(storedPub.data(), file.data() + 10, kPublicKeyBytes);

  detail::SecretBytes seed(kSeedBytes);
  if (protection == kProtectionNone) {
    std::memcpy(seed.data(), file.data() + kHeaderBytes, kSeedBytes);
  } else {
    if (!passphrase) {
      return Status::failedPrecondition("key file " + path +
                                        " is passphrase-protected; supply its passphrase");
    }
    const uint8_t* p = file.data() + kHeaderBytes;
    const uint64_t ops = getU64(p);
    const uint64_t mem = getU64(p + 8);
    if (ops < crypto_pwhash_OPSLIMIT_MIN || ops > kMaxOpsLimit ||
        mem < crypto_pwhash_MEMLIMIT_MIN || mem > kMaxMemLimit) {
      return corrupt("Argon2id parameters out of range: opslimit " + std::to_string(ops) +
                     ", memlimit " + std::to_string(mem));
    }
    const uint8_t* salt = p + 16;
    const uint8_t* nonce = salt + kSaltBytes;
    Result<std::string> pass = passphrase();
    if (!pass.isOk()) {
      return pass.status().withContext("passphrase for key file " + path);
    }
    detail::SecretBytes key(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
    int rc = crypto_pwhash(key.data(), key.size(), pass->data(), pass->size(), salt, ops,
                           static_cast<size_t>(mem), crypto_pwhash_ALG_ARGON2ID13);
    sodium_memzero(pass->data(), pass->size());
    if (rc != 0) {
      return Status::resourceExhausted("Argon2id could not allocate " + std::to_string(mem >> 20) +
                                       " MiB to unlock key file " + path);
    }
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(seed.data(), &mlen, nullptr,
                                                   file.data() + kAdBytes, kCipherBytes,
                                                   file.data(), kAdBytes, nonce, key.data()) != 0) {
      return Status::permissionDenied("wrong passphrase for key file " + path);
    }
  }
  SecretKey sk = KeyAccess::newSecretKey();
  std::array<uint8_t, kPublicKeyBytes> pk;
  crypto_sign_seed_keypair(pk.data(), KeyAccess::bytes(sk), seed.data());
  if (sodium_memcmp(pk.data(), storedPub.data(), kPublicKeyBytes) != 0) {
    return corrupt("the secret key does not match the stored public key");
  }
  return Identity{PublicKey(pk), std::move(sk)};
}

}  // namespace trialmesh::crypto
