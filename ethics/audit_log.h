// The node's tamper-evident audit log: typed entries, durable appends, signed tree heads,
// proofs, end-to-end verification and peer fork detection.
//
// Every ethics-relevant event (approvals received/recognised/amended/suspended/revoked, every
// query decision, every released result, config and key changes, node start/stop, alerts) is
// one Entry. An entry's canonical bytes (encodeEntry, layout in docs/ethics.md) are a leaf of
// an RFC 6962 Merkle tree (ethics/merkle.h). append() returns only after the entry is synced
// to disk, so a node may answer an RPC as soon as append() returns. Concurrent appenders share
// one fsync (group commit).
//
// Storage: a RocksDB database of its own. Column family "audit_entries": key = sequence number
// as 8 big-endian bytes; value = the Merkle root of the log just after this entry (32 bytes)
// followed by the entry bytes. The stored root is what lets verify name the first modified
// entry; the signed tree head catches a rewrite of the stored roots too. Default column family:
// key 'n' || level (u8) || index (u64 BE) = hash of the complete subtree of 2^level leaves
// starting at leaf index * 2^level, written in the same atomic batch as the entry that
// completes it. They make open O(log n) and let proofs be served without the tree in memory.
//
// Errors come back as Status/Result. Thread-safety: AuditLog is internally synchronised (one
// mutex); all methods may be called from any thread. Free functions are pure.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "ethics/merkle.h"

namespace rocksdb {
class Env;
}

