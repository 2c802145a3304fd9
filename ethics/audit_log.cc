#include "ethics/audit_log.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <mutex>

#include "ethics/codec.h"

namespace trialmesh::ethics {
namespace {

using detail::bytesOf;
using detail::Reader;
using detail::Writer;

constexpr uint8_t kEntryFormatVersion = 1;
constexpr uint16_t kTreeHeadFormatVersion = 1;
constexpr std::string_view kTreeHeadContext{"trialmesh/audit-sth/v1\0", 23};
constexpr size_t kTreeHeadBytes = 2 + 32 + 8 + 8 + 32;
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
  }
  return Status::corruption("unknown entry kind " + std::to_string(static_cast<int>(kind)));
}

std::string keyText(const crypto::PublicKey& k) { return k.toText(); }

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

// Checks stored entries one at a time, in order, and rebuilds the tree as it goes. Used both
// when a node opens its own log and when an auditor verifies a downloaded one.
class EntryChecker {
 public:
  Status add(const Hash& rootAfter, std::span<const uint8_t> bytes) {
    const uint64_t i = tree_.size();
    const std::string at = "entry " + std::to_string(i) + ": ";
    auto decoded = decodeEntry(bytes);
    if (!decoded.isOk()) {
      return Status::corruption(at +
                                "cannot be decoded (modified?): " + decoded.status().message());
    }
    if (decoded->sequence != i) {
      return Status::corruption(at + "records sequence number " +
                                std::to_string(decoded->sequence) + " but is at position " +
                                std::to_string(i) +
                                " (an entry was deleted, inserted or entries were reordered)");
    }
    tree_.append(leafHash(bytes));
    const Hash root = tree_.root();
    if (root != rootAfter) {
      return Status::corruption(
          at + "content does not match the tree root recorded when it was appended (" +
          shortHex(rootAfter) + " recorded, " + shortHex(root) +
          " recomputed): the entry or an earlier one was modified");
    }
    return Status::ok();
  }
  MerkleTree& tree() { return tree_; }

 private:
  MerkleTree tree_;
};

}  // namespace

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
  }
  return "unknown";
}

Result<std::string> encodeEntry(const Entry& e) {
  auto index = bodyIndexFor(e.kind);
  if (!index.isOk() || *index != e.body.index()) {
    return Status::invalidArgument(std::string("audit entry of kind '") + entryKindName(e.kind) +
                                   "' has a body of the wrong type");
  }
  Writer w;
  w.u8(kEntryFormatVersion);
  w.u64(e.sequence);
  w.i64(e.timestampMs);
  w.u8(static_cast<uint8_t>(e.kind));
  std::visit(
      [&w](const auto& b) {
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
        } else if constexpr (std::is_same_v<T, ResultReleasedEvent>) {
          w.fixed(b.coordinator.bytes());
          w.str(b.study);
          w.fixed(b.queryHash);
          w.u64(b.cells);
          w.u64(b.suppressedCells);
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
        } else {
          static_assert(std::is_same_v<T, AlertEvent>);
          w.fixed(b.peer.bytes());
          w.str(b.message);
        }
      },
      e.body);
  return w.take();
}

Result<Entry> decodeEntry(std::span<const uint8_t> bytes) {
  Reader r(bytes, "audit entry");
  TM_ASSIGN_OR_RETURN(uint8_t version, r.u8("format version"));
  if (version != kEntryFormatVersion) {
    return Status::corruption("audit entry: format version " + std::to_string(version) +
                              " is not supported (this build reads version 1)");
  }
  Entry e;
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
      TM_ASSIGN_OR_RETURN(uint8_t allowed, r.u8("decision"));
      if (allowed > 1) {
        return Status::corruption("audit entry: decision byte " + std::to_string(allowed) +
                                  " is neither 0 (refused) nor 1 (allowed)");
      }
      b.allowed = allowed == 1;
      TM_ASSIGN_OR_RETURN(b.reason, r.str("reason"));
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
    default: {
      AlertEvent b;
      TM_ASSIGN_OR_RETURN(auto key, r.fixed<32>("peer"));
      b.peer = crypto::PublicKey(key);
      TM_ASSIGN_OR_RETURN(b.message, r.str("message"));
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
               " query=" + shortHex(b.queryHash) + (b.allowed ? " allowed: " : " refused: ") +
               b.reason;
        } else if constexpr (std::is_same_v<T, ResultReleasedEvent>) {
          s += " study=" + b.study + " coordinator=" + keyText(b.coordinator) +
               " query=" + shortHex(b.queryHash) + " cells=" + std::to_string(b.cells) +
               " suppressed=" + std::to_string(b.suppressedCells);
        } else if constexpr (std::is_same_v<T, ConfigChangeEvent>) {
          s += " " + b.setting + ": '" + b.oldValue + "' -> '" + b.newValue + "'";
        } else if constexpr (std::is_same_v<T, KeyChangeEvent>) {
          s += " " + b.role + ": " + keyText(b.oldKey) + " -> " + keyText(b.newKey);
        } else if constexpr (std::is_same_v<T, NodeEvent>) {
          s += " " + b.detail;
        } else {
          s += " peer=" + keyText(b.peer) + " " + b.message;
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
  EntryChecker checker;
  for (const StoredEntry& e : entries)
    TM_RETURN_IF_ERROR(checker.add(e.rootAfter, bytesOf(e.bytes)));
  const MerkleTree& tree = checker.tree();
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

class AuditLog::Impl {
 public:
  const crypto::Identity& identity;
  AuditLogOptions options;
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* entries = nullptr;
  rocksdb::ColumnFamilyHandle* defaultFamily = nullptr;
  mutable std::mutex mu;
  MerkleTree tree;

  Impl(const crypto::Identity& id, AuditLogOptions opts) : identity(id), options(std::move(opts)) {}
  ~Impl() {
    if (db) {
      if (entries) (void)db->DestroyColumnFamilyHandle(entries);
      if (defaultFamily) (void)db->DestroyColumnFamilyHandle(defaultFamily);
      (void)db->Close();
    }
  }
  int64_t now() const { return options.clock(); }
};

namespace {

// Opens the database with its column families (read-only when asked).
Status openDb(const std::string& path, bool readOnly, std::unique_ptr<rocksdb::DB>& db,
              rocksdb::ColumnFamilyHandle*& defaultFamily, rocksdb::ColumnFamilyHandle*& entries) {
  rocksdb::DBOptions options;
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
  auto impl = std::make_unique<Impl>(identity, std::move(options));
  TM_RETURN_IF_ERROR(openDb(path, false, impl->db, impl->defaultFamily, impl->entries));
  EntryChecker checker;
  std::unique_ptr<rocksdb::Iterator> it(impl->db->NewIterator({}, impl->entries));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const rocksdb::Slice v = it->value();
    if (v.size() < sizeof(Hash)) {
      return Status::corruption("audit log " + path + ": entry " +
                                std::to_string(checker.tree().size()) +
                                ": stored value is too short; run `trialmesh audit verify`");
    }
    Hash rootAfter;
    std::copy(v.data(), v.data() + sizeof(Hash), rootAfter.begin());
    Status s = checker.add(
        rootAfter, bytesOf(std::string_view(v.data() + sizeof(Hash), v.size() - sizeof(Hash))));
    if (!s.isOk()) {
      return Status::corruption("audit log " + path + ": " + s.message() +
                                "; the node refuses to append to a damaged log");
    }
  }
  TM_RETURN_IF_ERROR(fromRocks(it->status(), "audit log " + path + ": reading entries"));
  it.reset();
  impl->tree = std::move(checker.tree());
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(impl)));
}

