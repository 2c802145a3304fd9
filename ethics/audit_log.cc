#include "ethics/audit_log.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>
#include <time.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>

#include "ethics/codec.h"
#include "ethics/key_rotation.h"

namespace trialmesh::ethics {
namespace {

using detail::bytesOf;
using detail::Reader;
using detail::Writer;

constexpr uint16_t kTreeHeadFormatVersion = 1;
constexpr std::string_view kTreeHeadContext{"trialmesh/audit-sth/v1\0", 23};
// A tree head's signed bytes: version u16, log key 32, size u64, timestamp i64, root 32 (82 B).
constexpr const char* kEntriesFamily = "audit_entries";

// Which EntryBody alternative each kind carries.
Result<size_t> bodyIndexFor(EntryKind kind) {
  switch (kind) {
    case EntryKind::kApprovalReceived:
    case EntryKind::kApprovalRecognised:
    case EntryKind::kApprovalAmended:
    case EntryKind::kApprovalSuspended:
    case EntryKind::kApprovalRevoked:
    case EntryKind::kApprovalReinstated:
      return size_t{0};
    case EntryKind::kQuery:
      return size_t{1};
    case EntryKind::kResultReleased:
    case EntryKind::kShareReleased:
      return size_t{2};
    case EntryKind::kConfigChange:
      return size_t{3};
    case EntryKind::kKeyChange:
      return size_t{4};
    case EntryKind::kNodeStart:
    case EntryKind::kNodeStop:
      return size_t{5};
    case EntryKind::kAlert:
      return size_t{6};
    case EntryKind::kPrivacyBudgetCharged:
      return size_t{7};
    case EntryKind::kRefusal:
      return size_t{8};
    case EntryKind::kKeyRotation:
      return size_t{9};
  }
  return Status::corruption("unknown entry kind " + std::to_string(static_cast<int>(kind)));
}

std::string keyText(const crypto::PublicKey& k) { return k.toText(); }

// Version 2 tail of query and release entries.
void writeAudit(Writer& w, const QueryAuditFields& a) {
  w.str(a.queryId);
  w.str(a.coordinatorName);
  w.str(a.queryText);
  w.str(a.approvalStudy);
  w.u32(a.approvalVersion);
  w.fixed(a.approvalId);
}

Status readAudit(Reader& r, QueryAuditFields& a) {
  TM_ASSIGN_OR_RETURN(a.queryId, r.str("query id"));
  TM_ASSIGN_OR_RETURN(a.coordinatorName, r.str("coordinator name"));
  TM_ASSIGN_OR_RETURN(a.queryText, r.str("query text"));
  TM_ASSIGN_OR_RETURN(a.approvalStudy, r.str("approval study"));
  TM_ASSIGN_OR_RETURN(a.approvalVersion, r.u32("approval version"));
  TM_ASSIGN_OR_RETURN(a.approvalId, r.fixed<32>("approval id"));
  return Status::ok();
}

// " query-id=... coordinator-name=... approval=LUNG-7 v1 text='...'" for describeEntry.
std::string auditText(const QueryAuditFields& a) {
  std::string s;
  if (!a.queryId.empty()) s += " id=" + a.queryId;
  if (!a.coordinatorName.empty()) s += " by=" + a.coordinatorName;
  if (!a.approvalStudy.empty()) {
    s += " approval=" + a.approvalStudy + " v" + std::to_string(a.approvalVersion);
  }
  if (!a.queryText.empty()) s += " text='" + a.queryText + "'";
  return s;
}

std::string formatTime(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

std::string keyFor(uint64_t seq) {
  Writer w;
  w.u64(seq);
  return w.take();
}

Status fromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::ok();
  return Status::ioError(what + ": " + s.ToString());
}

}  // namespace

std::string budgetChargeText(const BudgetChargeEvent& b) {
  using detail::realNumberText;
  return "epsilon " + realNumberText(b.epsilon) + ", spent " + realNumberText(b.spent) + " of " +
         realNumberText(b.budget);
}

const char* entryKindName(EntryKind kind) {
  switch (kind) {
    case EntryKind::kApprovalReceived:
      return "approval-received";
    case EntryKind::kApprovalRecognised:
      return "approval-recognised";
    case EntryKind::kApprovalAmended:
      return "approval-amended";
    case EntryKind::kApprovalSuspended:
      return "approval-suspended";
    case EntryKind::kApprovalRevoked:
      return "approval-revoked";
    case EntryKind::kApprovalReinstated:
      return "approval-reinstated";
    case EntryKind::kQuery:
      return "query";
    case EntryKind::kResultReleased:
      return "result-released";
    case EntryKind::kConfigChange:
      return "config-change";
    case EntryKind::kKeyChange:
      return "key-change";
    case EntryKind::kNodeStart:
      return "node-start";
    case EntryKind::kNodeStop:
      return "node-stop";
    case EntryKind::kAlert:
      return "alert";
    case EntryKind::kPrivacyBudgetCharged:
      return "privacy-budget-charged";
    case EntryKind::kShareReleased:
      return "share-released";
    case EntryKind::kRefusal:
      return "refusal";
    case EntryKind::kKeyRotation:
      return "key-rotation";
  }
  return "unknown";
}

Result<std::string> encodeEntry(const Entry& e) {
  auto index = bodyIndexFor(e.kind);
  if (!index.isOk() || *index != e.body.index()) {
    return Status::invalidArgument(std::string("audit entry of kind '") + entryKindName(e.kind) +
                                   "' has a body of the wrong type");
  }
  if (e.formatVersion != 1 && e.formatVersion != kEntryFormatVersion) {
    return Status::invalidArgument("audit entry format version " + std::to_string(e.formatVersion) +
                                   " is not supported");
  }
  const bool v2 = e.formatVersion >= 2;
  Writer w;
  w.u8(e.formatVersion);
  w.u64(e.sequence);
  w.i64(e.timestampMs);
  w.u8(static_cast<uint8_t>(e.kind));
  std::visit(
      [&w, v2](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, ApprovalEvent>) {
          w.str(b.study);
          w.u32(b.protocolVersion);
          w.fixed(b.approvalId);
          w.str(b.detail);
        } else if constexpr (std::is_same_v<T, QueryEvent>) {
          w.fixed(b.coordinator.bytes());
          w.str(b.study);
          w.fixed(b.queryHash);
          w.u8(b.allowed ? 1 : 0);
          w.str(b.reason);
          if (v2) writeAudit(w, b.audit);
        } else if constexpr (std::is_same_v<T, ResultReleasedEvent>) {
          w.fixed(b.coordinator.bytes());
          w.str(b.study);
          w.fixed(b.queryHash);
          w.u64(b.cells);
          w.u64(b.suppressedCells);
          if (v2) writeAudit(w, b.audit);
        } else if constexpr (std::is_same_v<T, ConfigChangeEvent>) {
          w.str(b.setting);
          w.str(b.oldValue);
          w.str(b.newValue);
        } else if constexpr (std::is_same_v<T, KeyChangeEvent>) {
          w.str(b.role);
          w.fixed(b.oldKey.bytes());
          w.fixed(b.newKey.bytes());
        } else if constexpr (std::is_same_v<T, NodeEvent>) {
          w.str(b.detail);
        } else if constexpr (std::is_same_v<T, AlertEvent>) {
          w.fixed(b.peer.bytes());
          w.str(b.message);
        } else if constexpr (std::is_same_v<T, RefusalEvent>) {
          w.str(b.reasonClass);
          w.str(b.peer);
          w.str(b.remote);
          w.str(b.message);
          w.u64(b.summarised);
        } else if constexpr (std::is_same_v<T, KeyRotationEvent>) {
          w.str(b.member);
          w.fixed(b.oldKey.bytes());
          w.fixed(b.newKey.bytes());
          w.i64(b.signedAtMs);
          w.fixed(b.oldSignature);
          w.fixed(b.newSignature);
        } else {
          static_assert(std::is_same_v<T, BudgetChargeEvent>);
          w.fixed(b.coordinator.bytes());
          w.str(b.study);
          w.u32(b.protocolVersion);
          w.fixed(b.queryHash);
          w.f64(b.epsilon);
          w.f64(b.spent);
          w.f64(b.budget);
          w.u8(b.charged ? 1 : 0);
          w.str(b.reason);
        }
      },
      e.body);
  return w.take();
}

