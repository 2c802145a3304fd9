// Long-term node identities: Ed25519 signing keys, their text form, and key files.
//
// Every trialmesh node has one Identity. Its PublicKey is what site IT copies into the
// federation's member list (as text, "tmpk1..."); its SecretKey never leaves the node.
// Formats are documented in docs/keys.md.
//
// Errors come back as Status/Result (common/status.h); libsodium's int results never leak.
// Thread-safety: all free functions are thread-safe. PublicKey is a plain value. SecretKey,
// X25519SecretKey and Identity are move-only owners of locked, guarded memory; a const object
// may be used from several threads at once.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace trialmesh::crypto {

inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kSignatureBytes = 64;
// Prefix of the text form of a public key; the "1" is the text-format version.
inline constexpr std::string_view kPublicKeyTextPrefix = "tmpk1";

namespace detail {
// Secret bytes in sodium_malloc memory (guard pages, mlock'ed where allowed), wiped by
// sodium_free on destruction. Move-only. Throws std::bad_alloc if the allocation fails.
class SecretBytes {
 public:
  explicit SecretBytes(size_t size);
  ~SecretBytes();
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  // REQUIRES: not moved from.
  uint8_t* data();
  const uint8_t* data() const;
  size_t size() const { return size_; }

 private:
  uint8_t* p_ = nullptr;
  size_t size_ = 0;
};
// Lets crypto/*.cc read secret bytes; defined in crypto/key_access.h (internal).
struct KeyAccess;
}  // namespace detail

using Signature = std::array<uint8_t, kSignatureBytes>;

// An Ed25519 public key. Comparable, hashable by bytes, cheap to copy.
class PublicKey {
 public:
  explicit PublicKey(const std::array<uint8_t, kPublicKeyBytes>& bytes) : bytes_(bytes) {}
  // Fails (InvalidArgument) unless bytes.size() == kPublicKeyBytes.
  static Result<PublicKey> fromBytes(std::span<const uint8_t> bytes);

  const std::array<uint8_t, kPublicKeyBytes>& bytes() const { return bytes_; }
  // The copyable text form, "tmpk1" + 58 base32 characters (docs/keys.md).
  std::string toText() const;

  friend bool operator==(const PublicKey&, const PublicKey&) = default;
  friend auto operator<=>(const PublicKey&, const PublicKey&) = default;

 private:
  std::array<uint8_t, kPublicKeyBytes> bytes_;
};

// Parses the text form. Leading/trailing whitespace is ignored and upper case is accepted.
// Each failure has its own InvalidArgument message: wrong prefix, a character outside the
// base32 alphabet (with its position), wrong length, or a checksum mismatch (a typo).
Result<PublicKey> parsePublicKey(std::string_view text);

// An Ed25519 secret key. Move-only; a moved-from key must not be used (aborts).
class SecretKey {
 public:
  SecretKey(SecretKey&&) noexcept = default;
  SecretKey& operator=(SecretKey&&) noexcept = default;

 private:
  friend struct detail::KeyAccess;
  SecretKey() : bytes_(64) {}
  detail::SecretBytes bytes_;  // libsodium's 64-byte form: seed || public key
};

struct Identity {
  PublicKey pub;
  SecretKey secret;
};

// A fresh identity from the operating system's CSPRNG.
Identity generateIdentity();

// Ed25519 signature over `message`.
Signature sign(const SecretKey& key, std::span<const uint8_t> message);
// True only if `sig` is a valid signature of `message` by `pub`.
[[nodiscard]] bool verify(const PublicKey& pub, std::span<const uint8_t> message,
                          const Signature& sig);

// ---- Key-agreement (X25519) keys, derived from identities for secure aggregation ----

struct X25519PublicKey {
  std::array<uint8_t, 32> bytes;
  friend bool operator==(const X25519PublicKey&, const X25519PublicKey&) = default;
};

class X25519SecretKey {
 public:
  X25519SecretKey(X25519SecretKey&&) noexcept = default;
  X25519SecretKey& operator=(X25519SecretKey&&) noexcept = default;

 private:
  friend struct detail::KeyAccess;
  X25519SecretKey() : bytes_(32) {}
  detail::SecretBytes bytes_;
};

struct X25519KeyPair {
  X25519PublicKey pub;
  X25519SecretKey secret;
};

// The X25519 form of an identity's public key (crypto_sign_ed25519_pk_to_curve25519).
// Fails (InvalidArgument) for keys that are not valid Ed25519 points.
Result<X25519PublicKey> toX25519(const PublicKey& pub);
// The X25519 key pair matching toX25519(identity.pub).
X25519KeyPair toX25519(const Identity& identity);
// A fresh, unrelated X25519 key pair.
X25519KeyPair generateX25519KeyPair();

// ---- Key files ----

struct KeyFileOptions {
  // Replace existing key files. Default: false (AlreadyExists if either file exists).
  bool overwrite = false;
  // Argon2id cost used when a passphrase is given. Defaults: libsodium's MODERATE limits
  // (3 passes, 256 MiB), about 0.5-1 s once per node start. Tests lower them.
  uint64_t kdfOpsLimit = 3;
  uint64_t kdfMemLimitBytes = 256ull << 20;
};

// Writes the secret key file `path` (mode 0600, atomically: temp file, fsync, link/rename,
// fsync of the directory) and `path + ".pub"` (mode 0644, the text form and a newline).
// With a passphrase the seed is encrypted (Argon2id + XChaCha20-Poly1305); an empty
// passphrase is refused. Errors: AlreadyExists, InvalidArgument, IOError (with errno text).
Status saveIdentity(const std::string& path, const Identity& identity,
                    std::optional<std::string_view> passphrase, const KeyFileOptions& options = {});

// Called by loadIdentity only when the file is passphrase-protected.
using PassphraseProvider = std::function<Result<std::string>()>;

// Reads a key file written by saveIdentity. Refuses (PermissionDenied, "chmod 600 <path>")
// a file that group or others may access. Errors: NotFound, PermissionDenied (mode, wrong
// passphrase), FailedPrecondition (encrypted but no provider; newer format version),
// Corruption (truncated, modified, not a key file), IOError.
Result<Identity> loadIdentity(const std::string& path, const PassphraseProvider& passphrase = {});

}  // namespace trialmesh::crypto
