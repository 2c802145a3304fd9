#include "node/peer_audit.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "node/coordinator.h"
#include "node/ops/logging.h"

namespace trialmesh::node {
namespace {

constexpr const char* kAlertMetric = "trialmesh_peer_log_alerts_total";
constexpr const char* kAlertHelp =
    "Peer sites whose audit log failed a consistency check (rewritten, rolled back or forked)";

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Result<std::optional<ethics::SignedTreeHead>> loadHead(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<ethics::SignedTreeHead>();
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in && !in.eof()) return Status::ioError(path + ": cannot be read");
  auto head = ethics::decodeTreeHead(bytesOf(ss.str()));
  if (!head) {
    return head.status().withContext(path +
                                     " (last verified peer tree head; delete it to "
                                     "trust the peer's current head again)");
  }
  return std::optional<ethics::SignedTreeHead>(*head);
}

// Writes through a temporary file and a rename, so a crash leaves the old or the new head.
Status saveHead(const std::string& path, const ethics::SignedTreeHead& head) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    const std::string bytes = ethics::encodeTreeHead(head);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) return Status::ioError(tmp + ": cannot be written");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::ioError("cannot rename " + tmp + " to " + path + ": " + ec.message());
  return Status::ok();
}

}  // namespace

PeerAuditor::PeerAuditor(const crypto::Identity& identity, MembersSource members,
                         std::string selfName, ethics::AuditLog& log, ops::Registry& registry,
                         PeerAuditOptions options)
    : identity_(identity),
      members_(std::move(members)),
      selfName_(std::move(selfName)),
      log_(log),
      registry_(registry),
      options_(std::move(options)) {
  // Every peer's series exists from the start, so dashboards see 0 rather than nothing.
  for (const Member& m : members_()->members) {
    if (m.role == Role::kSite && m.name != selfName_) {
      registry_.counter(kAlertMetric, kAlertHelp, {{"peer", m.name}});
    }
  }
}

PeerAuditor::~PeerAuditor() { stop(); }

Status PeerAuditor::start() {
  for (const auto& [name, head] : options_.expectedHeads) {
    const Member* m = members_()->findByName(name);
    if (m == nullptr || m->role != Role::kSite || name == selfName_) {
      return Status::invalidArgument("[ethics.peer_heads] " + name +
                                     ": not another site of the members file");
    }
  }
  if (options_.interval.count() == 0 || thread_.joinable()) return Status::ok();
  std::error_code ec;
  std::filesystem::create_directories(options_.stateDir, ec);
  if (ec) {
    return Status::ioError("cannot create the peer tree head directory " + options_.stateDir +
                           ": " + ec.message());
  }
  thread_ = std::thread([this] {
    // Each wait is the interval times a random factor in [0.75, 1.25): sites started together
    // (a region upgraded at once, or many sites on one machine) do not all check every peer
    // at the same moment, round after round (n sites make n(n-1) fetches a round).
    std::minstd_rand jitter(std::random_device{}());
    std::uniform_real_distribution<double> factor(0.75, 1.25);
    std::unique_lock lock(mu_);
    while (!stopping_) {
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(options_.interval * factor(jitter));
      if (wake_.wait_for(lock, wait, [this] { return stopping_; })) break;
      lock.unlock();
      checkOnce();
      lock.lock();
    }
  });
  return Status::ok();
}

void PeerAuditor::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string PeerAuditor::statePath(const std::string& peer) const {
  return options_.stateDir + "/" + peer + ".sth";
}

int PeerAuditor::checkOnce() {
  int alerts = 0;
  // One table for the whole round; a reload meanwhile takes effect at the next round.
  const std::shared_ptr<const Members> members = members_();
  for (const Member& m : members->members) {
    if (m.role != Role::kSite || m.name == selfName_) continue;
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
    }
    if (checkPeer(m, *members)) ++alerts;
  }
  return alerts;
}

