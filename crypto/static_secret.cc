#include "crypto/static_secret.h"

#include <sodium.h>

#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "crypto/key_access.h"

namespace trialmesh::crypto::detail {

namespace {

static_assert(crypto_scalarmult_BYTES == kStaticSecretBytes);

// Bounded: a federation has at most a few thousand members; cleared when full.
class StaticSecretCache {
 public:
  static StaticSecretCache& instance() {
    static StaticSecretCache* cache = new StaticSecretCache;  // never destroyed: no exit races
    return *cache;
  }

  Status get(const Identity& self, const PublicKey& peer, uint8_t* out) {
    std::string key(reinterpret_cast<const char*>(self.pub.bytes().data()), kPublicKeyBytes);
    key.append(reinterpret_cast<const char*>(peer.bytes().data()), kPublicKeyBytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = secrets_.find(key);
      if (it != secrets_.end()) {
        std::memcpy(out, it->second.data(), kStaticSecretBytes);
        return Status::ok();
      }
    }
    auto peerX = toX25519(peer);
    if (!peerX.isOk()) {
      return Status::invalidArgument("participant key " + peer.toText() +
                                     " is not a valid Ed25519 public key");
    }
    X25519KeyPair mine = toX25519(self);
    SecretBytes shared(kStaticSecretBytes);
    if (crypto_scalarmult(shared.data(), KeyAccess::bytes(mine.secret), peerX->bytes.data()) != 0) {
      return Status::invalidArgument("participant key " + peer.toText() +
                                     " is a low-order point; no shared key can be agreed");
    }
    std::memcpy(out, shared.data(), kStaticSecretBytes);
    std::lock_guard<std::mutex> lock(mu_);
    if (secrets_.size() >= kMaxEntries) secrets_.clear();
    secrets_.emplace(std::move(key), std::move(shared));
    return Status::ok();
  }

 private:
  static constexpr size_t kMaxEntries = 8192;
  std::mutex mu_;
  std::unordered_map<std::string, SecretBytes> secrets_;
};

}  // namespace

Status staticSharedSecret(const Identity& self, const PublicKey& peer, uint8_t* out) {
  ensureSodium();
  return StaticSecretCache::instance().get(self, peer, out);
}

}  // namespace trialmesh::crypto::detail