Result<Entry> decodeEntry(std::span<const uint8_t> bytes) {
  Reader r(bytes, "audit entry");
  TM_ASSIGN_OR_RETURN(uint8_t version, r.u8("format version"));
  if (version != 1 && version != kEntryFormatVersion) {
    return Status::corruption("audit entry: format version " + std::to_string(version) +
                              " is not supported (this build reads versions 1 and 2)");
  }
  Entry e;
  e.formatVersion = version;
  TM_ASSIGN_OR_RETURN(e.sequence, r.u64("sequence"));
  TM_ASSIGN_OR_RETURN(e.timestampMs, r.i64("timestamp"));
  TM_ASSIGN_OR_RETURN(uint8_t kind, r.u8("kind"));
  e.kind = static_cast<EntryKind>(kind);
  auto index = bodyIndexFor(e.kind);
  if (!index.isOk()) return Status::corruption("audit entry: " + index.status().message());
  switch (*index) {
    case 0: {
      ApprovalEvent b;
      TM_ASSIGN_OR_RETURN(b.study, r.str("study"));
      TM_ASSIGN_OR_RETURN(b.protocolVersion, r.u32("protocol version"));
      TM_ASSIGN_OR_RETURN(b.approvalId, r.fixed<32>("approval id"));
      TM_ASSIGN_OR_RETURN(b.detail, r.str("detail"));
      e.body = std::move(b);
      break;
    }
    case 1: {
      QueryEvent b;
      TM_ASSIGN_OR_RETURN(auto key, r.fixed<32>("coordinator"));
      b.coordinator = crypto::PublicKey(key);
      TM_ASSIGN_OR_RETURN(b.study, r.str("study"));
      TM_ASSIGN_OR_RETURN(b.queryHash, r.fixed<32>("query hash"));
      TM_ASSIGN_OR_RETURN(b.allowed, r.flag("decision", "refused", "allowed"));
      TM_ASSIGN_OR_RETURN(b.reason, r.str("reason"));
      if (version >= 2) TM_RETURN_IF_ERROR(readAudit(r, b.audit));
      e.body = std::move(b);
      break;
    }
    case 2: {
      ResultReleasedEvent b;
      TM_ASSIGN_OR_RETURN(auto key, r.fixed<32>("coordinator"));
      b.coordinator = crypto::PublicKey(key);
      TM_ASSIGN_OR_RETURN(b.study, r.str("study"));
      TM_ASSIGN_OR_RETURN(b.queryHash, r.fixed<32>("query hash"));
      TM_ASSIGN_OR_RETURN(b.cells, r.u64("cells"));
      TM_ASSIGN_OR_RETURN(b.suppressedCells, r.u64("suppressed cells"));
      if (version >= 2) TM_RETURN_IF_ERROR(readAudit(r, b.audit));
      e.body = std::move(b);
      break;
    }
    case 3: {
      ConfigChangeEvent b;
      TM_ASSIGN_OR_RETURN(b.setting, r.str("setting"));
      TM_ASSIGN_OR_RETURN(b.oldValue, r.str("old value"));
      TM_ASSIGN_OR_RETURN(b.newValue, r.str("new value"));
      e.body = std::move(b);
      break;
    }
    case 4: {
      KeyChangeEvent b;
      TM_ASSIGN_OR_RETURN(b.role, r.str("role"));
      TM_ASSIGN_OR_RETURN(auto oldKey, r.fixed<32>("old key"));
      TM_ASSIGN_OR_RETURN(auto newKey, r.fixed<32>("new key"));
      b.oldKey = crypto::PublicKey(oldKey);
      b.newKey = crypto::PublicKey(newKey);
      e.body = std::move(b);
      break;
    }
    case 5: {
      NodeEvent b;
      TM_ASSIGN_OR_RETURN(b.detail, r.str("detail"));
      e.body = std::move(b);
      break;
    }
    case 6: {
      AlertEvent b;
      TM_ASSIGN_OR_RETURN(auto key, r.fixed<32>("peer"));
      b.peer = crypto::PublicKey(key);
      TM_ASSIGN_OR_RETURN(b.message, r.str("message"));
      e.body = std::move(b);
      break;
    }
    case 8: {
      RefusalEvent b;
      TM_ASSIGN_OR_RETURN(b.reasonClass, r.str("reason class"));
      TM_ASSIGN_OR_RETURN(b.peer, r.str("peer"));
      TM_ASSIGN_OR_RETURN(b.remote, r.str("remote"));
      TM_ASSIGN_OR_RETURN(b.message, r.str("message"));
      TM_ASSIGN_OR_RETURN(b.summarised, r.u64("summarised"));
      e.body = std::move(b);
      break;
    }
    case 9: {
      KeyRotationEvent b;
      TM_ASSIGN_OR_RETURN(b.member, r.str("member"));
      TM_ASSIGN_OR_RETURN(auto oldKey, r.fixed<32>("old key"));
      TM_ASSIGN_OR_RETURN(auto newKey, r.fixed<32>("new key"));
      b.oldKey = crypto::PublicKey(oldKey);
      b.newKey = crypto::PublicKey(newKey);
      TM_ASSIGN_OR_RETURN(b.signedAtMs, r.i64("signed at"));
      TM_ASSIGN_OR_RETURN(b.oldSignature, r.fixed<64>("old key signature"));
      TM_ASSIGN_OR_RETURN(b.newSignature, r.fixed<64>("new key signature"));
      e.body = std::move(b);
      break;
    }
    default: {
      BudgetChargeEvent b;
      TM_ASSIGN_OR_RETURN(auto key, r.fixed<32>("coordinator"));
      b.coordinator = crypto::PublicKey(key);
      TM_ASSIGN_OR_RETURN(b.study, r.str("study"));
      TM_ASSIGN_OR_RETURN(b.protocolVersion, r.u32("protocol version"));
      TM_ASSIGN_OR_RETURN(b.queryHash, r.fixed<32>("query hash"));
      TM_ASSIGN_OR_RETURN(b.epsilon, r.f64("epsilon"));
      TM_ASSIGN_OR_RETURN(b.spent, r.f64("spent"));
      TM_ASSIGN_OR_RETURN(b.budget, r.f64("budget"));
      TM_ASSIGN_OR_RETURN(b.charged, r.flag("charged", "refused", "charged"));
      TM_ASSIGN_OR_RETURN(b.reason, r.str("reason"));
      e.body = std::move(b);
      break;
    }
  }
  TM_RETURN_IF_ERROR(r.finish());
  return e;
}

