// A site's node key changes inside its audit log (issue #13 item 3, docs/keys.md "Rotation"):
// the key-rotation entry (EntryKind::kKeyRotation) is signed by the old and the new key, so
// whoever pinned a tree head signed by the old key can follow the log to heads signed by the
// new one, while a head by any other key, or a log that is not an extension of the pinned one,
// still fails. Used by the peer checks (node/peer_audit.h) and `trialmesh audit verify` pins
// (ethics/head_pin.h).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "ethics/audit_log.h"

namespace trialmesh::ethics {

// The bytes both keys sign (docs/ethics.md "key-rotation"):
//   "trialmesh/key-rotation/v1\0" (26 bytes) || u32 BE length || member name ||
//   32 old key || 32 new key || i64 BE signedAtMs
std::string keyRotationMessage(const KeyRotationEvent& event);
// The event with both signatures. REQUIRES oldIdentity.pub != newIdentity.pub.
KeyRotationEvent signKeyRotation(const crypto::Identity& oldIdentity,
                                 const crypto::Identity& newIdentity, std::string member,
                                 int64_t signedAtMs);
// OK if the keys differ and both signatures verify; PermissionDenied naming the key whose
// signature fails otherwise.
[[nodiscard]] Status verifyKeyRotationSignatures(const KeyRotationEvent& event);

// Whether `key` was the log owner's to use at `atMs`: the caller's members file decides
// (node::Member::checkKeyAt). PermissionDenied with the reason (retired, revoked, unknown).
using KeyValidity = std::function<Status(const crypto::PublicKey& key, int64_t atMs)>;
// Whether `key` is the log owner's current key in the caller's members file: the organiser
// vouches for it. A rotation signed by an old key that was no longer valid then (revoked after a
// suspected compromise, so its endorsement proves nothing) is accepted only to such a key.
using KeyVouched = std::function<bool(const crypto::PublicKey& key)>;

// Follows a log from `pinned` (a head verified before) to `next`, signed by another key.
// REQUIRES `entries` to be the log's entries [0, n) with n >= next.treeSize.
// Checks, in order: both head signatures; that next is not smaller than pinned; that the
// first pinned.treeSize entries hash to pinned.root and the first next.treeSize to next.root
// (Corruption "fork detected: ..." otherwise: the log was rolled back or rewritten); that the
// log holds a chain of key-rotation entries, in log order, from pinned.logKey to next.logKey,
// each with both signatures valid and its old key valid at its signing time (or, if it was not,
// its new key vouched for by the members file); and that
// next.logKey is valid at next's timestamp (PermissionDenied "fork detected: ..." otherwise).
// Returns the chain (usually one entry).
Result<std::vector<KeyRotationEvent>> followKeyRotation(const SignedTreeHead& pinned,
                                                        const SignedTreeHead& next,
                                                        std::span<const StoredEntry> entries,
                                                        const KeyValidity& validity,
                                                        const KeyVouched& vouched);

// The key-rotation entries of an open log, found by reading it once in pages (O(n); a site does
// it at start, since rotations are appended only while the node is stopped).
struct LogKeyHistory {
  std::vector<uint64_t> rotations;         // their positions, ascending
  std::optional<KeyRotationEvent> latest;  // the last one, if any
};
Result<LogKeyHistory> readKeyHistory(const AuditLog& log);

// A key-rotation entry as a peer site receives it (it may not read the rest of the log): its
// index, its canonical bytes and the RFC 6962 inclusion proof into the head's tree.
struct ProvenEntry {
  uint64_t index = 0;
  std::string bytes;
  std::vector<Hash> inclusionProof;
};

// followKeyRotation for a peer that holds only `pinned`, the consistency proof from it to
// `next`, and the log's key-rotation entries with inclusion proofs into `next` (the site's
// auditKeyRotations call). Corruption "fork detected: ..." if the proof fails (rewritten or
// rolled back) or an entry is not in the log; PermissionDenied as followKeyRotation otherwise.
Result<std::vector<KeyRotationEvent>> followKeyRotation(const SignedTreeHead& pinned,
                                                        const SignedTreeHead& next,
                                                        std::span<const Hash> consistencyProof,
                                                        std::span<const ProvenEntry> rotations,
                                                        const KeyValidity& validity,
                                                        const KeyVouched& vouched);

}  // namespace trialmesh::ethics