bool PeerAuditor::checkPeer(const Member& peer, const Members& members) {
  const std::string path = statePath(peer.name);
  auto previous = loadHead(path);
  if (!previous) {
    ops::logEvent(spdlog::level::err, "peer_check_failed",
                  {{"peer", peer.name}, {"detail", previous.status().toString()}});
    return false;
  }
  std::optional<uint64_t> from;
  auto configured = options_.expectedHeads.find(peer.name);
  const ethics::ExpectedHead* expected =
      !*previous && configured != options_.expectedHeads.end() ? &configured->second : nullptr;
  if (*previous) from = (*previous)->treeSize;
  if (expected != nullptr) from = expected->treeSize;
  auto fetched = fetchAuditHead(identity_, members, peer.name, from, options_.deadline);
  if (!fetched) {
    // An unreachable peer says nothing about its log.
    ops::logEvent(spdlog::level::warn, "peer_check_failed",
                  {{"peer", peer.name}, {"detail", fetched.status().toString()}});
    return false;
  }
  const ethics::SignedTreeHead& next = fetched->head;
  Status s = Status::ok();
  // The head's key must be one the members file accepts for the peer: its current key, or a
  // previous one not yet retired or revoked (a rotation in progress, docs/keys.md). Checked at
  // the later of now and the head's own time, since validity only ever ends.
  const int64_t keyTime = std::max(nowUnixMs(), next.timestampMs);
  Status keyAccepted = peer.checkKeyAt(next.logKey, keyTime, "tree head of peer " + peer.name);
  bool rotated = false;
  if (!keyAccepted.isOk()) {
    s = Status::permissionDenied("fork detected: peer " + peer.name +
                                 " sent a tree head signed by a key its members entry does not "
                                 "accept: " +
                                 keyAccepted.message());
  } else if (*previous && (*previous)->logKey != next.logKey) {
    // The peer's key changed since we pinned its head: its log must extend the pinned head
    // and record, signed by both keys, the rotation from the pinned key to the new one.
    s = followRotation(peer, members, **previous, *fetched);
    if (s.code() == StatusCode::kUnavailable) {
      // As for the head itself: an unreachable peer says nothing about its log.
      ops::logEvent(spdlog::level::warn, "peer_check_failed",
                    {{"peer", peer.name}, {"detail", s.toString()}});
      return false;
    }
    rotated = s.isOk();
  } else if (!*previous) {
    s = ethics::verifyTreeHeadSignature(next);
    if (s.isOk() && expected != nullptr) s = checkConfiguredHead(peer, *expected, *fetched);
  } else if (next.treeSize < (*previous)->treeSize) {
    s = ethics::checkPeerHead(**previous, next, {});  // reports the rollback
  } else {
    s = ethics::checkPeerHead(**previous, next, fetched->consistency);
  }
  if (!s.isOk()) {
    // Keyed by the head we compared against (never replaced after a failure), so a fork that
    // persists is reported once although every fetched head carries a new timestamp.
    const std::string against = *previous ? ethics::encodeTreeHead(**previous) : "first contact";
    if (lastAlert_[peer.name] == against) return false;
    lastAlert_[peer.name] = against;
    raiseAlert(peer, s.message());
    return true;
  }
  lastAlert_.erase(peer.name);
  if (rotated) {
    ops::logEvent(spdlog::level::info, "peer_key_rotated",
                  {{"peer", peer.name},
                   {"old_key", (*previous)->logKey.toText()},
                   {"new_key", next.logKey.toText()},
                   {"tree_size", next.treeSize}});
  }
  if (!*previous) {
    // Trust on first use is a decision the operator must be able to see (and replace with a
    // configured head): say which it was.
    ops::logEvent(spdlog::level::info, "peer_head_pinned",
                  {{"peer", peer.name},
                   {"trust", expected != nullptr ? "configured head" : "first use"},
                   {"tree_size", next.treeSize},
                   {"head", ethics::formatExpectedHead(next)}});
    ops::flush();  // info lines are buffered; this one an operator (and a test) waits for
  }
  if (!*previous || next.treeSize > (*previous)->treeSize || rotated) {
    Status saved = saveHead(path, next);
    if (!saved.isOk()) {
      ops::logEvent(spdlog::level::err, "peer_check_failed",
                    {{"peer", peer.name}, {"detail", saved.toString()}});
    }
  }
  ops::logEvent(spdlog::level::debug, "peer_log_consistent",
                {{"peer", peer.name}, {"tree_size", next.treeSize}});
  return false;
}

Status PeerAuditor::followRotation(const Member& peer, const Members& members,
                                   const ethics::SignedTreeHead& pinned,
                                   const AuditHeadAndProof& fetched) const {
  auto rotations = fetchAuditKeyRotations(identity_, members, peer.name, fetched.head.treeSize,
                                          options_.deadline);
  if (!rotations) {
    if (rotations.status().code() == StatusCode::kUnavailable) return rotations.status();
    return Status::permissionDenied("fork detected: peer " + peer.name +
                                    " signs with a new key but refused its key-rotation "
                                    "entries: " +
                                    rotations.status().toString());
  }
  auto chain = ethics::followKeyRotation(
      pinned, fetched.head, fetched.consistency, *rotations,
      [&peer](const crypto::PublicKey& key, int64_t atMs) {
        return peer.checkKeyAt(key, atMs, "key of peer " + peer.name);
      },
      [&peer](const crypto::PublicKey& key) { return key == peer.publicKey; });
  if (!chain) return chain.status().withContext("peer " + peer.name);
  return Status::ok();
}

Status PeerAuditor::checkConfiguredHead(const Member& peer, const ethics::ExpectedHead& expected,
                                        const AuditHeadAndProof& fetched) const {
  const std::string configured = "the head configured in [ethics.peer_heads] (" +
                                 std::to_string(expected.treeSize) + " entries, root " +
                                 ethics::hashHex(expected.root) + ")";
  if (fetched.head.treeSize < expected.treeSize) {
    return Status::corruption("fork detected: peer " + peer.name + " signs a log of " +
                              std::to_string(fetched.head.treeSize) + " entries, smaller than " +
                              configured + " (rolled back)");
  }
  Status s = ethics::verifyConsistency(expected.treeSize, fetched.head.treeSize, expected.root,
                                       fetched.head.root, fetched.consistency);
  if (!s.isOk()) {
    return Status::corruption("fork detected: peer " + peer.name + ": its log of " +
                              std::to_string(fetched.head.treeSize) +
                              " entries is not an extension of " + configured + ": " + s.message());
  }
  return Status::ok();
}

void PeerAuditor::raiseAlert(const Member& peer, const std::string& message) {
  registry_.counter(kAlertMetric, kAlertHelp, {{"peer", peer.name}}).inc();
  ops::logEvent(spdlog::level::err, "peer_log_alert", {{"peer", peer.name}, {"detail", message}});
  auto appended = log_.append(ethics::EntryKind::kAlert,
                              ethics::AlertEvent{peer.publicKey, peer.name + ": " + message});
  if (!appended) {
    ops::logEvent(spdlog::level::err, "peer_log_alert_not_logged",
                  {{"peer", peer.name}, {"detail", appended.status().toString()}});
  }
  ops::flush();
}

}  // namespace trialmesh::node
