#include "ethics/key_rotation.h"

#include <algorithm>
#include <utility>

#include "ethics/codec.h"
#include "ethics/merkle.h"

namespace trialmesh::ethics {
namespace {

constexpr std::string_view kKeyRotationContext{"trialmesh/key-rotation/v1\0", 26};

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The chain of key-rotation entries (in log order) from pinned.logKey to next.logKey.
Result<std::vector<KeyRotationEvent>> rotationChain(
    const SignedTreeHead& pinned, const SignedTreeHead& next,
    const std::vector<std::pair<uint64_t, Entry>>& entries, const KeyValidity& validity,
    const KeyVouched& vouched) {
  const std::string was = "the head pinned before (" + std::to_string(pinned.treeSize) +
                          " entries, signed by " + pinned.logKey.toText() + ")";
  std::vector<KeyRotationEvent> chain;
  crypto::PublicKey current = pinned.logKey;
  for (const auto& [i, entry] : entries) {
    if (current == next.logKey) break;
    const auto* rotation = std::get_if<KeyRotationEvent>(&entry.body);
    if (rotation == nullptr || rotation->oldKey != current) continue;
    const std::string at = "fork detected: entry " + std::to_string(i) + " (key rotation " +
                           rotation->oldKey.toText() + " -> " + rotation->newKey.toText() + "): ";
    Status signatures = verifyKeyRotationSignatures(*rotation);
    if (!signatures.isOk()) return Status::permissionDenied(at + signatures.message());
    Status valid = validity(rotation->oldKey, rotation->signedAtMs);
    if (!valid.isOk() && !(vouched && vouched(rotation->newKey))) {
      return Status::permissionDenied(at +
                                      "the old key could no longer sign it, and the new key "
                                      "is not the member's current key: " +
                                      valid.message());
    }
    chain.push_back(*rotation);
    current = rotation->newKey;
  }
  if (current != next.logKey) {
    return Status::permissionDenied(
        "fork detected: the head is signed by " + next.logKey.toText() + " but " + was +
        " and the log holds no key-rotation entry from that key to it" +
        (chain.empty() ? std::string() : " (it rotates to " + current.toText() + " instead)"));
  }
  Status valid = validity(next.logKey, next.timestampMs);
  if (!valid.isOk()) {
    return Status::permissionDenied("fork detected: the head's key is not accepted: " +
                                    valid.message());
  }
  return chain;
}

// Both heads' signatures, and no rollback from the pinned one. Returns how to name the pinned
// head in a later error.
Result<std::string> checkHeads(const SignedTreeHead& pinned, const SignedTreeHead& next) {
  TM_RETURN_IF_ERROR(verifyTreeHeadSignature(pinned));
  TM_RETURN_IF_ERROR(verifyTreeHeadSignature(next));
  std::string was = "the head pinned before (" + std::to_string(pinned.treeSize) +
                    " entries, signed by " + pinned.logKey.toText() + ")";
  if (next.treeSize < pinned.treeSize) {
    return Status::corruption("fork detected: the log signed by " + next.logKey.toText() + " has " +
                              std::to_string(next.treeSize) + " entries, fewer than " + was +
                              " (rolled back)");
  }
  return was;
}

}  // namespace

std::string keyRotationMessage(const KeyRotationEvent& e) {
  detail::Writer w;
  w.str(e.member);
  w.fixed(e.oldKey.bytes());
  w.fixed(e.newKey.bytes());
  w.i64(e.signedAtMs);
  return std::string(kKeyRotationContext) + w.take();
}

KeyRotationEvent signKeyRotation(const crypto::Identity& oldIdentity,
                                 const crypto::Identity& newIdentity, std::string member,
                                 int64_t signedAtMs) {
  KeyRotationEvent e;
  e.member = std::move(member);
  e.oldKey = oldIdentity.pub;
  e.newKey = newIdentity.pub;
  e.signedAtMs = signedAtMs;
  const std::string message = keyRotationMessage(e);
  e.oldSignature = crypto::sign(oldIdentity.secret, bytesOf(message));
  e.newSignature = crypto::sign(newIdentity.secret, bytesOf(message));
  return e;
}

Status verifyKeyRotationSignatures(const KeyRotationEvent& e) {
  if (e.oldKey == e.newKey) {
    return Status::permissionDenied("key rotation of '" + e.member + "' names the same key " +
                                    e.oldKey.toText() + " as old and new");
  }
  const std::string message = keyRotationMessage(e);
  if (!crypto::verify(e.oldKey, bytesOf(message), e.oldSignature)) {
    return Status::permissionDenied("key rotation of '" + e.member +
                                    "': the signature of the old key " + e.oldKey.toText() +
                                    " does not verify (forged or altered)");
  }
  if (!crypto::verify(e.newKey, bytesOf(message), e.newSignature)) {
    return Status::permissionDenied("key rotation of '" + e.member +
                                    "': the signature of the new key " + e.newKey.toText() +
                                    " does not verify (forged or altered)");
  }
  return Status::ok();
}

Result<std::vector<KeyRotationEvent>> followKeyRotation(const SignedTreeHead& pinned,
                                                        const SignedTreeHead& next,
                                                        std::span<const StoredEntry> entries,
                                                        const KeyValidity& validity,
                                                        const KeyVouched& vouched) {
  TM_ASSIGN_OR_RETURN(const std::string was, checkHeads(pinned, next));
  if (entries.size() < next.treeSize) {
    return Status::corruption("the downloaded log has " + std::to_string(entries.size()) +
                              " entries but its head covers " + std::to_string(next.treeSize));
  }
  MerkleTree tree;
  for (uint64_t i = 0; i < next.treeSize; ++i) tree.append(leafHash(bytesOf(entries[i].bytes)));
  if (tree.rootAt(pinned.treeSize).value() != pinned.root) {
    return Status::corruption("fork detected: the log's first " + std::to_string(pinned.treeSize) +
                              " entries no longer hash to " + was + ": the log was rewritten");
  }
  if (tree.root() != next.root) {
    return Status::corruption(
        "fork detected: the downloaded entries do not hash to the root of "
        "the head signed by " +
        next.logKey.toText() + " (" + std::to_string(next.treeSize) + " entries)");
  }
  std::vector<std::pair<uint64_t, Entry>> decoded;
  for (uint64_t i = 0; i < next.treeSize; ++i) {
    auto entry = decodeEntry(bytesOf(entries[i].bytes));
    if (!entry) return entry.status().withContext("entry " + std::to_string(i));
    if (entry->kind == EntryKind::kKeyRotation) decoded.emplace_back(i, std::move(*entry));
  }
  return rotationChain(pinned, next, decoded, validity, vouched);
}

Result<std::vector<KeyRotationEvent>> followKeyRotation(const SignedTreeHead& pinned,
                                                        const SignedTreeHead& next,
                                                        std::span<const Hash> consistencyProof,
                                                        std::span<const ProvenEntry> rotations,
                                                        const KeyValidity& validity,
                                                        const KeyVouched& vouched) {
  TM_ASSIGN_OR_RETURN(const std::string was, checkHeads(pinned, next));
  Status consistent =
      verifyConsistency(pinned.treeSize, next.treeSize, pinned.root, next.root, consistencyProof);
  if (!consistent.isOk()) {
    return Status::corruption("fork detected: the log signed by " + next.logKey.toText() +
                              " is not an extension of " + was + ": " + consistent.message());
  }
  std::vector<std::pair<uint64_t, Entry>> decoded;
  for (const ProvenEntry& p : rotations) {
    const std::string at = "fork detected: key-rotation entry " + std::to_string(p.index) + ": ";
    Status included = verifyInclusion(p.index, next.treeSize, leafHash(bytesOf(p.bytes)),
                                      p.inclusionProof, next.root);
    if (!included.isOk()) {
      return Status::corruption(at + "not in the log of the head signed by " +
                                next.logKey.toText() + ": " + included.message());
    }
    auto entry = decodeEntry(bytesOf(p.bytes));
    if (!entry) return Status::corruption(at + entry.status().message());
    if (entry->sequence != p.index) {
      return Status::corruption(at + "records sequence number " + std::to_string(entry->sequence));
    }
    decoded.emplace_back(p.index, std::move(*entry));
  }
  std::sort(decoded.begin(), decoded.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return rotationChain(pinned, next, decoded, validity, vouched);
}

Result<LogKeyHistory> readKeyHistory(const AuditLog& log) {
  constexpr uint64_t kPage = 10'000;
  // Entry layout (docs/ethics.md): version u8, sequence u64, timestamp i64, then the kind.
  constexpr size_t kKindOffset = 17;
  LogKeyHistory out;
  const uint64_t size = log.size();
  for (uint64_t begin = 0; begin < size; begin += kPage) {
    TM_ASSIGN_OR_RETURN(auto page, log.readRange(begin, std::min(size, begin + kPage)));
    for (size_t i = 0; i < page.size(); ++i) {
      const std::string& bytes = page[i].bytes;
      if (bytes.size() <= kKindOffset || static_cast<uint8_t>(bytes[kKindOffset]) !=
                                             static_cast<uint8_t>(EntryKind::kKeyRotation)) {
        continue;
      }
      auto entry = decodeEntry(bytesOf(bytes));
      if (!entry) return entry.status().withContext("audit entry " + std::to_string(begin + i));
      const auto* rotation = std::get_if<KeyRotationEvent>(&entry->body);
      if (rotation == nullptr) continue;
      out.rotations.push_back(begin + i);
      out.latest = *rotation;
    }
  }
  return out;
}

}  // namespace trialmesh::ethics