std::string describeEntry(const Entry& e) {
  std::string s = "#" + std::to_string(e.sequence) + " " + formatTime(e.timestampMs) + " " +
                  entryKindName(e.kind);
  std::visit(
      [&s](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, ApprovalEvent>) {
          s += " study=" + b.study + " v" + std::to_string(b.protocolVersion) +
               " approval=" + shortHex(b.approvalId);
          if (!b.detail.empty()) s += " " + b.detail;
        } else if constexpr (std::is_same_v<T, QueryEvent>) {
          s += " study=" + b.study + " coordinator=" + keyText(b.coordinator) +
               " query=" + shortHex(b.queryHash) + auditText(b.audit) +
               (b.allowed ? " allowed: " : " refused: ") + b.reason;
        } else if constexpr (std::is_same_v<T, ResultReleasedEvent>) {
          s += " study=" + b.study + " coordinator=" + keyText(b.coordinator) +
               " query=" + shortHex(b.queryHash) + " cells=" + std::to_string(b.cells) +
               " suppressed=" + std::to_string(b.suppressedCells) + auditText(b.audit);
        } else if constexpr (std::is_same_v<T, ConfigChangeEvent>) {
          s += " " + b.setting + ": '" + b.oldValue + "' -> '" + b.newValue + "'";
        } else if constexpr (std::is_same_v<T, KeyChangeEvent>) {
          s += " " + b.role + ": " + keyText(b.oldKey) + " -> " + keyText(b.newKey);
        } else if constexpr (std::is_same_v<T, NodeEvent>) {
          s += " " + b.detail;
        } else if constexpr (std::is_same_v<T, AlertEvent>) {
          s += " peer=" + keyText(b.peer) + " " + b.message;
        } else if constexpr (std::is_same_v<T, RefusalEvent>) {
          s += " class=" + b.reasonClass + " peer=" + b.peer + " remote=" + b.remote;
          if (b.summarised > 0) s += " summarised=" + std::to_string(b.summarised);
          s += ": " + b.message;
        } else if constexpr (std::is_same_v<T, KeyRotationEvent>) {
          s += " member=" + b.member + " " + keyText(b.oldKey) + " -> " + keyText(b.newKey) +
               " signed-at=" + formatTime(b.signedAtMs);
          const Status signatures = verifyKeyRotationSignatures(b);
          s += signatures.isOk() ? ": signed by both keys (verified)"
                                 : ": INVALID: " + signatures.message();
        } else {
          s += " study=" + b.study + " v" + std::to_string(b.protocolVersion) +
               " coordinator=" + keyText(b.coordinator) + " query=" + shortHex(b.queryHash) +
               (b.charged ? " charged: " + budgetChargeText(b) : " refused: " + b.reason);
        }
      },
      e.body);
  return s;
}