namespace trialmesh::ethics {

// Frozen: the values are written into entries on disk.
enum class EntryKind : uint8_t {
  kApprovalReceived = 1,
  kApprovalRecognised = 2,
  kApprovalAmended = 3,
  kApprovalSuspended = 4,
  kApprovalRevoked = 5,
  kQuery = 6,
  kResultReleased = 7,
  kConfigChange = 8,
  kKeyChange = 9,
  kNodeStart = 10,
  kNodeStop = 11,
  kAlert = 12,
  kApprovalReinstated = 13,
  kPrivacyBudgetCharged = 14,
  // A secure-aggregation round: the site sent its masked share, which reveals nothing unless
  // every participant's share reaches the coordinator (docs/ethics.md "share-released").
  kShareReleased = 15,
  // A request or connection refused BEFORE the ethics check (bad signature, replay, stale,
  // malformed, not a member, limit, failed handshake, oversized message), or a summary of such
  // refusals that a flood made too many to write one by one (docs/ethics.md "refusal").
  kRefusal = 16,
  // The site's node key was replaced (`trialmesh rotate-key`): old and new key, both signing
  // (ethics/key_rotation.h, docs/ethics.md "key-rotation"). Heads after it are signed by the
  // new key; peers and boards follow the log across it.
  kKeyRotation = 17,
};
const char* entryKindName(EntryKind kind);

// Body of the five approval kinds.
struct ApprovalEvent {
  std::string study;
  uint32_t protocolVersion = 0;
  Hash approvalId{};   // SHA-256 of the approval's canonical bytes (ethics/approval.h)
  std::string detail;  // e.g. the reason of a suspension, the recognising committee
};
// Entry format version 2 (kEntryFormatVersion) adds what an auditor needs to read a query
// without the node's unsigned log: which request (queryId, the signed request's nonce, unique
// per request so repeated queries are told apart), who (the coordinator's member name), what
// (the canonical query text) and under which approval. Entries decoded from version 1 leave
// them empty (and approvalVersion 0).
struct QueryAuditFields {
  std::string queryId;          // hex of the request nonce
  std::string coordinatorName;  // member name in the site's members file; "" if unknown
  std::string queryText;        // canonical query text (its SHA-256 is queryHash)
  std::string approvalStudy;    // the approval used; "" when none was found
  uint32_t approvalVersion = 0;
  Hash approvalId{};
  bool operator==(const QueryAuditFields&) const = default;
};
// A query decision. `reason` is the refusal text the coordinator saw, or the approval used.
struct QueryEvent {
  crypto::PublicKey coordinator{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  std::string study;
  Hash queryHash{};  // canonical query hash
  bool allowed = false;
  std::string reason;
  QueryAuditFields audit{};  // version 2
};
// kResultReleased: the site's unmasked partial result was sent to the coordinator (a plain
// query). kShareReleased: a masked share was sent (a secure round).
struct ResultReleasedEvent {
  crypto::PublicKey coordinator{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  std::string study;
  Hash queryHash{};
  uint64_t cells = 0;
  uint64_t suppressedCells = 0;
  QueryAuditFields audit{};  // version 2
};
struct ConfigChangeEvent {
  std::string setting;
  std::string oldValue;
  std::string newValue;
};
struct KeyChangeEvent {
  std::string role;  // "node", "site-committee", ...
  crypto::PublicKey oldKey{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  crypto::PublicKey newKey{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
};
// kKeyRotation: signed by both keys over ethics::keyRotationMessage (ethics/key_rotation.h),
// which covers every field but the signatures, so neither key can be swapped afterwards.
struct KeyRotationEvent {
  std::string member;  // the site's member name in the members file
  crypto::PublicKey oldKey{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  crypto::PublicKey newKey{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  int64_t signedAtMs = 0;  // when both keys signed, ms since the Unix epoch
  crypto::Signature oldSignature{};
  crypto::Signature newSignature{};
  bool operator==(const KeyRotationEvent&) const = default;
};
// Node start (detail = software version) and stop (detail = reason).
struct NodeEvent {
  std::string detail;
};
// A peer's log failed a check (fork, rollback, bad signature).
struct AlertEvent {
  crypto::PublicKey peer{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  std::string message;
};

// kRefusal. Never holds the request body: only who, why and the error text.
struct RefusalEvent {
  std::string reasonClass;  // "bad-signature", "replay", "stale", "malformed", "membership",
                            // "limit", "handshake" or "oversized"
  std::string peer;         // the authenticated peer's member name (or key), or "unauthenticated"
  std::string remote;       // the network address the request came from
  std::string message;      // the error text; for a summary, the sentence summarising it
  // 0 for one refusal. A summary entry: the number of further refusals of this class that
  // were only counted (the rate limit of limits.audit_refusals_per_minute).
  uint64_t summarised = 0;
  bool operator==(const RefusalEvent&) const = default;
};

// secure-dp: a query's charge to its (study, protocol version, coordinator) privacy budget,
// made before the query runs (or refused because the budget would be exceeded).
struct BudgetChargeEvent {
  crypto::PublicKey coordinator{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  std::string study;
  uint32_t protocolVersion = 0;  // of the approval whose budget it is
  Hash queryHash{};
  double epsilon = 0;  // this query's charge (the approval's dp_epsilon_per_query)
  double spent = 0;    // the account's total including this charge; 0 when refused
  double budget = 0;   // the approval's dp_budget
  bool charged = false;
  std::string reason;  // empty when charged; the refusal the coordinator saw otherwise
};

// "epsilon 0.5, spent 1.0 of 1.5": a charge's numbers, as describeEntry and exports show them.
std::string budgetChargeText(const BudgetChargeEvent& b);

using EntryBody =
    std::variant<ApprovalEvent, QueryEvent, ResultReleasedEvent, ConfigChangeEvent, KeyChangeEvent,
                 NodeEvent, AlertEvent, BudgetChargeEvent, RefusalEvent, KeyRotationEvent>;

// Entry formats: 1 (until issue 14), 2 (query and release entries carry QueryAuditFields).
// Every other body is the same in both.
inline constexpr uint8_t kEntryFormatVersion = 2;

struct Entry {
  uint64_t sequence = 0;  // index of the leaf in the tree, from 0
  int64_t timestampMs = 0;
  EntryKind kind = EntryKind::kNodeStart;
  EntryBody body;
  // The first byte of the encoding; decodeEntry keeps it so an old entry re-encodes to the
  // same bytes. Last here so that existing aggregate initialisers stay valid.
  uint8_t formatVersion = kEntryFormatVersion;
};

// Canonical bytes of an entry (docs/ethics.md, "Audit entries"). InvalidArgument if the body
// type does not match the kind.
Result<std::string> encodeEntry(const Entry& entry);
// Strict inverse of encodeEntry: Corruption (naming the field) on truncation, unknown kind or
// version, or trailing bytes.
Result<Entry> decodeEntry(std::span<const uint8_t> bytes);
// One line for people: "#12 2026-05-01T10:00:00.000Z query study=LUNG-7 allowed ...".
std::string describeEntry(const Entry& entry);

// A signed statement of the log's size and root at a moment.
struct SignedTreeHead {
  crypto::PublicKey logKey{std::array<uint8_t, crypto::kPublicKeyBytes>{}};  // the node's key
  uint64_t treeSize = 0;
  int64_t timestampMs = 0;
  Hash root{};
  crypto::Signature signature{};
};
// The bytes the signature covers (82 bytes, docs/ethics.md "Signed tree head"):
//   offset 0  u16 BE  format version = 1
//   offset 2  32      log public key (Ed25519)
//   offset 34 u64 BE  tree size
//   offset 42 i64 BE  timestamp, ms since the Unix epoch
//   offset 50 32      root hash (RFC 6962 MTH of entries [0, tree size))
// The Ed25519 signature is over "trialmesh/audit-sth/v1\0" (23 bytes) || those 82 bytes, so a
// node key's signature on anything else can never pass as a tree head.
std::string treeHeadBytes(const SignedTreeHead& sth);
SignedTreeHead signTreeHead(const crypto::Identity& identity, uint64_t treeSize,
                            int64_t timestampMs, const Hash& root);
// OK if the signature verifies with sth.logKey; PermissionDenied otherwise.
[[nodiscard]] Status verifyTreeHeadSignature(const SignedTreeHead& sth);
// Wire/storage form: the 82 signed bytes followed by the 64-byte signature.
std::string encodeTreeHead(const SignedTreeHead& sth);
Result<SignedTreeHead> decodeTreeHead(std::span<const uint8_t> bytes);

// An entry as stored and as downloaded by an auditor: the root recorded at append and the
// entry's canonical bytes.
struct StoredEntry {
  Hash rootAfter{};
  std::string bytes;
};

// Verifies a downloaded log end to end. Checks, in order: the tree head's signature (and that
// it is by `logKey`); for each entry i: it decodes, records sequence number i, and the Merkle
// root over entries [0, i] equals the root stored with it; that the number of entries equals
// the tree size; that the root equals the signed root; and, if `earlier` is given, that it is
// signed by the same key and its root equals the root of the first earlier->treeSize entries.
// The first failure is returned as Corruption (PermissionDenied for a bad signature) whose
// message starts "entry <i>: " when an entry is to blame.
[[nodiscard]] Status verifyLog(std::span<const StoredEntry> entries, const SignedTreeHead& sth,
                               const crypto::PublicKey& logKey,
                               const SignedTreeHead* earlier = nullptr);

// Checks a peer's new tree head against the one we saw before: both signatures, the same log
// key, no shrinking, and the consistency proof from previous to next. A log that was
// rewritten or forked fails with Corruption, message starting "fork detected: "; the node
// should then append an AlertEvent, log the message and count it in a metric.
[[nodiscard]] Status checkPeerHead(const SignedTreeHead& previous, const SignedTreeHead& next,
                                   std::span<const Hash> consistencyProof);

struct AuditLogOptions {
  // Milliseconds since the Unix epoch; defaults to the system clock. Tests inject a fake.
  std::function<int64_t()> clock;
  // fsync every append before it returns. Default true; only benchmarks turn it off.
  bool sync = true;
  // Recompute every stored entry's leaf hash and the root on open and refuse a log in which a
  // middle entry was modified (Corruption naming it). O(n); default true. Only tools that read
  // a log to report on it (and benchmarks) turn it off.
  bool checkEntriesOnOpen = true;
  // The RocksDB environment (file system) under the log; null: the default. Tests pass one
  // that can lose power (tests/common/power_loss_fs.h) to check what survives a power cut.
  rocksdb::Env* env = nullptr;
};

// How long append() waits.
enum class Durability {
  // Return once the entry is fsynced (shared with concurrent appenders). The default.
  kSynced,
  // Return once the entry is written to the OS (it survives kill -9, not a power cut). It
  // becomes durable with the next synced append or flush(). Use only when a synced append or
  // flush() is certain to follow before anything depending on the entry leaves the node.
  kDeferred,
};

class AuditLog {
 public:
  // Opens or creates the log database at `path`. The identity signs tree heads; the log keeps a
  // reference, so it must outlive the AuditLog. Reads the last entry and the stored tree nodes
  // and checks that they agree (a log written before tree nodes were stored is indexed once)
  // and, unless options.checkEntriesOnOpen is off, checks every stored entry against its stored
  // leaf hash and the root (O(n), see checkEntriesOnOpen). Corruption naming the entry if they
  // do not agree; IOError if RocksDB cannot open the path.
  static Result<std::unique_ptr<AuditLog>> open(const std::string& path,
                                                const crypto::Identity& identity,
                                                AuditLogOptions options = {});
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends an entry of `kind` with `body` (sequence and timestamp are assigned here) and, for
  // kSynced, returns only once it is on disk (fdatasync of the RocksDB WAL; appenders arriving
  // while one fsync runs share the next). Returns the entry as written.
  // InvalidArgument if body does not fit kind; IOError if the write fails (the log is then
  // unchanged) or if an fsync failed: that error is sticky, every later append fails too, since
  // after a failed fsync the kernel may have dropped the data (restart the node).
  Result<Entry> append(EntryKind kind, EntryBody body, Durability durability = Durability::kSynced);
  // Makes every entry appended so far durable. Cheap when nothing is pending.
  [[nodiscard]] Status flush();
  // Makes entries [0, size) durable: returns once they are fsynced, joining an fsync that is
  // running or starting one that also covers whatever else was appended by then (so callers
  // that append kDeferred and then call this from other threads share fsyncs). For a caller
  // that must not block on the disk itself (e.g. an event loop): append kDeferred there and
  // wait here on another thread. InvalidArgument if size exceeds the entries written; the
  // sticky IOError of a failed fsync otherwise.
  [[nodiscard]] Status syncThrough(uint64_t size);

  // size, root, tree heads, ranges and proofs cover durable entries only, so a signed head never
  // covers an entry that a power cut could still take away.
  uint64_t size() const;
  Hash root() const;
  // A tree head for the current size, signed now.
  SignedTreeHead signedTreeHead() const;
  // Stored entries [begin, end). InvalidArgument if end > size() or begin > end.
  Result<std::vector<StoredEntry>> readRange(uint64_t begin, uint64_t end) const;
  Result<std::vector<Hash>> inclusionProof(uint64_t index, uint64_t treeSize) const;
  Result<std::vector<Hash>> consistencyProof(uint64_t size1, uint64_t size2) const;

  // Backup (`trialmesh backup`): with appends held off, makes every written entry durable,
  // runs `alongside` (checkpoints of the node's other databases, so they are consistent with
  // the log: no entry is appended while they are taken), writes a RocksDB checkpoint of the log
  // to `targetDir` (which must not exist) and returns a tree head signed for exactly the
  // entries in the copy. An error from `alongside` is returned as is. `alongside` runs with the
  // log's lock held: it must not call this AuditLog.
  Result<SignedTreeHead> checkpoint(const std::string& targetDir,
                                    const std::function<Status()>& alongside);

  // Reads every stored entry of the database at `path` in key order without any check, for
  // auditors and tests (the log must not be open in this process).
  static Result<std::vector<StoredEntry>> readAllUnchecked(const std::string& path);

  class Impl;

 private:
  explicit AuditLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trialmesh::ethics