AuditLog::AuditLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AuditLog::~AuditLog() = default;

Result<Entry> AuditLog::append(EntryKind kind, EntryBody body) {
  std::lock_guard lock(impl_->mu);
  Entry e;
  e.sequence = impl_->tree.size();
  e.timestampMs = impl_->now();
  e.kind = kind;
  e.body = std::move(body);
  TM_ASSIGN_OR_RETURN(std::string bytes, encodeEntry(e));
  impl_->tree.append(leafHash(bytesOf(bytes)));
  const Hash root = impl_->tree.root();
  std::string value(reinterpret_cast<const char*>(root.data()), root.size());
  value += bytes;
  rocksdb::WriteOptions wo;
  wo.sync = impl_->options.sync;
  rocksdb::Status s = impl_->db->Put(wo, impl_->entries, keyFor(e.sequence), value);
  if (!s.ok()) {
    impl_->tree.popBack();
    return Status::ioError("audit log: cannot write entry " + std::to_string(e.sequence) + ": " +
                           s.ToString());
  }
  return e;
}

uint64_t AuditLog::size() const {
  std::lock_guard lock(impl_->mu);
  return impl_->tree.size();
}

Hash AuditLog::root() const {
  std::lock_guard lock(impl_->mu);
  return impl_->tree.root();
}

SignedTreeHead AuditLog::signedTreeHead() const {
  std::lock_guard lock(impl_->mu);
  return signTreeHead(impl_->identity, impl_->tree.size(), impl_->now(), impl_->tree.root());
}

Result<std::vector<StoredEntry>> AuditLog::readRange(uint64_t begin, uint64_t end) const {
  {
    std::lock_guard lock(impl_->mu);
    if (begin > end || end > impl_->tree.size()) {
      return Status::invalidArgument("audit log: range [" + std::to_string(begin) + ", " +
                                     std::to_string(end) + ") is not within the log's " +
                                     std::to_string(impl_->tree.size()) + " entries");
    }
  }
  std::vector<StoredEntry> out;
  out.reserve(end - begin);
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator({}, impl_->entries));
  const std::string first = keyFor(begin);
  for (it->Seek(first); it->Valid() && out.size() < end - begin; it->Next()) {
    const rocksdb::Slice v = it->value();
    if (v.size() < sizeof(Hash)) {
      return Status::corruption("audit log: stored entry " + std::to_string(begin + out.size()) +
                                " is too short");
    }
    StoredEntry e;
    std::copy(v.data(), v.data() + sizeof(Hash), e.rootAfter.begin());
    e.bytes.assign(v.data() + sizeof(Hash), v.size() - sizeof(Hash));
    out.push_back(std::move(e));
  }
  TM_RETURN_IF_ERROR(fromRocks(it->status(), "audit log: reading entries"));
  return out;
}

Result<std::vector<Hash>> AuditLog::inclusionProof(uint64_t index, uint64_t treeSize) const {
  std::lock_guard lock(impl_->mu);
  return impl_->tree.inclusionProof(index, treeSize);
}

Result<std::vector<Hash>> AuditLog::consistencyProof(uint64_t size1, uint64_t size2) const {
  std::lock_guard lock(impl_->mu);
  return impl_->tree.consistencyProof(size1, size2);
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