// ---- Signed tree heads ----

std::string treeHeadBytes(const SignedTreeHead& sth) {
  Writer w;
  w.u16(kTreeHeadFormatVersion);
  w.fixed(sth.logKey.bytes());
  w.u64(sth.treeSize);
  w.i64(sth.timestampMs);
  w.fixed(sth.root);
  return w.take();
}

namespace {
std::string signedTreeHeadMessage(const SignedTreeHead& sth) {
  return std::string(kTreeHeadContext) + treeHeadBytes(sth);
}
}  // namespace

SignedTreeHead signTreeHead(const crypto::Identity& identity, uint64_t treeSize,
                            int64_t timestampMs, const Hash& root) {
  SignedTreeHead sth;
  sth.logKey = identity.pub;
  sth.treeSize = treeSize;
  sth.timestampMs = timestampMs;
  sth.root = root;
  sth.signature = crypto::sign(identity.secret, bytesOf(signedTreeHeadMessage(sth)));
  return sth;
}

Status verifyTreeHeadSignature(const SignedTreeHead& sth) {
  if (!crypto::verify(sth.logKey, bytesOf(signedTreeHeadMessage(sth)), sth.signature)) {
    return Status::permissionDenied("signed tree head of " + keyText(sth.logKey) + " (size " +
                                    std::to_string(sth.treeSize) + ", " +
                                    formatTime(sth.timestampMs) +
                                    ") has an invalid signature: it was forged or altered");
  }
  return Status::ok();
}

std::string encodeTreeHead(const SignedTreeHead& sth) {
  std::string out = treeHeadBytes(sth);
  out.append(reinterpret_cast<const char*>(sth.signature.data()), sth.signature.size());
  return out;
}

Result<SignedTreeHead> decodeTreeHead(std::span<const uint8_t> bytes) {
  Reader r(bytes, "signed tree head");
  TM_ASSIGN_OR_RETURN(uint16_t version, r.u16("format version"));
  if (version != kTreeHeadFormatVersion) {
    return Status::corruption("signed tree head: format version " + std::to_string(version) +
                              " is not supported (this build reads version 1)");
  }
  SignedTreeHead sth;
  TM_ASSIGN_OR_RETURN(auto key, r.fixed<32>("log key"));
  sth.logKey = crypto::PublicKey(key);
  TM_ASSIGN_OR_RETURN(sth.treeSize, r.u64("tree size"));
  TM_ASSIGN_OR_RETURN(sth.timestampMs, r.i64("timestamp"));
  TM_ASSIGN_OR_RETURN(sth.root, r.fixed<32>("root"));
  TM_ASSIGN_OR_RETURN(sth.signature, r.fixed<64>("signature"));
  TM_RETURN_IF_ERROR(r.finish());
  return sth;
}

// ---- Verification ----

Status verifyLog(std::span<const StoredEntry> entries, const SignedTreeHead& sth,
                 const crypto::PublicKey& logKey, const SignedTreeHead* earlier) {
  if (sth.logKey != logKey) {
    return Status::permissionDenied("the signed tree head is by " + keyText(sth.logKey) +
                                    " but the log being verified belongs to " + keyText(logKey));
  }
  TM_RETURN_IF_ERROR(verifyTreeHeadSignature(sth));
  if (earlier != nullptr) {
    if (earlier->logKey != logKey) {
      return Status::permissionDenied("the earlier signed tree head is by " +
                                      keyText(earlier->logKey) + ", not by " + keyText(logKey));
    }
    TM_RETURN_IF_ERROR(verifyTreeHeadSignature(*earlier));
  }
  // One pass: decode and sequence-check every entry and hash it into the tree, without
  // computing a root per entry (that made verification O(n log n) hashes). Only if the final
  // root disagrees with the root stored with the last entry do we look for the first entry
  // whose stored root disagrees, by binary search over the stored roots.
  MerkleTree tree;
  Status stop = Status::ok();
  for (const StoredEntry& e : entries) {
    const uint64_t i = tree.size();
    const std::string at = "entry " + std::to_string(i) + ": ";
    auto decoded = decodeEntry(bytesOf(e.bytes));
    if (!decoded.isOk()) {
      stop =
          Status::corruption(at + "cannot be decoded (modified?): " + decoded.status().message());
      break;
    }
    if (decoded->sequence != i) {
      stop =
          Status::corruption(at + "records sequence number " + std::to_string(decoded->sequence) +
                             " but is at position " + std::to_string(i) +
                             " (an entry was deleted, inserted or entries were reordered)");
      break;
    }
    if (const auto* rotation = std::get_if<KeyRotationEvent>(&decoded->body)) {
      // A key change counts only if both keys signed it (ethics/key_rotation.h).
      Status signatures = verifyKeyRotationSignatures(*rotation);
      if (!signatures.isOk()) {
        stop = Status::corruption(at + signatures.message());
        break;
      }
    }
    tree.append(leafHash(bytesOf(e.bytes)));
  }
  const uint64_t good = tree.size();
  if (good > 0 && tree.root() != entries[good - 1].rootAfter) {
    // Find the first i whose recomputed root differs from the stored one: entries before a
    // modified entry keep matching, the modified one and all after it do not.
    uint64_t lo = 0;
    uint64_t hi = good - 1;  // known to mismatch
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo) / 2;
      if (tree.rootAt(mid + 1).value() != entries[mid].rootAfter) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    const Hash recomputed = tree.rootAt(lo + 1).value();
    return Status::corruption(
        "entry " + std::to_string(lo) +
        ": content does not match the tree root recorded when it was appended (" +
        shortHex(entries[lo].rootAfter) + " recorded, " + shortHex(recomputed) +
        " recomputed): the entry or an earlier one was modified");
  }
  TM_RETURN_IF_ERROR(stop);
  if (tree.size() < sth.treeSize) {
    return Status::corruption("entry " + std::to_string(tree.size()) + ": missing: the log has " +
                              std::to_string(tree.size()) +
                              " entries but its signed tree head of " +
                              formatTime(sth.timestampMs) + " covers " +
                              std::to_string(sth.treeSize) + " (entries were removed)");
  }
  const Hash root = tree.rootAt(sth.treeSize).value();
  if (root != sth.root) {
    return Status::corruption(
        "the " + std::to_string(sth.treeSize) + " entries hash to root " + hashHex(root) +
        " but the signed tree head of " + formatTime(sth.timestampMs) + " says " +
        hashHex(sth.root) +
        ": the log was rewritten together with its stored roots; compare with earlier signed "
        "tree heads to locate the change");
  }
  if (earlier != nullptr) {
    if (earlier->treeSize > tree.size()) {
      return Status::corruption("the earlier signed tree head of " +
                                formatTime(earlier->timestampMs) + " covers " +
                                std::to_string(earlier->treeSize) + " entries but the log has " +
                                std::to_string(tree.size()) + " (rolled back)");
    }
    const Hash old = tree.rootAt(earlier->treeSize).value();
    if (old != earlier->root) {
      return Status::corruption(
          "the first " + std::to_string(earlier->treeSize) + " entries hash to " + hashHex(old) +
          " but the earlier signed tree head of " + formatTime(earlier->timestampMs) + " says " +
          hashHex(earlier->root) + ": the log was rewritten since then");
    }
  }
  return Status::ok();
}

Status checkPeerHead(const SignedTreeHead& previous, const SignedTreeHead& next,
                     std::span<const Hash> proof) {
  if (previous.logKey != next.logKey) {
    return Status::invalidArgument("tree heads from different logs (" + keyText(previous.logKey) +
                                   " and " + keyText(next.logKey) + ") cannot be compared");
  }
  TM_RETURN_IF_ERROR(verifyTreeHeadSignature(previous));
  TM_RETURN_IF_ERROR(verifyTreeHeadSignature(next));
  const std::string peer = "peer " + keyText(next.logKey);
  if (next.treeSize < previous.treeSize) {
    return Status::corruption(
        "fork detected: " + peer + " signed a log of " + std::to_string(previous.treeSize) +
        " entries at " + formatTime(previous.timestampMs) + " and now one of " +
        std::to_string(next.treeSize) + " at " + formatTime(next.timestampMs) + " (rolled back)");
  }
  Status s = verifyConsistency(previous.treeSize, next.treeSize, previous.root, next.root, proof);
  if (!s.isOk()) {
    return Status::corruption(
        "fork detected: " + peer + ": its log of " + std::to_string(next.treeSize) +
        " entries (root " + shortHex(next.root) + ", " + formatTime(next.timestampMs) +
        ") is not an extension of the log of " + std::to_string(previous.treeSize) +
        " entries it signed before (root " + shortHex(previous.root) + ", " +
        formatTime(previous.timestampMs) + "): " + s.message());
  }
  return Status::ok();
}

// ---- AuditLog ----

namespace {

// Key of a tree node in the default column family: 'n', level (u8), index (u64 BE).
std::string nodeKey(unsigned level, uint64_t index) {
  Writer w;
  w.u8('n');
  w.u8(static_cast<uint8_t>(level));
  w.u64(index);
  return w.take();
}

uint64_t sequenceOfKey(const rocksdb::Slice& key) {
  uint64_t v = 0;
  for (size_t i = 0; i < key.size() && i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(key[i]);
  return v;
}

}  // namespace

class AuditLog::Impl final : public NodeSource {
 public:
  const crypto::Identity& identity;
  AuditLogOptions options;
  std::string path;
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* entries = nullptr;
  rocksdb::ColumnFamilyHandle* defaultFamily = nullptr;

  mutable std::mutex mu;
  std::condition_variable synced;  // signalled when a group commit finishes
  // Written to RocksDB (in the OS page cache, so a killed process loses nothing) ...
  CompactRange written;
  Hash writtenRoot = emptyRoot();
  // ... and made durable by fdatasync of the WAL. Readers, proofs and tree heads see only
  // durable entries: a signed head must never cover an entry a power cut could take away.
  uint64_t durable = 0;
  Hash durableRoot = emptyRoot();
  bool syncing = false;          // a group-commit leader is inside SyncWAL
  Status failed = Status::ok();  // sticky: after a failed fsync nothing is trusted any more

  Impl(const crypto::Identity& id, AuditLogOptions opts) : identity(id), options(std::move(opts)) {}
  ~Impl() override {
    if (db) {
      if (failed.isOk() && durable < written.size()) (void)db->SyncWAL();
      if (entries) (void)db->DestroyColumnFamilyHandle(entries);
      if (defaultFamily) (void)db->DestroyColumnFamilyHandle(defaultFamily);
      (void)db->Close();
    }
  }
  int64_t now() const { return options.clock(); }

  Result<Hash> node(unsigned level, uint64_t index) const override {
    std::string v;
    rocksdb::Status s = db->Get({}, defaultFamily, nodeKey(level, index), &v);
    if (!s.ok() || v.size() != sizeof(Hash)) {
      return Status::corruption("audit log " + path + ": tree node (level " +
                                std::to_string(level) + ", index " + std::to_string(index) +
                                ") is " + (s.ok() ? "malformed" : s.ToString()) +
                                "; run `trialmesh audit verify`");
    }
    Hash h;
    std::copy(v.begin(), v.end(), h.begin());
    return h;
  }

  // Waits until entries [0, upTo) are durable, doing the fsync itself if no one else is
  // (leader/follower group commit: every appender that arrives while a sync runs is covered by
  // the next one, so N concurrent appenders share about one fsync). REQUIRES: lock holds mu.
  Status waitDurable(std::unique_lock<std::mutex>& lock, uint64_t upTo) {
    while (durable < upTo) {
      if (!failed.isOk()) return failed;
      if (syncing) {
        synced.wait(lock);
        continue;
      }
      syncing = true;
      const uint64_t target = written.size();
      const Hash targetRoot = writtenRoot;
      lock.unlock();
      const rocksdb::Status s = options.sync ? db->SyncWAL() : rocksdb::Status::OK();
      lock.lock();
      syncing = false;
      if (s.ok()) {
        if (target > durable) {
          durable = target;
          durableRoot = targetRoot;
        }
      } else {
        failed = Status::ioError("audit log " + path + ": fsync of the write-ahead log failed (" +
                                 s.ToString() +
                                 "); entries may not be on disk: fix the disk and restart the "
                                 "node");
      }
      synced.notify_all();
    }
    return failed;
  }
};

namespace {

// Opens the database with its column families (read-only when asked).
Status openDb(const std::string& path, bool readOnly, std::unique_ptr<rocksdb::DB>& db,
              rocksdb::ColumnFamilyHandle*& defaultFamily, rocksdb::ColumnFamilyHandle*& entries,
              rocksdb::Env* env = nullptr) {
  rocksdb::DBOptions options;
  if (env != nullptr) options.env = env;
  options.create_if_missing = !readOnly;
  options.create_missing_column_families = !readOnly;
  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kEntriesFamily, rocksdb::ColumnFamilyOptions()}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = readOnly
                          ? rocksdb::DB::OpenForReadOnly(options, path, families, &handles, &raw)
                          : rocksdb::DB::Open(options, path, families, &handles, &raw);
  TM_RETURN_IF_ERROR(fromRocks(s, "audit log " + path + ": cannot open"));
  db.reset(raw);
  defaultFamily = handles[0];
  entries = handles[1];
  return Status::ok();
}

Result<StoredEntry> splitStored(const rocksdb::Slice& v, uint64_t seq, const std::string& path) {
  if (v.size() < sizeof(Hash)) {
    return Status::corruption("audit log " + path + ": entry " + std::to_string(seq) +
                              ": stored value is too short; run `trialmesh audit verify`");
  }
  StoredEntry e;
  std::copy(v.data(), v.data() + sizeof(Hash), e.rootAfter.begin());
  e.bytes.assign(v.data() + sizeof(Hash), v.size() - sizeof(Hash));
  return e;
}

// Rebuilds the tree nodes of a log that has none (written before they were stored): one pass
// over the entries, checked like verifyLog does. O(n); runs once.
Status rebuildNodes(AuditLog::Impl& impl) {
  std::vector<StoredEntry> all;
  {
    std::unique_ptr<rocksdb::Iterator> it(impl.db->NewIterator({}, impl.entries));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      TM_ASSIGN_OR_RETURN(StoredEntry e, splitStored(it->value(), all.size(), impl.path));
      all.push_back(std::move(e));
    }
    TM_RETURN_IF_ERROR(fromRocks(it->status(), "audit log " + impl.path + ": reading entries"));
  }
  CompactRange range;
  rocksdb::WriteBatch batch;
  for (const StoredEntry& e : all) {
    auto decoded = decodeEntry(bytesOf(e.bytes));
    if (!decoded.isOk() || decoded->sequence != range.size()) {
      return Status::corruption("audit log " + impl.path + ": entry " +
                                std::to_string(range.size()) +
                                " is damaged or out of place; run `trialmesh audit verify`");
    }
    range.append(leafHash(bytesOf(e.bytes)), [&](unsigned level, uint64_t index, const Hash& h) {
      batch.Put(impl.defaultFamily, nodeKey(level, index),
                rocksdb::Slice(reinterpret_cast<const char*>(h.data()), h.size()));
    });
  }
  if (!all.empty() && range.root() != all.back().rootAfter) {
    return Status::corruption("audit log " + impl.path +
                              ": the entries do not hash to the root stored with the last one; "
                              "run `trialmesh audit verify` to find the modified entry");
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return fromRocks(impl.db->Write(wo, &batch), "audit log " + impl.path + ": storing tree nodes");
}

// The start-up integrity check (issue #12): every stored entry decodes, sits at its own
// sequence number and hashes to the leaf stored for it, and the leaves hash up to the root the
// stored tree nodes give. Without it a node would keep signing new heads over an entry someone
// modified on disk, and only a board's `trialmesh audit verify` would notice. One sequential
// pass over both column families: O(n) SHA-256 of the entries (about 0.5 s per million entries
// on the reference machine, docs/ethics.md), no tree kept in memory.
Status checkStoredEntries(const AuditLog::Impl& impl, uint64_t size, const Hash& storedRoot) {
  const std::string refuse =
      "; the node refuses to start (and to sign tree heads) over a damaged audit log: keep a "
      "copy of " +
      impl.path + " for the ethics board, tell them, and restore the directory from a backup";
  std::unique_ptr<rocksdb::Iterator> it(impl.db->NewIterator({}, impl.entries));
  std::unique_ptr<rocksdb::Iterator> leaves(impl.db->NewIterator({}, impl.defaultFamily));
  leaves->Seek(nodeKey(0, 0));
  CompactRange range;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const uint64_t i = range.size();
    const std::string at = "audit log " + impl.path + ": entry " + std::to_string(i) + ": ";
    if (sequenceOfKey(it->key()) != i || it->key().size() != 8) {
      return Status::corruption(at + "missing (the next stored key is entry " +
                                std::to_string(sequenceOfKey(it->key())) + ")" + refuse);
    }
    TM_ASSIGN_OR_RETURN(StoredEntry e, splitStored(it->value(), i, impl.path));
    auto decoded = decodeEntry(bytesOf(e.bytes));
    if (!decoded.isOk()) {
      return Status::corruption(
          at + "cannot be decoded (modified?): " + decoded.status().message() + refuse);
    }
    if (decoded->sequence != i) {
      return Status::corruption(at + "records sequence number " +
                                std::to_string(decoded->sequence) + refuse);
    }
    const Hash leaf = leafHash(bytesOf(e.bytes));
    if (!leaves->Valid() || leaves->key() != rocksdb::Slice(nodeKey(0, i)) ||
        leaves->value().size() != sizeof(Hash) ||
        !std::equal(leaf.begin(), leaf.end(),
                    reinterpret_cast<const uint8_t*>(leaves->value().data()))) {
      return Status::corruption(at +
                                "its content does not match the leaf hash stored when it "
                                "was appended: the entry was modified" +
                                refuse);
    }
    leaves->Next();
    range.append(leaf);
  }
  TM_RETURN_IF_ERROR(fromRocks(it->status(), "audit log " + impl.path + ": reading entries"));
  TM_RETURN_IF_ERROR(fromRocks(leaves->status(), "audit log " + impl.path + ": reading leaves"));
  if (range.size() != size) {
    return Status::corruption("audit log " + impl.path + ": " + std::to_string(range.size()) +
                              " entries stored but the last key says " + std::to_string(size) +
                              refuse);
  }
  if (range.root() != storedRoot) {
    return Status::corruption("audit log " + impl.path + ": the " + std::to_string(size) +
                              " entries hash to root " + hashHex(range.root()) +
                              " but the stored tree says " + hashHex(storedRoot) +
                              ": stored leaf hashes were rewritten together with entries" + refuse);
  }
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<AuditLog>> AuditLog::open(const std::string& path,
                                                 const crypto::Identity& identity,
                                                 AuditLogOptions options) {
  if (!options.clock) {
    options.clock = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
  rocksdb::Env* env = options.env;
  auto impl = std::make_unique<Impl>(identity, std::move(options));
  impl->path = path;
  TM_RETURN_IF_ERROR(openDb(path, false, impl->db, impl->defaultFamily, impl->entries, env));
  // O(log n): the size comes from the last key, the compact range from the stored nodes of the
  // complete subtrees (one per set bit of the size). The last entry is checked against them;
  // a full check of every entry is `trialmesh audit verify`'s job.
  uint64_t size = 0;
  std::optional<StoredEntry> last;
  {
    std::unique_ptr<rocksdb::Iterator> it(impl->db->NewIterator({}, impl->entries));
    it->SeekToLast();
    if (it->Valid()) {
      size = sequenceOfKey(it->key()) + 1;
      TM_ASSIGN_OR_RETURN(StoredEntry e, splitStored(it->value(), size - 1, path));
      last = std::move(e);
    }
    TM_RETURN_IF_ERROR(fromRocks(it->status(), "audit log " + path + ": reading entries"));
  }
  std::vector<Hash> frontier;
  bool haveNodes = true;
  for (int bit = 63; bit >= 0 && haveNodes; --bit) {
    if (((size >> bit) & 1) == 0) continue;
    const uint64_t index = (size >> bit) - 1;
    auto h = impl->node(static_cast<unsigned>(bit), index);
    if (!h.isOk()) {
      haveNodes = false;
    } else {
      frontier.push_back(*h);
    }
  }
  if (!haveNodes) {
    TM_RETURN_IF_ERROR(rebuildNodes(*impl));
    AuditLogOptions again = impl->options;
    impl.reset();  // closes the database before it is opened again
    return open(path, identity, std::move(again));
  }
  const std::string refuse =
      "; the node refuses to append to a damaged log (run `trialmesh audit "
      "verify` to find the first bad entry)";
  impl->written = CompactRange(size, std::move(frontier));
  impl->writtenRoot = impl->written.root();
  if (last) {
    const std::string at = "audit log " + path + ": entry " + std::to_string(size - 1) + ": ";
    auto decoded = decodeEntry(bytesOf(last->bytes));
    if (!decoded.isOk()) {
      return Status::corruption(at + "cannot be decoded: " + decoded.status().message() + refuse);
    }
    if (decoded->sequence != size - 1) {
      return Status::corruption(at + "records sequence number " +
                                std::to_string(decoded->sequence) + refuse);
    }
    TM_ASSIGN_OR_RETURN(Hash storedLeaf, impl->node(0, size - 1));
    if (storedLeaf != leafHash(bytesOf(last->bytes)) || impl->writtenRoot != last->rootAfter) {
      return Status::corruption(at + "does not match the stored tree" + refuse);
    }
  }
  if (impl->options.checkEntriesOnOpen) {
    TM_RETURN_IF_ERROR(checkStoredEntries(*impl, size, impl->writtenRoot));
  }
  impl->durable = size;
  impl->durableRoot = impl->writtenRoot;
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(impl)));
}

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AuditLog::~AuditLog() = default;

Result<Entry> AuditLog::append(EntryKind kind, EntryBody body, Durability durability) {
  std::unique_lock lock(impl_->mu);
  TM_RETURN_IF_ERROR(impl_->failed);
  Entry e;
  e.sequence = impl_->written.size();
  e.timestampMs = impl_->now();
  e.kind = kind;
  e.body = std::move(body);
  TM_ASSIGN_OR_RETURN(std::string bytes, encodeEntry(e));
  // The entry, its root and the tree nodes it completes go in one atomic batch.
  CompactRange range = impl_->written;
  rocksdb::WriteBatch batch;
  range.append(leafHash(bytesOf(bytes)), [&](unsigned level, uint64_t index, const Hash& h) {
    batch.Put(impl_->defaultFamily, nodeKey(level, index),
              rocksdb::Slice(reinterpret_cast<const char*>(h.data()), h.size()));
  });
  const Hash root = range.root();
  std::string value(reinterpret_cast<const char*>(root.data()), root.size());
  value += bytes;
  batch.Put(impl_->entries, keyFor(e.sequence), value);
  // Not synced here: the WAL record reaches the OS at once (so kill -9 loses nothing), and the
  // fsync is shared with concurrent appenders in waitDurable.
  rocksdb::Status s = impl_->db->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) {
    return Status::ioError("audit log " + impl_->path + ": cannot write entry " +
                           std::to_string(e.sequence) + ": " + s.ToString());
  }
  impl_->written = std::move(range);
  impl_->writtenRoot = root;
  if (durability == Durability::kSynced) {
    TM_RETURN_IF_ERROR(impl_->waitDurable(lock, e.sequence + 1));
  }
  return e;
}

Status AuditLog::flush() {
  std::unique_lock lock(impl_->mu);
  return impl_->waitDurable(lock, impl_->written.size());
}

Status AuditLog::syncThrough(uint64_t size) {
  std::unique_lock lock(impl_->mu);
  if (size > impl_->written.size()) {
    return Status::invalidArgument("audit log " + impl_->path + ": cannot sync through entry " +
                                   std::to_string(size) + ": only " +
                                   std::to_string(impl_->written.size()) + " entries were written");
  }
  return impl_->waitDurable(lock, size);
}

uint64_t AuditLog::size() const {
  std::lock_guard lock(impl_->mu);
  return impl_->durable;
}

Hash AuditLog::root() const {
  std::lock_guard lock(impl_->mu);
  return impl_->durableRoot;
}

Result<SignedTreeHead> AuditLog::checkpoint(const std::string& targetDir,
                                            const std::function<Status()>& alongside) {
  std::unique_lock lock(impl_->mu);
  // waitDurable releases the lock while it syncs, so appends may slip in: repeat until the
  // copy and the signed head will cover the same entries.
  while (impl_->durable < impl_->written.size()) {
    TM_RETURN_IF_ERROR(impl_->waitDurable(lock, impl_->written.size()));
  }
  TM_RETURN_IF_ERROR(impl_->failed);
  if (alongside) TM_RETURN_IF_ERROR(alongside());
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(impl_->db.get(), &raw);
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  if (s.ok()) s = cp->CreateCheckpoint(targetDir);
  if (!s.ok()) {
    return Status::ioError("audit log " + impl_->path + ": checkpoint to " + targetDir + ": " +
                           s.ToString());
  }
  return signTreeHead(impl_->identity, impl_->durable, impl_->now(), impl_->durableRoot);
}

SignedTreeHead AuditLog::signedTreeHead() const {
  std::lock_guard lock(impl_->mu);
  return signTreeHead(impl_->identity, impl_->durable, impl_->now(), impl_->durableRoot);
}

Result<std::vector<StoredEntry>> AuditLog::readRange(uint64_t begin, uint64_t end) const {
  const uint64_t n = size();
  if (begin > end || end > n) {
    return Status::invalidArgument("audit log: range [" + std::to_string(begin) + ", " +
                                   std::to_string(end) + ") is not within the log's " +
                                   std::to_string(n) + " entries");
  }
  std::vector<StoredEntry> out;
  out.reserve(end - begin);
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator({}, impl_->entries));
  const std::string first = keyFor(begin);
  for (it->Seek(first); it->Valid() && out.size() < end - begin; it->Next()) {
    TM_ASSIGN_OR_RETURN(StoredEntry e, splitStored(it->value(), begin + out.size(), impl_->path));
    out.push_back(std::move(e));
  }
  TM_RETURN_IF_ERROR(fromRocks(it->status(), "audit log: reading entries"));
  return out;
}

Result<std::vector<Hash>> AuditLog::inclusionProof(uint64_t index, uint64_t treeSize) const {
  const uint64_t n = size();
  if (treeSize > n || index >= treeSize) {
    return Status::invalidArgument("no inclusion proof for entry " + std::to_string(index) +
                                   " at tree size " + std::to_string(treeSize) + ": the log has " +
                                   std::to_string(n) +
                                   " entries and the entry must be below the tree size");
  }
  return inclusionProofOf(*impl_, index, treeSize);
}

Result<std::vector<Hash>> AuditLog::consistencyProof(uint64_t size1, uint64_t size2) const {
  const uint64_t n = size();
  if (size1 > size2 || size2 > n) {
    return Status::invalidArgument("no consistency proof from size " + std::to_string(size1) +
                                   " to size " + std::to_string(size2) + ": the log has " +
                                   std::to_string(n) +
                                   " entries and the first size must not exceed the second");
  }
  return consistencyProofOf(*impl_, size1, size2);
}

Result<std::vector<StoredEntry>> AuditLog::readAllUnchecked(const std::string& path) {
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* defaultFamily = nullptr;
  rocksdb::ColumnFamilyHandle* entries = nullptr;
  TM_RETURN_IF_ERROR(openDb(path, true, db, defaultFamily, entries));
  std::vector<StoredEntry> out;
  Status status;
  {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, entries));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const rocksdb::Slice v = it->value();
      StoredEntry e;
      const size_t n = std::min(v.size(), sizeof(Hash));
      std::copy(v.data(), v.data() + n, e.rootAfter.begin());
      e.bytes.assign(v.data() + n, v.size() - n);
      out.push_back(std::move(e));
    }
    status = fromRocks(it->status(), "audit log " + path + ": reading entries");
  }
  (void)db->DestroyColumnFamilyHandle(entries);
  (void)db->DestroyColumnFamilyHandle(defaultFamily);
  (void)db->Close();
  TM_RETURN_IF_ERROR(status);
  return out;
}

}  // namespace trialmesh::ethics
