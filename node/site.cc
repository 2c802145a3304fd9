#include "node/site.h"

#include <arpa/inet.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "crypto/hash.h"
#include "crypto/mask.h"
#include "crypto/noise.h"
#include "crypto/seal.h"
#include "ethics/approval.h"
#include "ethics/audit_log.h"
#include "ethics/key_rotation.h"
#include "ethics/privacy_budget.h"
#include "node/admin_ops.h"
#include "node/admin_protocol.h"
#include "node/admin_server.h"
#include "node/alert.h"
#include "node/check_config.h"
#include "node/handshake_budget.h"
#include "node/members_signature.h"
#include "node/ops/logging.h"
#include "node/ops/metrics.h"
#include "node/ops/ops_server.h"
#include "node/ops/sd_notify.h"
#include "node/peer_audit.h"
#include "node/refusal_audit.h"
#include "node/surveillance_pace.h"
#include "protocol/freshness.h"
#include "protocol/message_size_guard.h"
#include "protocol/messages.h"
#include "protocol/secure_stream.h"
#include "query/additive.h"
#include "query/engine.h"
#include "query/plan.h"
#include "query/query.h"
#include "query/time_group.h"
#include "storage/store.h"

namespace trialmesh::node {
namespace {

namespace wire = protocol::wire;
using RunQueryContext = capnp::CallContext<wire::Site::RunQueryParams, wire::Site::RunQueryResults>;

using ops::PeerFailureKind;
using ops::RefusalReason;
using spdlog::level::level_enum;

constexpr const char* kSoftwareVersion = "trialmesh 0.1.0";

// Node events are rare (per connection and per query) and operators tail the log, so each is
// written out at once rather than buffered until the next warning.
void logEvent(spdlog::level::level_enum level, std::string_view event,
              const std::vector<ops::Field>& fields) {
  ops::logEvent(level, event, fields);
  ops::flush();
}

// ", issued 2026-12-05T10:37:27.123Z" (statement format 2), "" for a format-1 statement: the
// audit log records the order in which same-day statements apply (docs/ethics.md).
std::string issuedText(const ethics::Statement& st) {
  if (!st.issuedAtMs) return "";
  const int64_t ms = *st.issuedAtMs;
  const int64_t secondsOfDay = (ms / 1000) % 86'400;
  char buf[48];
  std::snprintf(buf, sizeof buf, ", issued %sT%02d:%02d:%02d.%03dZ",
                ethics::dateFromUnixMs(ms).toString().c_str(),
                static_cast<int>(secondsOfDay / 3600), static_cast<int>(secondsOfDay / 60 % 60),
                static_cast<int>(secondsOfDay % 60), static_cast<int>(ms % 1000));
  return buf;
}

std::string peerAddressOf(kj::AsyncIoStream& stream) {
  struct sockaddr_storage addr {};
  kj::uint len = sizeof(addr);
  try {
    stream.getpeername(reinterpret_cast<struct sockaddr*>(&addr), &len);
  } catch (const kj::Exception&) {
    return "unknown";
  }
  char host[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    auto* a = reinterpret_cast<struct sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<struct sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "unknown";
}

// A dataset's current version, opened once: the snapshot, its dictionary and the dictionary's
// TOML. Queries on the same version share it, so a query neither re-opens the snapshot nor
// re-parses and re-serialises the stored dictionary (together ~0.1 ms, more than a scan of a
// few thousand rows).
struct OpenedDataset {
  uint64_t version = 0;
  std::shared_ptr<const storage::ColumnSource> source;
  std::string dictionaryToml;
  crypto::Sha256Digest dictionaryHash{};  // hashing the canonical form is not free either
};

// The opened version of each dataset. Every query still reads the dataset's record (one
// RocksDB point read) to learn its current version, so a re-import is answered from the new
// version at once; the old snapshot is released when the last scan using it ends. Between
// queries the snapshot of the current version stays open, which pins nothing a later
// compaction could reclaim until the next import. Thread-safe (scan threads).
class DatasetCache {
 public:
  Result<std::shared_ptr<const OpenedDataset>> get(const storage::Store& store,
                                                   const std::string& dataset) {
    TM_ASSIGN_OR_RETURN(storage::DatasetInfo before, store.datasetInfo(dataset));
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = open_.find(dataset);
      if (it != open_.end() && it->second->version == before.version) return it->second;
    }
    TM_ASSIGN_OR_RETURN(auto source, store.openDataset(dataset));
    auto opened = std::make_shared<OpenedDataset>();
    opened->version = before.version;
    opened->dictionaryToml = source->dictionary().toToml();
    opened->dictionaryHash = source->dictionary().hash();
    opened->source = std::move(source);
    // The snapshot was taken between the two reads; versions only grow, so equal versions
    // mean the snapshot holds exactly `before.version`. Otherwise an import raced us: use the
    // snapshot for this query (it is consistent) but do not cache it under a wrong version.
    TM_ASSIGN_OR_RETURN(storage::DatasetInfo after, store.datasetInfo(dataset));
    if (after.version == before.version) {
      std::lock_guard<std::mutex> lock(mu_);
      open_[dataset] = opened;
    } else {
      opened->version = after.version;
    }
    return std::shared_ptr<const OpenedDataset>(std::move(opened));
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const OpenedDataset>> open_;
};

// What a scan on the worker pool hands back to the event loop.
struct ScanOutcome {
  Status status;
  query::PartialResult partial;
  std::shared_ptr<const OpenedDataset> dataset;  // set when the scan ran
  uint64_t elapsedUs = 0;
  std::vector<uint8_t> sealed;  // secure modes: the masked vector sealed to the coordinator
};

// ---- secure aggregation (issue #5; docs/privacy.md) ----

const char* wireModeName(wire::Aggregation mode) {
  switch (mode) {
    case wire::Aggregation::PLAIN:
      return "plain";
    case wire::Aggregation::SECURE:
      return "secure";
    case wire::Aggregation::SECURE_DP:
      return "secure-dp";
  }
  return "unknown";
}

const char* modeRequirement(ethics::AggregationMode mode) {
  switch (mode) {
    case ethics::AggregationMode::kPlain:
      return "plain aggregation";
    case ethics::AggregationMode::kSecure:
      return "secure aggregation";
    case ethics::AggregationMode::kSecureDp:
      return "secure aggregation with differential privacy (secure-dp)";
  }
  return "?";
}

// What the worker needs to turn a partial into a sealed masked vector.
struct SecureRound {
  wire::Aggregation mode = wire::Aggregation::SECURE;
  std::vector<crypto::PublicKey> participants;
  std::vector<uint8_t> roundId;  // the query's nonce
  // The query's signer: the masked vector is sealed to it.
  crypto::PublicKey coordinator{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  std::optional<double> timeBin;
  double epsilon = 0;                          // secure-dp: ε of this query
  const crypto::Identity* identity = nullptr;  // the site's; outlives the pool's jobs
};

// Sensitivity of one word of the additive encoding, in its integer units (docs/privacy.md,
// "Differential privacy"): 1 for a count (one person changes it by at most one); for a real
// sum, the variable's declared range (max - min) times 2^32, the fixed-point scale; for the
// shifted squares (max - min)^2 times 2^32. A real statistic of a variable without a declared
// range cannot be bounded and is refused.
Result<double> wordSensitivity(const query::AdditiveLayout& layout,
                               const query::AdditiveLayout::Segment& seg) {
  using Field = query::AdditiveLayout::Field;
  if (seg.kind == query::AdditiveLayout::Kind::kCount) return 1.0;
  if (seg.kind == query::AdditiveLayout::Kind::kCountPair) {
    return Status::internal("secure-dp: paired count words cannot carry noise shares");
  }
  const query::detail::Plan& plan = layout.query().plan();
  const auto& agg = plan.aggregates[static_cast<size_t>(seg.stat)];
  double range = 0;
  bool bounded = false;
  if (agg.hasVar) {
    const auto& var = plan.dictionary.variables()[agg.var];
    if (var.min && var.max) {
      range = *var.max - *var.min;
      bounded = true;
    }
  }
  if (seg.field == Field::kVec) {
    return Status::failedPrecondition(
        "secure-dp: model rounds (lm, glm, coxph) release sums whose sensitivity this node "
        "cannot bound, so they are not answered under differential privacy; fit models under an "
        "approval with aggregation = \"secure\"");
  }
  if (!bounded) {
    return Status::failedPrecondition(
        "secure-dp: statistic " + std::to_string(seg.stat + 1) +
        " sums values of a variable without a declared range (min and max in the data "
        "dictionary), so its sensitivity is unbounded; declare the range or ask for counts");
  }
  const double scale = std::ldexp(1.0, query::kFixedPointFractionBits);
  if (seg.field == Field::kShiftedSquares) return range * range * scale;
  return range * scale;
}

// Adds this site's discrete Laplace noise share to every word (secure-dp). Each word gets
// scale sensitivity / ε: a query releases many words, and ε is spent per word, which is the
// per-statistic guarantee docs/privacy.md states.
Status addNoiseShares(std::vector<query::AdditiveWord>& words, const query::AdditiveLayout& layout,
                      const SecureRound& round) {
  crypto::SystemRandomSource random;
  const uint32_t n = static_cast<uint32_t>(round.participants.size());
  for (const auto& seg : layout.segments()) {
    if (seg.length == 0) continue;
    TM_ASSIGN_OR_RETURN(double sensitivity, wordSensitivity(layout, seg));
    TM_ASSIGN_OR_RETURN(double scale, crypto::discreteLaplaceScale(sensitivity, round.epsilon));
    TM_ASSIGN_OR_RETURN(std::vector<int64_t> shares,
                        crypto::discreteLaplaceShares(scale, n, seg.length, random));
    for (size_t i = 0; i < seg.length; ++i) {
      // Two's complement: adding a negative share wraps modulo 2^128 as intended.
      words[seg.offset + i] += static_cast<query::AdditiveWord>(static_cast<__int128>(shares[i]));
    }
  }
  return Status::ok();
}

// encode -> (noise) -> mask -> seal. Runs on the worker pool.
Result<std::vector<uint8_t>> maskedAnswer(const query::BoundQuery& bound,
                                          const query::PartialResult& partial,
                                          const SecureRound& round) {
  query::AdditiveOptions options;
  options.kmTimeBin = round.timeBin;
  // The coordinator builds the same layout (node/coordinator.cc): noisy counts are never paired.
  options.noisyCounts = round.mode == wire::Aggregation::SECURE_DP;
  TM_ASSIGN_OR_RETURN(query::AdditiveLayout layout, query::AdditiveLayout::create(bound, options));
  TM_ASSIGN_OR_RETURN(std::vector<query::AdditiveWord> words,
                      query::encodeAdditive(partial, layout));
  if (round.mode == wire::Aggregation::SECURE_DP) {
    TM_RETURN_IF_ERROR(addNoiseShares(words, layout, round));
  }
  TM_ASSIGN_OR_RETURN(
      crypto::PairwiseMasker masker,
      crypto::PairwiseMasker::create(*round.identity, round.participants, round.roundId));
  TM_RETURN_IF_ERROR(masker.addMask(words));
  return crypto::sealForRound(*round.identity, round.coordinator, round.roundId,
                              crypto::maskWordsToBytes(words));
}

// Lets sleeping fault-injection delays end early at shutdown.
struct StopSignal {
  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;
  void stop() {
    std::lock_guard<std::mutex> lock(mu);
    stopped = true;
    cv.notify_all();
  }
  // Sleeps up to `d`; ends early at shutdown or once `abandoned` is set (polled every 10 ms).
  void sleepUnless(std::chrono::milliseconds d, const std::atomic<bool>& abandoned) {
    const auto until = std::chrono::steady_clock::now() + d;
    std::unique_lock<std::mutex> lock(mu);
    while (!stopped && !abandoned.load()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= until) return;
      cv.wait_for(lock, std::min<std::chrono::steady_clock::duration>(
                            until - now, std::chrono::milliseconds(10)));
    }
  }
};

class SiteState;

// One authenticated connection: the secure stream with RPC on top. The guard between them
// reports a message over limits.max_message_bytes before Cap'n Proto's reader refuses it.
struct Connection {
  Connection(kj::Own<protocol::SecureStream> s, capnp::Capability::Client bootstrap,
             uint64_t maxMessageBytes, protocol::MessageSizeGuard::OversizedHandler onOversized)
      : stream(kj::mv(s)),
        guard(*stream, maxMessageBytes, std::move(onOversized)),
        network(guard, capnp::rpc::twoparty::Side::SERVER,
                protocol::peerReaderOptions(maxMessageBytes)),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  kj::Own<protocol::SecureStream> stream;
  protocol::MessageSizeGuard guard;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

class SiteState final : public kj::TaskSet::ErrorHandler {
 public:
  SiteState(const NodeConfig& config, Members members, crypto::Identity identity,
            std::unique_ptr<storage::Store> store, kj::Timer& timer, ops::NodeMetrics& metrics)
      : config_(config),
        members_(std::make_shared<const Members>(std::move(members))),
        identity_(std::move(identity)),
        store_(std::move(store)),
        timer_(timer),
        metrics_(metrics),
        guard_(protocol::SystemClock::instance(),
               protocol::FreshnessPolicy{config.limits.maxQueryAgeMs, config.limits.clockSkewMs,
                                         1'000'000}),
        pool_(config.limits.workerThreads != 0 ? config.limits.workerThreads
                                               : std::max(1u, std::thread::hardware_concurrency())),
        shutdownPaf_(kj::newPromiseAndFulfiller<void>()),
        shutdown_(shutdownPaf_.promise.fork()),
        tasks_(kj::heap<kj::TaskSet>(*this)) {
    for (const auto& b : config.datasets) datasets_[b.study] = b.dataset;
  }

  void taskFailed(kj::Exception&& e) override {
    spdlog::error("internal task failed: {}", e.getDescription().cStr());
  }

  const NodeConfig& config() const { return config_; }
  const Members& members() const { return *members_; }
  // Reload (SIGHUP): the new members take effect for the next connection and request. The old
  // table stays alive until shutdown, so a Member* held by a request in flight, or the peer
  // auditor's reference to the start-up table, never dangles. One reload per operator action:
  // the retained tables are a few KiB each.
  void replaceMembers(Members next) {
    std::lock_guard<std::mutex> lock(membersMu_);
    retiredMembers_.push_back(members_);
    members_ = std::make_shared<const Members>(std::move(next));
  }
  // The table in force, for other threads (the peer auditor). The event loop, the only writer,
  // reads members_ directly.
  std::shared_ptr<const Members> membersSnapshot() const {
    std::lock_guard<std::mutex> lock(membersMu_);
    return members_;
  }
  const crypto::Identity& identity() const { return identity_; }
  ops::NodeMetrics& metrics() { return metrics_; }
  kj::Timer& timer() { return timer_; }
  uint32_t inFlight() const { return inFlight_; }
  uint32_t connections() const { return connections_; }
  bool shuttingDown() const { return shuttingDown_; }

  // (study, version of its dataset) for every dataset the store holds; a study whose dataset
  // cannot be read is left out (its queries report why).
  std::vector<std::pair<std::string, uint64_t>> datasetVersions() const {
    std::vector<std::pair<std::string, uint64_t>> out;
    for (const auto& [study, dataset] : datasets_) {
      auto info = store_->datasetInfo(dataset);
      if (info.isOk()) out.emplace_back(study, info->version);
    }
    return out;
  }
  // True the first time these alert bytes' hash is seen since the node started.
  bool firstSightOfAlert(const crypto::Sha256Digest& hash) {
    return alertsSeen_.insert(hash).second;
  }
  std::vector<std::string> studies() const {
    std::vector<std::string> out;
    for (const auto& [study, dataset] : datasets_) out.push_back(study);
    return out;
  }

  // Throws the refusal after logging and counting it.
  [[noreturn]] void refuse(RefusalReason reason, const Status& status, const std::string& peer) {
    // A deferred audit entry (the allowed decision of a query) must be durable before any
    // answer about that query leaves; cheap when nothing is pending. A failed flush is already
    // a refusal, so the refusal below stands either way.
    if (audit_) (void)audit_->flush();
    metrics_.queriesRefused(reason).inc();
    logEvent(level_enum::warn, "query_refused",
             {{"peer", peer},
              {"reason", ops::refusalReasonLabel(reason)},
              {"detail", status.toString()}});
    throw protocol::statusToException(status);
  }

  // A refusal before the ethics check: audited (rate-limited, node/refusal_audit.h), then
  // refuse(). The ethics check's own refusals are audited as the query's decision instead.
  [[noreturn]] void refuseBeforeEthics(RefusalReason reason, const Status& status,
                                       const std::string& peer, const std::string& remote) {
    auditRefusal(refusalClassOf(reason), peer, remote, status.toString());
    refuse(reason, status, peer);
  }
  static ops::RefusalClass refusalClassOf(RefusalReason reason) {
    switch (reason) {
      case RefusalReason::kSignature:
        return ops::RefusalClass::kBadSignature;
      case RefusalReason::kReplay:
        return ops::RefusalClass::kReplay;
      case RefusalReason::kFreshness:
        return ops::RefusalClass::kStale;
      case RefusalReason::kMembership:
        return ops::RefusalClass::kMembership;
      case RefusalReason::kLimit:
        return ops::RefusalClass::kLimit;
      default:
        return ops::RefusalClass::kMalformed;
    }
  }
  // Counts and (rate-limited) audits a refusal before the ethics check; `peer` is the
  // authenticated member's name, or "" before authentication.
  void auditRefusal(ops::RefusalClass reasonClass, const std::string& peer,
                    const std::string& remote, const std::string& message) {
    if (refusals_) {
      refusals_->record(reasonClass, peer, remote, message);
    } else {
      metrics_.refusals(reasonClass).inc();
    }
  }
  // Writes the summaries of closed rate-limit windows, every second until shutdown.
  kj::Promise<void> refusalSummaryLoop() {
    return timer_.afterDelay(1 * kj::SECONDS).then([this]() -> kj::Promise<void> {
      if (refusals_) refusals_->expire();
      if (shuttingDown_) return kj::READY_NOW;
      return refusalSummaryLoop();
    });
  }

  kj::Promise<void> runQuery(RunQueryContext context, const crypto::PublicKey& peerKey,
                             const std::string& peerName, const std::string& remote);
  // Fills the response of a query whose scan succeeded and whose audit entries are durable,
  // and counts and logs it as served.
  void answer(RunQueryContext& context, const ScanOutcome& o,
              const std::string& knownDictionaryHash, const std::string& peerName,
              const std::string& study, std::chrono::steady_clock::time_point start);

  // Opens the approval store and the audit log ([ethics] of node.toml), rebuilds the approval
  // registry, remembers each study's dictionary hash and appends the node-start entry.
  // The secure-aggregation rules of a request under `grant` (docs/privacy.md): the mode must be
  // the approval's; in secure modes the participant list must be strictly ascending, contain
  // this site, reach the approval's min_sites and name only sites of the study.
  Status checkRound(const protocol::QueryRequestFields& r, const ethics::Grant& grant) const;
  // secure-dp: charges the approval's ε to the (study, version, coordinator) account of the
  // ledger at <data_dir>/privacy-budget (opened on first use), durably, and logs the charge in
  // the audit log, before the query runs. Throws the refusal (ResourceExhausted with the
  // ledger's message) when the budget would be exceeded.
  void chargePrivacyBudget(const protocol::QueryRequestFields& r, const ethics::Hash& queryHash,
                           const ethics::Grant& grant, const std::string& peerName);
  Status openEthics(const std::map<std::string, ethics::Hash>& dictionaryHashes);
  // Appends the node-stop entry; logged (not fatal) if the write fails.
  void closeEthics(const std::string& reason);

  ethics::AuditLog& audit() { return *audit_; }
  const std::vector<uint64_t>& keyRotations() const { return keyRotations_; }
  ethics::ApprovalRegistry& registry() { return *registry_; }
  ethics::ApprovalStore& approvalStore() { return *approvalStore_; }
  const std::shared_ptr<storage::Store>& store() const { return store_; }
  // The secure-dp ledger for a backup: the open one, or opened now if this site has one on
  // disk; null when it has none (never used secure-dp). Called from admin threads.
  const ethics::PrivacyBudgetLedger* ledgerForBackup() {
    std::lock_guard<std::mutex> lock(ledgerMu_);
    const std::string path = config_.dataDir + "/privacy-budget";
    std::error_code ec;
    if (!ledger_ && std::filesystem::exists(path, ec)) {
      auto opened = ethics::PrivacyBudgetLedger::open(path);
      if (opened) ledger_ = std::move(*opened);
    }
    return ledger_.get();
  }
  // Appends an audit entry; throws the refusal (and logs it) when the durable write fails, so
  // nothing is answered that the log does not hold.
  ethics::Entry appendOrRefuse(ethics::EntryKind kind, ethics::EntryBody body,
                               const std::string& peer,
                               ethics::Durability durability = ethics::Durability::kSynced);

  void accept(kj::Own<kj::AsyncIoStream> transport);
  // A peer sent an RPC message over limits.max_message_bytes (bytes = 0: too many segments):
  // one log line (at most one a second; a flood is summarised by `suppressed_before`), the
  // metric and the (rate-limited) audit entry. The guard then closes the connection.
  void messageOversized(const std::string& peer, const std::string& address, uint64_t bytes,
                        uint64_t limit, uint64_t segments);
  // Counts a refused connection and logs it, at most once a second (a flood is summarised by
  // the next line's `suppressed_before`).
  // Also audits it (rate-limited) under `reasonClass`; `peer` is "" before authentication.
  void logConnectionRefused(const std::string& address, const std::string& reason,
                            ops::RefusalClass reasonClass, const std::string& peer = "");
  kj::Promise<void> acceptLoop(kj::ConnectionReceiver& listener) {
    return listener.accept().then([this, &listener](kj::Own<kj::AsyncIoStream> transport) {
      accept(kj::mv(transport));
      return acceptLoop(listener);
    });
  }

  void beginShutdown() {
    shuttingDown_ = true;
    stop_->stop();
    shutdownPaf_.fulfiller->fulfill();
  }
  // Destroys the connections (after in-flight answers went out) and joins the scan threads.
  void finish() {
    tasks_ = nullptr;
    pool_.stop();
    pool_.join();
  }

 private:
  const NodeConfig& config_;
  std::shared_ptr<const Members> members_;
  std::vector<std::shared_ptr<const Members>> retiredMembers_;
  mutable std::mutex membersMu_;  // guards members_ against membersSnapshot() from other threads
  crypto::Identity identity_;
  std::shared_ptr<storage::Store> store_;
  kj::Timer& timer_;
  ops::NodeMetrics& metrics_;
  protocol::ReplayGuard guard_;
  boost::asio::thread_pool pool_;
  std::map<std::string, std::string> datasets_;  // study -> dataset
  std::shared_ptr<DatasetCache> openDatasets_ = std::make_shared<DatasetCache>();
  kj::PromiseFulfillerPair<void> shutdownPaf_;
  kj::ForkedPromise<void> shutdown_;
  bool shuttingDown_ = false;
  std::shared_ptr<StopSignal> stop_ = std::make_shared<StopSignal>();
  uint32_t inFlight_ = 0;
  uint32_t connections_ = 0;  // authenticated
  HandshakeBudget handshakes_{config_.limits.maxUnauthenticatedConnections,
                              config_.limits.maxUnauthenticatedPerAddress};
  std::map<uint64_t, kj::Own<kj::PromiseFulfiller<void>>> evictors_;  // pending handshakes
  LogThrottle refusalLog_{1000};
  LogThrottle oversizedLog_{1000};
  kj::Own<kj::TaskSet> tasks_;
  std::map<std::string, ethics::Hash> dictionaryHashes_;  // study -> dictionary hash
  std::unique_ptr<ethics::ApprovalStore> approvalStore_;
  std::unique_ptr<ethics::ApprovalRegistry> registry_;
  std::unique_ptr<ethics::AuditLog> audit_;
  // Positions of the log's key-rotation entries (fixed while running: rotate-key runs offline).
  std::vector<uint64_t> keyRotations_;
  std::mutex ledgerMu_;                                  // guards opening ledger_
  std::unique_ptr<ethics::PrivacyBudgetLedger> ledger_;  // secure-dp; opened on first use
  std::unique_ptr<RefusalAuditor> refusals_;             // with the audit log
  SurveillancePace surveillancePace_;                    // surveillance_min_interval_ms
  std::set<crypto::Sha256Digest> alertsSeen_;            // surveillance alerts recorded
};

Status SiteState::checkRound(const protocol::QueryRequestFields& r,
                             const ethics::Grant& grant) const {
  const std::string label = grant.study + " v" + std::to_string(grant.protocolVersion);
  if (r.aggregation != protocol::aggregationToWire(grant.aggregation)) {
    return Status::failedPrecondition("approval " + label + " requires " +
                                      modeRequirement(grant.aggregation) +
                                      "; the query asked for " + wireModeName(r.aggregation));
  }
  if (r.aggregation == wire::Aggregation::PLAIN) return Status::ok();
  const auto& list = r.participants;
  for (size_t i = 1; i < list.size(); ++i) {
    if (!(list[i - 1].bytes() < list[i].bytes())) {
      return Status::invalidArgument(
          "secure round: participant list is not strictly ascending at "
          "position " +
          std::to_string(i) + " (" + list[i].toText() + ")");
    }
  }
  if (std::find(list.begin(), list.end(), identity_.pub) == list.end()) {
    return Status::invalidArgument("secure round: participant list does not name this site ('" +
                                   config_.name + "', " + identity_.pub.toText() + ")");
  }
  if (list.size() < grant.minSites) {
    return Status::failedPrecondition("secure round names " + std::to_string(list.size()) +
                                      " participants; approval " + label + " requires at least " +
                                      std::to_string(grant.minSites) + " (min_sites)");
  }
  const std::vector<const Member*> sites = members_->sitesOf(r.study);
  const int64_t now = nowUnixMs();
  for (const crypto::PublicKey& key : list) {
    // Only the site that holds `key` is asked whether it is still valid: asking every site
    // built an error text per (participant, site) pair, 22,500 per query at 150 sites.
    bool found = false;
    for (const Member* m : sites) {
      if (m->publicKey != key && m->findPrevious(key) == nullptr) continue;
      found = m->checkKeyAt(key, now, "participant").isOk();
      if (found) break;
    }
    if (!found) {
      return Status::permissionDenied(
          "secure round: participant " + key.toText() + " is not a site of study '" + r.study +
          "' in the members file of federation '" + members_->federation + "'");
    }
  }
  return Status::ok();
}

void SiteState::chargePrivacyBudget(const protocol::QueryRequestFields& r,
                                    const ethics::Hash& queryHash, const ethics::Grant& grant,
                                    const std::string& peerName) {
  std::unique_lock<std::mutex> ledgerLock(ledgerMu_);  // admin threads open it for backups
  if (!ledger_) {
    const std::string path = config_.dataDir + "/privacy-budget";
    auto opened = ethics::PrivacyBudgetLedger::open(path);
    if (!opened) {
      refuse(RefusalReason::kError,
             Status::unavailable("cannot open the privacy budget ledger " + path + ": " +
                                 opened.status().message()),
             peerName);
    }
    ledger_ = std::move(*opened);
  }
  ledgerLock.unlock();
  ethics::BudgetAccount account;
  account.study = grant.study;
  account.protocolVersion = grant.protocolVersion;
  account.coordinator = r.coordinatorKey;
  const Member* coordinator = members_->findByKey(r.coordinatorKey);
  account.coordinatorName = coordinator != nullptr ? coordinator->name : peerName;
  account.budget = grant.dpBudget;
  auto charged = ledger_->charge(account, grant.dpEpsilonPerQuery);
  ethics::BudgetChargeEvent event;
  event.coordinator = r.coordinatorKey;
  event.study = r.study;
  event.protocolVersion = grant.protocolVersion;
  event.queryHash = queryHash;
  event.epsilon = grant.dpEpsilonPerQuery;
  event.spent = charged.isOk() ? charged->spent : 0.0;
  event.budget = grant.dpBudget;
  event.charged = charged.isOk();
  if (!charged) event.reason = charged.status().message();
  appendOrRefuse(ethics::EntryKind::kPrivacyBudgetCharged, std::move(event), peerName);
  if (!charged) refuse(RefusalReason::kEthics, charged.status(), peerName);
}

Status SiteState::openEthics(const std::map<std::string, ethics::Hash>& dictionaryHashes) {
  dictionaryHashes_ = dictionaryHashes;
  const EthicsConfig& e = config_.ethics;
  for (const std::string* dir : {&e.auditDir, &e.approvalsDir}) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(*dir).parent_path(), ec);
    if (ec) {
      return Status::ioError(config_.path + ": [ethics]: cannot create the parent directory of " +
                             *dir + ": " + ec.message());
    }
  }
  auto store = ethics::ApprovalStore::open(e.approvalsDir);
  if (!store) return store.status().withContext(config_.path + ": [ethics] approvals_dir");
  approvalStore_ = std::move(*store);
  ethics::SitePolicy policy;
  policy.site = config_.name;
  if (e.ownCommittee) {
    policy.mode = ethics::SitePolicy::Mode::kCountersignature;
    policy.siteCommittee = *e.ownCommittee;
  } else {
    policy.mode = ethics::SitePolicy::Mode::kStandingList;
    policy.recognisedCommittees = e.recognisedCommittees;
  }
  auto registry = approvalStore_->load(std::move(policy));
  if (!registry) return registry.status().withContext(e.approvalsDir);
  registry_ = std::move(*registry);
  auto audit = ethics::AuditLog::open(e.auditDir, identity_);
  if (!audit) return audit.status().withContext(config_.path + ": [ethics] audit_dir");
  audit_ = std::move(*audit);
  // After `trialmesh rotate-key` the log says which key signs from now on: starting with
  // another (the old key restored, say) would make every peer see a fork.
  auto history = ethics::readKeyHistory(*audit_);
  if (!history) return history.status().withContext("audit log " + e.auditDir);
  if (history->latest && history->latest->newKey != identity_.pub) {
    return Status::failedPrecondition(
        "audit log " + e.auditDir + " records (entry " + std::to_string(history->rotations.back()) +
        ") the rotation of this node's key to " + history->latest->newKey.toText() +
        ", but identity " + config_.identityPath + " is " + identity_.pub.toText() +
        ": start the node with the new identity (docs/keys.md)");
  }
  keyRotations_ = std::move(history->rotations);
  auto started = audit_->append(ethics::EntryKind::kNodeStart, ethics::NodeEvent{kSoftwareVersion});
  if (!started) return started.status().withContext("audit log " + e.auditDir);
  refusals_ = std::make_unique<RefusalAuditor>(audit_.get(), metrics_,
                                               config_.limits.auditRefusalsPerMinute);
  tasks_->add(refusalSummaryLoop());
  return Status::ok();
}

void SiteState::closeEthics(const std::string& reason) {
  if (!audit_) return;
  if (refusals_) refusals_->drain();  // the flood's last summaries, before the node-stop entry
  auto stopped = audit_->append(ethics::EntryKind::kNodeStop, ethics::NodeEvent{reason});
  if (!stopped) {
    spdlog::error("audit log: node-stop entry not written: {}", stopped.status().toString());
  }
}

ethics::Entry SiteState::appendOrRefuse(ethics::EntryKind kind, ethics::EntryBody body,
                                        const std::string& peer, ethics::Durability durability) {
  auto entry = audit_->append(kind, std::move(body), durability);
  if (!entry) {
    refuse(RefusalReason::kError,
           Status::unavailable("the audit log write failed (" + entry.status().message() +
                               "); this site answers nothing it cannot log"),
           peer);
  }
  return std::move(*entry);
}

// What a query uses, for the ethics check: every variable named anywhere and every statistic.
ethics::QueryUse queryUse(const query::Query& q) {
  ethics::QueryUse use;
  std::set<std::string> vars;
  for (const auto& b : q.by) vars.insert(query::groupVariable(b));  // week(d) reads d
  std::set<std::string> analyses;
  for (const auto& a : q.select) {
    analyses.insert(query::analysisName(a.fn));  // a model round counts as its model
    for (const auto& v : query::aggregateVariables(a)) vars.insert(v);
  }
  std::vector<const query::Filter*> stack;
  if (q.where) stack.push_back(&*q.where);
  while (!stack.empty()) {
    const query::Filter* f = stack.back();
    stack.pop_back();
    if (!f->var.empty()) vars.insert(f->var);
    for (const auto& c : f->children) stack.push_back(&c);
  }
  use.variables.assign(vars.begin(), vars.end());
  use.analyses.assign(analyses.begin(), analyses.end());
  return use;
}

// The Site capability for one authenticated peer.
class SiteImpl final : public wire::Site::Server {
 public:
  SiteImpl(SiteState& state, crypto::PublicKey peer, std::string peerName, std::string remote)
      : state_(state), peer_(peer), peerName_(std::move(peerName)), remote_(std::move(remote)) {}

  kj::Promise<void> info(InfoContext context) override {
    auto info = context.getResults().initInfo();
    info.setName(state_.config().name);
    info.setFederation(state_.members().federation);
    info.setRole("site");
    info.setProtocolVersion(protocol::kProtocolVersion);
    info.setSoftwareVersion(kSoftwareVersion);
    auto studies = state_.studies();
    auto list = info.initStudies(static_cast<unsigned>(studies.size()));
    for (size_t i = 0; i < studies.size(); ++i) list.set(static_cast<unsigned>(i), studies[i]);
    // The approval per study this site answers under (the newest it recognises: an
    // unrecognised newer version must not change the policy either): what a coordinator must
    // aggregate by.
    std::vector<ethics::Approval> newest;
    for (const auto& sa : state_.registry().governingApprovals()) {
      const ethics::Approval& a = sa.approval;
      if (std::find(studies.begin(), studies.end(), a.study) != studies.end()) newest.push_back(a);
    }
    auto policies = info.initPolicies(static_cast<unsigned>(newest.size()));
    for (size_t i = 0; i < newest.size(); ++i) {
      auto p = policies[static_cast<unsigned>(i)];
      p.setStudy(newest[i].study);
      p.setApproval(newest[i].label());
      p.setAggregation(protocol::aggregationToWire(newest[i].aggregation));
      p.setMinSites(newest[i].minSites);
      p.setMinCellSize(newest[i].minCellSize);
      p.setTimeBin(newest[i].timeBin.value_or(0.0));
      p.setDpEpsilonPerQuery(newest[i].dpEpsilonPerQuery);
    }
    auto versions = state_.datasetVersions();
    auto datasets = info.initDatasets(static_cast<unsigned>(versions.size()));
    for (size_t i = 0; i < versions.size(); ++i) {
      datasets[static_cast<unsigned>(i)].setStudy(versions[i].first);
      datasets[static_cast<unsigned>(i)].setVersion(versions[i].second);
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> runQuery(RunQueryContext context) override {
    return state_.runQuery(context, peer_, peerName_, remote_);
  }

  kj::Promise<void> submitApproval(SubmitApprovalContext context) override {
    requireEthicsAccess("submitApproval");
    auto bytes = context.getParams().getApproval();
    auto decoded = ethics::decodeSignedApproval({bytes.begin(), bytes.size()});
    if (!decoded) fail("submitApproval", decoded.status().withContext("approval bytes"));
    const ethics::SignedApproval& sa = *decoded;
    Status verified = ethics::verifyApproval(sa);
    if (!verified.isOk()) fail("submitApproval", verified);
    // Refused before it is stored: an unrecognised committee's approval must never be able to
    // supersede the recognised one (issue #12).
    Status admissible = state_.registry().admissible(sa.approval);
    if (!admissible.isOk()) {
      fail("submitApproval",
           Status::permissionDenied(admissible.message() +
                                    "; not stored (this site stores only approvals of the "
                                    "committees in its [ethics] recognised_committees)"));
    }
    bool amendment = false;
    for (const auto& existing : state_.registry().approvals()) {
      if (existing.approval.study == sa.approval.study &&
          existing.approval.protocolVersion < sa.approval.protocolVersion) {
        amendment = true;
      }
    }
    Status added = state_.registry().addApproval(sa);
    if (!added.isOk()) fail("submitApproval", added);
    Status stored = state_.approvalStore().putApproval(sa);
    if (!stored.isOk()) fail("submitApproval", stored);
    const ethics::Hash id = ethics::approvalId(sa.approval);
    ethics::ApprovalEvent event{
        sa.approval.study, sa.approval.protocolVersion, id,
        "lead committee '" + sa.approval.leadCommittee.name + "', submitted by " + peerName_};
    state_.appendOrRefuse(
        amendment ? ethics::EntryKind::kApprovalAmended : ethics::EntryKind::kApprovalReceived,
        std::move(event), peerName_);
    logEvent(level_enum::info, "approval_stored",
             {{"peer", peerName_}, {"approval", sa.approval.label()}, {"id", ethics::hashHex(id)}});
    context.getResults().setReceipt("site " + state_.config().name + " stored approval " +
                                    sa.approval.label() + " (id " + ethics::hashHex(id) + ")");
    return kj::READY_NOW;
  }

  kj::Promise<void> submitStatement(SubmitStatementContext context) override {
    requireEthicsAccess("submitStatement");
    auto bytes = context.getParams().getStatement();
    auto decoded = ethics::decodeSignedStatement({bytes.begin(), bytes.size()});
    if (!decoded) fail("submitStatement", decoded.status().withContext("statement bytes"));
    const ethics::Statement& st = decoded->statement;
    Status added = state_.registry().addStatement(*decoded);
    if (!added.isOk()) fail("submitStatement", added);
    Status stored = state_.approvalStore().putStatement(*decoded);
    if (!stored.isOk()) fail("submitStatement", stored);
    ethics::EntryKind kind = ethics::EntryKind::kApprovalRecognised;
    switch (st.kind) {
      case ethics::StatementKind::kRecognition:
        kind = ethics::EntryKind::kApprovalRecognised;
        break;
      case ethics::StatementKind::kSuspension:
        kind = ethics::EntryKind::kApprovalSuspended;
        break;
      case ethics::StatementKind::kReinstatement:
        kind = ethics::EntryKind::kApprovalReinstated;
        break;
      case ethics::StatementKind::kRevocation:
        kind = ethics::EntryKind::kApprovalRevoked;
        break;
    }
    const std::string label = st.study + " v" + std::to_string(st.protocolVersion);
    state_.appendOrRefuse(
        kind,
        ethics::ApprovalEvent{st.study, st.protocolVersion, st.approvalId,
                              st.reason + " (signed by " + st.signer.toText() + ", effective " +
                                  st.effective.toString() + issuedText(st) + ")"},
        peerName_);
    logEvent(
        level_enum::info, "approval_statement_stored",
        {{"peer", peerName_}, {"approval", label}, {"kind", ethics::statementKindName(st.kind)}});
    context.getResults().setReceipt("site " + state_.config().name + " stored " +
                                    ethics::statementKindName(st.kind) + " of approval " + label);
    return kj::READY_NOW;
  }

  kj::Promise<void> listApprovals(ListApprovalsContext context) override {
    requireEthicsAccess("listApprovals");
    const ethics::Date today =
        ethics::dateFromUnixMs(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
    // One snapshot: the approvals and this site's standing on each (`trialmesh ethics list`).
    const auto standings = state_.registry().standings(today);
    auto results = context.getResults();
    auto list = results.initApprovals(static_cast<unsigned>(standings.size()));
    auto out = results.initStandings(static_cast<unsigned>(standings.size()));
    auto data = [](const auto& bytes) {
      return kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size());
    };
    for (size_t i = 0; i < standings.size(); ++i) {
      const ethics::ApprovalStanding& s = standings[i];
      const auto at = static_cast<unsigned>(i);
      list.set(at, data(ethics::encodeSignedApproval(s.approval)));
      auto st = out[at];
      st.setState(s.state);
      if (s.recognisedBy) st.setRecognisedBy(data(s.recognisedBy->bytes()));
      auto history = st.initStatements(static_cast<unsigned>(s.statements.size()));
      for (size_t k = 0; k < s.statements.size(); ++k) {
        const ethics::Statement& x = s.statements[k];
        auto h = history[static_cast<unsigned>(k)];
        h.setKind(ethics::statementKindName(x.kind));
        h.setSigner(data(x.signer.bytes()));
        h.setEffective(x.effective.toString());
        h.setIssuedAtMs(x.issuedAtMs.value_or(0));
        h.setReason(x.reason);
        h.setSite(x.site);
      }
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> auditTreeHead(AuditTreeHeadContext context) override {
    requireEthicsAccess("auditTreeHead", /*sitesToo=*/true);
    std::string head = ethics::encodeTreeHead(state_.audit().signedTreeHead());
    context.getResults().setHead(
        kj::arrayPtr(reinterpret_cast<const kj::byte*>(head.data()), head.size()));
    return kj::READY_NOW;
  }

  kj::Promise<void> auditEntries(AuditEntriesContext context) override {
    requireEthicsAccess("auditEntries");
    constexpr uint64_t kMaxEntriesPerCall = 10'000;
    const uint64_t size = state_.audit().size();
    const uint64_t begin = std::min(context.getParams().getBegin(), size);
    const uint64_t count = std::min<uint64_t>(context.getParams().getCount(), kMaxEntriesPerCall);
    const uint64_t end = std::min(size, begin + count);
    auto entries = state_.audit().readRange(begin, end);
    if (!entries) fail("auditEntries", entries.status());
    auto list = context.getResults().initEntries(static_cast<unsigned>(entries->size()));
    for (size_t i = 0; i < entries->size(); ++i) {
      const ethics::StoredEntry& e = (*entries)[i];
      auto out = list[static_cast<unsigned>(i)];
      out.setRootAfter(kj::arrayPtr(e.rootAfter.data(), e.rootAfter.size()));
      out.setEntry(kj::arrayPtr(reinterpret_cast<const kj::byte*>(e.bytes.data()), e.bytes.size()));
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> auditConsistency(AuditConsistencyContext context) override {
    requireEthicsAccess("auditConsistency", /*sitesToo=*/true);
    auto proof = state_.audit().consistencyProof(context.getParams().getFromSize(),
                                                 context.getParams().getToSize());
    if (!proof) fail("auditConsistency", proof.status());
    auto list = context.getResults().initProof(static_cast<unsigned>(proof->size()));
    for (size_t i = 0; i < proof->size(); ++i) {
      list.set(static_cast<unsigned>(i), kj::arrayPtr((*proof)[i].data(), (*proof)[i].size()));
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> deliverAlert(DeliverAlertContext context) override {
    auto params = context.getParams();
    auto bytes = params.getAlert();
    auto signature = params.getSignature();
    const std::string text(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
    auto alert = verifyAlert(text, {signature.begin(), signature.size()});
    if (!alert) {
      const bool forged = alert.status().code() == StatusCode::kPermissionDenied;
      state_.auditRefusal(forged ? ops::RefusalClass::kBadSignature : ops::RefusalClass::kMalformed,
                          peerName_, remote_, alert.status().toString());
      fail("deliverAlert", alert.status());
    }
    Status allowed = alertSender(*alert);
    if (!allowed.isOk()) {
      state_.auditRefusal(ops::RefusalClass::kMembership, peerName_, remote_, allowed.toString());
      fail("deliverAlert", allowed);
    }
    const std::string line = describeAlert(*alert);
    // A watcher that restarted before it recorded this site's receipt sends the same signed
    // alert again: it is recorded once.
    if (!state_.firstSightOfAlert(crypto::sha256(text))) {
      context.getResults().setReceipt("site " + state_.config().name + " already recorded " + line);
      return kj::READY_NOW;
    }
    // The audit entry holds the alert's content and who signed it; the signature itself is
    // checked here and not kept (the entry is in this site's own signed log).
    state_.appendOrRefuse(ethics::EntryKind::kAlert, ethics::AlertEvent{alert->coordinator, line},
                          peerName_);
    state_.metrics().surveillanceAlerts.inc();
    logEvent(level_enum::warn, "surveillance_alert",
             {{"peer", peerName_},
              {"study", alert->study},
              {"period", alert->period},
              {"count", std::to_string(alert->count)},
              {"method", alert->method}});
    context.getResults().setReceipt("site " + state_.config().name + " recorded " + line);
    return kj::READY_NOW;
  }

  kj::Promise<void> auditKeyRotations(AuditKeyRotationsContext context) override {
    requireEthicsAccess("auditKeyRotations", /*sitesToo=*/true);
    const uint64_t treeSize = context.getParams().getTreeSize();
    if (treeSize > state_.audit().size()) {
      fail("auditKeyRotations", Status::invalidArgument("tree size " + std::to_string(treeSize) +
                                                        " is past the log's size " +
                                                        std::to_string(state_.audit().size())));
    }
    std::vector<uint64_t> within;
    for (uint64_t i : state_.keyRotations()) {
      if (i < treeSize) within.push_back(i);
    }
    auto list = context.getResults().initEntries(static_cast<unsigned>(within.size()));
    for (size_t k = 0; k < within.size(); ++k) {
      auto stored = state_.audit().readRange(within[k], within[k] + 1);
      if (!stored) fail("auditKeyRotations", stored.status());
      auto proof = state_.audit().inclusionProof(within[k], treeSize);
      if (!proof) fail("auditKeyRotations", proof.status());
      auto out = list[static_cast<unsigned>(k)];
      out.setIndex(within[k]);
      const std::string& bytes = stored->front().bytes;
      out.setEntry(kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
      auto hashes = out.initProof(static_cast<unsigned>(proof->size()));
      for (size_t i = 0; i < proof->size(); ++i) {
        hashes.set(static_cast<unsigned>(i), kj::arrayPtr((*proof)[i].data(), (*proof)[i].size()));
      }
    }
    return kj::READY_NOW;
  }

 private:
  // Who may raise a surveillance alert: the authenticated peer itself (no relaying), a member
  // with role coordinator, and a coordinator of the study's governing approval at this site.
  Status alertSender(const SurveillanceAlert& a) const {
    if (!(a.coordinator == peer_))
      return Status::permissionDenied("alert signed by " + a.coordinator.toText() +
                                      " but sent over a connection authenticated as '" + peerName_ +
                                      "'; a coordinator must send its own alerts");
    const Member* m = state_.members().findByKey(a.coordinator);
    if (m == nullptr || m->role != Role::kCoordinator)
      return Status::permissionDenied("alert signer '" + peerName_ +
                                      "' is not a member with role coordinator");
    if (a.federation != state_.members().federation)
      return Status::permissionDenied("alert is for federation '" + a.federation +
                                      "'; this site belongs to '" + state_.members().federation +
                                      "'");
    const auto studies = state_.studies();
    if (std::find(studies.begin(), studies.end(), a.study) == studies.end())
      return Status::notFound("site '" + state_.config().name + "' serves no study '" + a.study +
                              "'");
    for (const auto& sa : state_.registry().governingApprovals()) {
      if (sa.approval.study != a.study) continue;
      const auto& cs = sa.approval.coordinators;
      if (std::find(cs.begin(), cs.end(), a.coordinator) != cs.end()) return Status::ok();
      return Status::permissionDenied("'" + peerName_ + "' is not a coordinator of approval " +
                                      sa.approval.label() + "; only its coordinators raise alerts");
    }
    return Status::permissionDenied("this site holds no recognised approval for study '" + a.study +
                                    "'");
  }

  // Ethics methods: ethics-board members and the site itself only; with `sitesToo` also other
  // sites (tree heads, consistency proofs and key rotations, for peer fork detection:
  // node/peer_audit.h).
  void requireEthicsAccess(const char* method, bool sitesToo = false) {
    if (peer_ == state_.identity().pub) return;
    const Member* m = state_.members().findByKey(peer_);
    if (m != nullptr && m->role == Role::kEthicsBoard) return;
    if (sitesToo && m != nullptr && m->role == Role::kSite) return;
    const Status denied = Status::permissionDenied(
        std::string(method) + " is for ethics-board members" + (sitesToo ? ", sites" : "") +
        " and the site itself; '" + peerName_ + "' has role " +
        (m != nullptr ? roleName(m->role) : "none"));
    state_.auditRefusal(ops::RefusalClass::kMembership, peerName_, remote_, denied.toString());
    fail(method, denied);
  }
  [[noreturn]] void fail(const char* method, const Status& status) {
    logEvent(level_enum::warn, "ethics_request_refused",
             {{"peer", peerName_}, {"method", method}, {"detail", status.toString()}});
    throw protocol::statusToException(status);
  }

  SiteState& state_;
  crypto::PublicKey peer_;
  std::string peerName_;
  std::string remote_;  // the peer's address, for the audit of refusals
};

kj::Promise<void> SiteState::runQuery(RunQueryContext context, const crypto::PublicKey& peerKey,
                                      const std::string& peerName, const std::string& remote) {
  const auto start = std::chrono::steady_clock::now();
  if (shuttingDown_) {
    refuseBeforeEthics(RefusalReason::kLimit, Status::unavailable("site is shutting down"),
                       peerName, remote);
  }
  protocol::SignedQueryBytes signedQuery;
  try {
    signedQuery = protocol::signedQueryFromWire(context.getParams().getQuery());
  } catch (const kj::Exception& e) {
    refuseBeforeEthics(RefusalReason::kInvalid,
                       Status::invalidArgument(std::string("malformed query message: ") +
                                               e.getDescription().cStr()),
                       peerName, remote);
  }
  auto verified = protocol::verifySignedQuery(signedQuery);
  if (!verified) {
    refuseBeforeEthics(verified.status().code() == StatusCode::kPermissionDenied
                           ? RefusalReason::kSignature
                           : RefusalReason::kInvalid,
                       verified.status(), peerName, remote);
  }
  const protocol::QueryRequestFields& r = *verified;
  auto signerKey = members_->checkKey(r.coordinatorKey, nowUnixMs(), "query signer");
  if (!signerKey) {
    refuseBeforeEthics(RefusalReason::kMembership, signerKey.status(), peerName, remote);
  }
  const Member* signer = *signerKey;
  if (signer->role != Role::kCoordinator) {
    refuseBeforeEthics(
        RefusalReason::kMembership,
        Status::permissionDenied("member '" + signer->name + "' has role " +
                                 roleName(signer->role) + "; only coordinators may query"),
        peerName, remote);
  }
  if (!(r.coordinatorKey == peerKey)) {
    refuseBeforeEthics(
        RefusalReason::kMembership,
        Status::permissionDenied("query signed by '" + signer->name +
                                 "' but sent over a connection authenticated as '" + peerName +
                                 "'; a coordinator must send its own queries"),
        peerName, remote);
  }
  if (r.protocolVersion != protocol::kProtocolVersion) {
    refuseBeforeEthics(RefusalReason::kInvalid,
                       Status::failedPrecondition(
                           "query uses protocol version " + std::to_string(r.protocolVersion) +
                           "; this site speaks " + std::to_string(protocol::kProtocolVersion)),
                       peerName, remote);
  }
  if (r.federation != members_->federation) {
    refuseBeforeEthics(
        RefusalReason::kMembership,
        Status::permissionDenied("query is for federation '" + r.federation +
                                 "'; this site belongs to '" + members_->federation + "'"),
        peerName, remote);
  }
  if (!std::binary_search(r.audience.begin(), r.audience.end(), identity_.pub)) {
    refuseBeforeEthics(
        RefusalReason::kMembership,
        Status::permissionDenied("query is addressed to " + std::to_string(r.audience.size()) +
                                 " other site(s), not to this site ('" + config_.name + "', " +
                                 identity_.pub.toText() + ")"),
        peerName, remote);
  }
  Status fresh = guard_.admit(r);
  if (!fresh.isOk()) {
    RefusalReason reason = RefusalReason::kFreshness;
    if (fresh.code() == StatusCode::kResourceExhausted) reason = RefusalReason::kLimit;
    if (fresh.message().find("nonce already used") != std::string::npos) {
      reason = RefusalReason::kReplay;
    }
    refuseBeforeEthics(reason, fresh, peerName, remote);
  }
  auto ds = datasets_.find(r.study);
  if (ds == datasets_.end()) {
    refuseBeforeEthics(RefusalReason::kInvalid,
                       Status::notFound("site '" + config_.name + "' has no dataset for study '" +
                                        r.study + "' (node config [[dataset]])"),
                       peerName, remote);
  }
  auto parsed = query::parseQuery(r.queryText);
  if (!parsed) refuseBeforeEthics(RefusalReason::kInvalid, parsed.status(), peerName, remote);
  if (query::canonicalQueryText(*parsed) != r.queryText) {
    refuseBeforeEthics(
        RefusalReason::kInvalid,
        Status::invalidArgument("query text is not in canonical form; coordinators sign "
                                "query::canonicalQueryText"),
        peerName, remote);
  }
  if (inFlight_ >= config_.limits.maxConcurrentQueries) {
    refuseBeforeEthics(
        RefusalReason::kLimit,
        Status::resourceExhausted("site is already running " + std::to_string(inFlight_) +
                                  " queries (limits.max_concurrent_queries); retry later"),
        peerName, remote);
  }

  // Ethics: decide, log the decision durably, and only then refuse or go on.
  ethics::QueryUse use = queryUse(*parsed);
  use.site = config_.name;
  use.coordinator = r.coordinatorKey;
  use.study = r.study;
  auto dictHash = dictionaryHashes_.find(r.study);
  if (dictHash != dictionaryHashes_.end()) use.dictionaryHash = dictHash->second;
  use.today = ethics::dateFromUnixMs(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::system_clock::now().time_since_epoch())
                                         .count());
  // Issue #5: the approval decides the aggregation mode and the quorum; a query refused for
  // them does not use up the query budget.
  // Issue #15 item 3: the approval's surveillance_min_interval_ms, checked last so that only
  // an evaluation every other rule allows is recorded as the series' latest.
  std::string seriesKey = r.coordinatorKey.toText();
  for (const crypto::PublicKey& p : r.participants) seriesKey += "," + p.toText();
  seriesKey += "\n" + r.queryText;
  auto grant = registry_->authorize(use, [&](const ethics::Grant& g) {
    TM_RETURN_IF_ERROR(checkRound(r, g));
    return surveillancePace_.admit(*parsed, seriesKey, r.queryText, g,
                                   SurveillancePace::Clock::now());
  });
  const ethics::Hash queryHash = crypto::sha256(r.queryText);
  // Issue 14: what an auditor reads without the node's unsigned log (ethics/audit_log.h).
  ethics::QueryAuditFields auditFields;
  auditFields.queryId = crypto::toHex(r.nonce);
  if (const Member* m = members_->findByKey(r.coordinatorKey))
    auditFields.coordinatorName = m->name;
  auditFields.queryText = r.queryText;
  if (grant.isOk()) {
    auditFields.approvalStudy = grant->study;
    auditFields.approvalVersion = grant->protocolVersion;
    auditFields.approvalId = grant->approvalId;
  }
  ethics::QueryEvent decision;
  decision.coordinator = r.coordinatorKey;
  decision.study = r.study;
  decision.queryHash = queryHash;
  decision.allowed = grant.isOk();
  decision.reason = grant.isOk() ? "approval " + grant->study + " v" +
                                       std::to_string(grant->protocolVersion) + " (id " +
                                       ethics::shortHex(grant->approvalId) + ")"
                                 : grant.status().message();
  decision.audit = auditFields;
  // An allowed decision is made durable by the result-released append (or by refuse()'s
  // flush), so the fsync overlaps the scan and a query pays for one fsync, not two.
  appendOrRefuse(ethics::EntryKind::kQuery, std::move(decision), peerName,
                 grant.isOk() ? ethics::Durability::kDeferred : ethics::Durability::kSynced);
  if (!grant) refuse(RefusalReason::kEthics, grant.status(), peerName);
  if (grant->budgetLeft) {
    Status saved = approvalStore_->putUsage(grant->approvalId, registry_->usage(grant->approvalId));
    if (!saved.isOk()) {
      refuse(RefusalReason::kError,
             Status::unavailable("cannot record the query budget use: " + saved.toString()),
             peerName);
    }
  }
  const ethics::Hash checkedDictionary = use.dictionaryHash;
  const auto knownHashText = context.getParams().getKnownDictionaryHash();
  std::string knownDictionaryHash(knownHashText.cStr(), knownHashText.size());

  std::shared_ptr<SecureRound> secure;
  if (r.aggregation != wire::Aggregation::PLAIN) {
    secure = std::make_shared<SecureRound>();
    secure->mode = r.aggregation;
    secure->participants = r.participants;
    secure->roundId = r.nonce;
    secure->coordinator = r.coordinatorKey;
    secure->timeBin = grant->timeBin;
    secure->epsilon = grant->dpEpsilonPerQuery;
    secure->identity = &identity_;
    if (r.aggregation == wire::Aggregation::SECURE_DP)
      chargePrivacyBudget(r, queryHash, *grant, peerName);
  }

  ++inFlight_;
  metrics_.queriesInFlight.set(inFlight_);
  logEvent(level_enum::info, "query_started",
           {{"peer", peerName}, {"study", r.study}, {"query", r.queryText}});

  // Set when the loop stops waiting for this scan (timeout, shutdown): the scan then stops at
  // its next chunk instead of keeping a worker busy for an answer nobody will read.
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  auto paf = kj::newPromiseAndCrossThreadFulfiller<ScanOutcome>();
  boost::asio::post(pool_, [fulfiller = kj::mv(paf.fulfiller), store = store_, dataset = ds->second,
                            q = std::move(*parsed), threads = config_.limits.scanThreads,
                            stop = stop_, delayMs = config_.testScanDelayMs, checkedDictionary,
                            cache = openDatasets_, secure, cancelled, peerName,
                            modelMinSiteRows = grant->modelMinSiteRows, study = r.study]() mutable {
    if (delayMs > 0) stop->sleepUnless(std::chrono::milliseconds(delayMs), *cancelled);
    ScanOutcome out;
    const auto t0 = std::chrono::steady_clock::now();
    auto run = [&]() -> Status {
      TM_ASSIGN_OR_RETURN(std::shared_ptr<const OpenedDataset> opened, cache->get(*store, dataset));
      const storage::ColumnSource& source = *opened->source;
      if (opened->dictionaryHash != checkedDictionary) {
        return Status::failedPrecondition(
            "the dataset's data dictionary changed since the node started (now " +
            source.dictionary().hashHex() +
            "); restart the node so approvals are checked against it");
      }
      TM_ASSIGN_OR_RETURN(query::BoundQuery bound, query::bindQuery(q, source.dictionary()));
      query::ExecOptions options;
      options.threads = threads;
      // Model rounds of one fit reuse the design built by the first (query/engine.h).
      options.cacheKey = dataset + "@" + std::to_string(opened->version);
      // Secure cox rounds carry event times on the approval's grid; bin before computing so
      // the grid round and the Newton rounds agree (query/additive.h).
      if (secure) options.survivalTimeBin = secure->timeBin;
      // Secure modes: a site's model sums are masked, so the model-size rule applies to the
      // pooled totals at the coordinator, not here (query/model_kernel.h).
      options.modelPerSiteRule = !secure;
      options.modelMinSiteRows = modelMinSiteRows;
      options.cancelled = cancelled;
      TM_ASSIGN_OR_RETURN(out.partial, query::execute(bound, source, options));
      if (secure) {
        TM_ASSIGN_OR_RETURN(out.sealed, maskedAnswer(bound, out.partial, *secure));
      }
      out.dataset = std::move(opened);
      return Status::ok();
    };
    try {
      out.status = run();
    } catch (const std::exception& e) {
      out.status = Status::internal(std::string("scan failed: ") + e.what());
    }
    out.elapsedUs = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count());
    if (cancelled->load()) {
      logEvent(level_enum::info, "scan_cancelled",
               {{"peer", peerName},
                {"study", study},
                {"elapsed_ms", static_cast<double>(out.elapsedUs) / 1000.0},
                {"detail", out.status.isOk() ? std::string("finished before it saw the cancel")
                                             : out.status.toString()}});
    }
    fulfiller->fulfill(kj::mv(out));
  });

  const uint32_t timeoutMs = config_.limits.queryTimeoutMs;
  auto timeout = timer_.afterDelay(timeoutMs * kj::MILLISECONDS).then([timeoutMs, cancelled]() {
    cancelled->store(true);
    ScanOutcome o;
    o.status =
        Status::resourceExhausted("query timed out at the site after " + std::to_string(timeoutMs) +
                                  " ms (limits.query_timeout_ms)");
    return o;
  });
  auto stopping = shutdown_.addBranch().then([cancelled]() {
    cancelled->store(true);
    ScanOutcome o;
    o.status = Status::unavailable("site is shutting down; query cancelled");
    return o;
  });
  return paf.promise.exclusiveJoin(kj::mv(timeout))
      .exclusiveJoin(kj::mv(stopping))
      .then([this, context, peerName, start, study = r.study, coordinator = r.coordinatorKey,
             queryHash, knownDictionaryHash, auditFields = std::move(auditFields),
             secureRound = r.aggregation !=
                           wire::Aggregation::PLAIN](ScanOutcome o) mutable -> kj::Promise<void> {
        if (!o.status.isOk()) {
          RefusalReason reason = RefusalReason::kError;
          if (o.status.code() == StatusCode::kInvalidArgument ||
              o.status.code() == StatusCode::kNotFound) {
            reason = RefusalReason::kInvalid;
          } else if (o.status.code() == StatusCode::kResourceExhausted ||
                     o.status.code() == StatusCode::kUnavailable) {
            reason = RefusalReason::kLimit;
          }
          refuse(reason, o.status, peerName);
        }
        // #5 applies the approval's minimum cell size; until then nothing is suppressed.
        ethics::ResultReleasedEvent released;
        released.coordinator = coordinator;
        released.study = study;
        released.queryHash = queryHash;
        released.cells = o.partial.shape.cells;
        released.suppressedCells = 0;
        released.audit = std::move(auditFields);
        // A secure round's masked share is no result: the coordinator gets one only if every
        // participant's share arrives, which this site cannot see (docs/ethics.md).
        const ethics::Entry entry = appendOrRefuse(
            secureRound ? ethics::EntryKind::kShareReleased : ethics::EntryKind::kResultReleased,
            std::move(released), peerName, ethics::Durability::kDeferred);
        // Nothing leaves before the log holds it durably (this entry and the query's deferred
        // decision). The fsync is waited for on the scan pool, not here, so a slow disk does
        // not stall this loop's other RPCs, and queries finishing together share one fsync.
        auto synced = kj::newPromiseAndCrossThreadFulfiller<void>();
        boost::asio::post(pool_, [fulfiller = kj::mv(synced.fulfiller), audit = audit_.get(),
                                  size = entry.sequence + 1]() mutable {
          const Status durable = audit->syncThrough(size);
          if (durable.isOk()) {
            fulfiller->fulfill();
          } else {
            fulfiller->reject(protocol::statusToException(durable));
          }
        });
        return synced.promise.then(
            [this, context, peerName, start, study, knownDictionaryHash, o = kj::mv(o)]() mutable {
              answer(context, o, knownDictionaryHash, peerName, study, start);
            },
            [this, peerName](kj::Exception&& e) {
              refuse(RefusalReason::kError,
                     Status::unavailable("the audit log write failed (" +
                                         protocol::exceptionToStatus(e).message() +
                                         "); this site answers nothing it cannot log"),
                     peerName);
            });
      })
      .attach(kj::defer([this, cancelled]() {
        // However the call ends (answered, refused, or dropped with its connection), a scan
        // still running for it has nobody left to answer.
        cancelled->store(true);
        --inFlight_;
        metrics_.queriesInFlight.set(inFlight_);
      }));
}

void SiteState::answer(RunQueryContext& context, const ScanOutcome& o,
                       const std::string& knownDictionaryHash, const std::string& peerName,
                       const std::string& study, std::chrono::steady_clock::time_point start) {
  auto response = context.getResults().initResponse();
  response.setSite(config_.name);
  if (!o.sealed.empty()) {
    // Secure modes: only the shape of the partial leaves; its numbers travel masked.
    auto shape = response.initPartial();
    shape.setDictionaryHash(o.partial.shape.dictionaryHash);
    shape.setQueryText(o.partial.shape.queryText);
    shape.setCells(o.partial.shape.cells);
    shape.setStatistics(o.partial.shape.statistics);
    response.setMaskedVector(kj::ArrayPtr<const capnp::byte>(o.sealed.data(), o.sealed.size()));
  } else {
    protocol::partialToWire(o.partial, response.initPartial());
  }
  // The coordinator already holds this dictionary: do not ship it again.
  if (knownDictionaryHash != o.partial.shape.dictionaryHash) {
    response.setDictionary(o.dataset->dictionaryToml);
  }
  response.setDatasetVersion(o.dataset->version);
  response.setElapsedUs(o.elapsedUs);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  metrics_.queriesServed.inc();
  metrics_.rowsScanned.inc(o.partial.rowsScanned);
  metrics_.queryLatencySeconds.observeDuration(elapsed);
  logEvent(level_enum::info, "query_served",
           {{"peer", peerName},
            {"study", study},
            {"rows_scanned", o.partial.rowsScanned},
            {"elapsed_ms", std::chrono::duration<double, std::milli>(elapsed).count()}});
}

void SiteState::logConnectionRefused(const std::string& address, const std::string& reason,
                                     ops::RefusalClass reasonClass, const std::string& peer) {
  metrics_.peerFailures(PeerFailureKind::kHandshake).inc();
  auditRefusal(reasonClass, peer, address, reason);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  uint64_t suppressed = 0;
  if (!refusalLog_.shouldLog(now, suppressed)) return;  // a flood: counted, not logged
  logEvent(level_enum::warn, "connection_refused",
           {{"remote", address}, {"reason", reason}, {"suppressed_before", suppressed}});
}

void SiteState::messageOversized(const std::string& peer, const std::string& address,
                                 uint64_t bytes, uint64_t limit, uint64_t segments) {
  const std::string text =
      bytes > 0 ? "message of " + std::to_string(bytes) + " bytes, more than the " +
                      std::to_string(limit) + " this site reads (limits.max_message_bytes)"
                : "message of " + std::to_string(segments) + " segments (at most 511)";
  auditRefusal(ops::RefusalClass::kOversized, peer, address, text);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  uint64_t suppressed = 0;
  if (!oversizedLog_.shouldLog(now, suppressed)) return;
  logEvent(level_enum::warn, "message_oversized",
           {{"peer", peer},
            {"remote", address},
            {"size", bytes},
            {"limit", limit},
            {"segments", segments},
            {"suppressed_before", suppressed}});
}

void SiteState::accept(kj::Own<kj::AsyncIoStream> transport) {
  const std::string address = peerAddressOf(*transport);
  if (shuttingDown_) return;
  // Before authentication a connection only uses the handshake budget: it can never take an
  // authenticated member's place (issue #12 item 2).
  HandshakeBudget::Admission admission = handshakes_.admit(hostOfAddress(address));
  if (!admission.admitted) {
    logConnectionRefused(address, admission.refusal, ops::RefusalClass::kLimit);
    return;  // dropping the stream closes it
  }
  if (admission.evict) {
    auto it = evictors_.find(*admission.evict);
    if (it != evictors_.end()) {
      it->second->fulfill();
      evictors_.erase(it);
    }
  }
  const uint64_t id = admission.id;
  auto evicted = kj::newPromiseAndFulfiller<void>();
  evictors_.emplace(id, kj::mv(evicted.fulfiller));
  auto peerName = std::make_shared<std::string>(address);
  auto onFailure = [this, peerName, address](const Status& s) {
    // The channel refuses a frame announced larger than it allows (ResourceExhausted).
    if (s.code() == StatusCode::kResourceExhausted) {
      auditRefusal(ops::RefusalClass::kOversized, *peerName == address ? "" : *peerName, address,
                   s.toString());
    }
    const bool truncated = s.message().find("truncated") != std::string::npos;
    metrics_.peerFailures(truncated ? PeerFailureKind::kDisconnect : PeerFailureKind::kFrame).inc();
    logEvent(level_enum::warn, "channel_failed",
             {{"peer", *peerName}, {"remote", address}, {"reason", s.toString()}});
  };
  const uint32_t handshakeMs = config_.limits.handshakeTimeoutMs;
  const uint32_t maxPending = config_.limits.maxUnauthenticatedConnections;
  auto handshake =
      protocol::secureAccept(kj::mv(transport), identity_, members_->keys(), onFailure)
          .exclusiveJoin(timer_.afterDelay(handshakeMs * kj::MILLISECONDS)
                             .then([handshakeMs]() -> protocol::SecureConnection {
                               throw protocol::statusToException(Status::unavailable(
                                   "handshake not completed within " + std::to_string(handshakeMs) +
                                   " ms (limits.handshake_timeout_ms)"));
                             }))
          .exclusiveJoin(evicted.promise.then([maxPending]() -> protocol::SecureConnection {
            throw protocol::statusToException(Status::unavailable(
                "handshake evicted: " + std::to_string(maxPending) +
                " unauthenticated connections were pending and this was the oldest "
                "(limits.max_unauthenticated_connections)"));
          }))
          // Ends the handshake's claim on the budget however it ends.
          .attach(kj::defer([this, id]() {
            handshakes_.release(id);
            evictors_.erase(id);
          }));
  tasks_->add(
      handshake
          .then(
              [this, address, peerName](protocol::SecureConnection sc) -> kj::Promise<void> {
                // The handshake accepts every key the members file lists, so that a retired
                // or revoked previous key is refused here with the member and the reason.
                auto accepted = members_->checkKey(sc.peer, nowUnixMs(), "connection refused");
                if (!accepted) {
                  logConnectionRefused(address, accepted.status().message(),
                                       ops::RefusalClass::kMembership, sc.peer.toText());
                  return kj::READY_NOW;  // dropping the stream closes it
                }
                const Member* m = *accepted;
                *peerName = m->name;
                if (connections_ >= config_.limits.maxConnections) {
                  logConnectionRefused(address,
                                       "too many open connections of members "
                                       "(limits.max_connections = " +
                                           std::to_string(config_.limits.maxConnections) + ")",
                                       ops::RefusalClass::kLimit, *peerName);
                  return kj::READY_NOW;  // dropping the stream closes it
                }
                ++connections_;
                metrics_.openConnections.set(connections_);
                logEvent(level_enum::info, "connection_accepted",
                         {{"peer", *peerName},
                          {"remote", address},
                          {"role", m != nullptr ? roleName(m->role) : "?"}});
                auto conn = kj::heap<Connection>(
                    kj::mv(sc.stream), kj::heap<SiteImpl>(*this, sc.peer, *peerName, address),
                    config_.limits.maxMessageBytes,
                    [this, peer = *peerName, address](uint64_t bytes, uint64_t limit,
                                                      uint64_t segments) {
                      messageOversized(peer, address, bytes, limit, segments);
                    });
                auto done = conn->network.onDisconnect();
                return done.attach(kj::mv(conn), kj::defer([this]() {
                                     --connections_;
                                     metrics_.openConnections.set(connections_);
                                   }));
              },
              [this, address](kj::Exception&& e) -> kj::Promise<void> {
                logConnectionRefused(address, protocol::exceptionToStatus(e).toString(),
                                     ops::RefusalClass::kHandshake);
                return kj::READY_NOW;
              })
          .then([peerName, address]() {
            logEvent(level_enum::info, "connection_closed",
                     {{"peer", *peerName}, {"remote", address}});
          }));
}

// SIGHUP / `systemctl reload`: re-reads the members file. The new table is checked whole
// (parse, this site still listed with role site and the key it runs with) before it replaces
// the old one, so a bad file changes nothing; the reason is logged. The federation name cannot
// change under a running node (its audit log and approvals are bound to it).
Status reloadMembers(SiteState& state) {
  const NodeConfig& config = state.config();
  auto next = loadNodeMembers(config);
  if (!next) return next.status();
  const Member* self = next->findByName(config.name);
  if (self == nullptr || self->role != Role::kSite) {
    return Status::invalidArgument(config.membersPath + ": '" + config.name +
                                   "' is no longer a member with role site");
  }
  Status ownKey = checkOwnKey(*self, state.identity().pub, config.identityPath, nowUnixMs());
  if (!ownKey.isOk()) {
    return ownKey.withContext(
        config.membersPath +
        " (switch keys with trialmesh rotate-key and a restart, docs/keys.md)");
  }
  if (next->federation != state.members().federation) {
    return Status::invalidArgument(config.membersPath + ": federation '" + next->federation +
                                   "' differs from the running node's '" +
                                   state.members().federation + "' (needs a restart)");
  }
  const size_t count = next->members.size();
  state.replaceMembers(std::move(*next));
  logEvent(level_enum::info, "reload_done",
           {{"members", config.membersPath}, {"member_count", static_cast<uint64_t>(count)}});
  return Status::ok();
}

void notifySystemd(const std::string& message) {
  Status s = ops::sdNotify(message);
  if (!s.isOk()) logEvent(level_enum::warn, "sd_notify_failed", {{"reason", s.toString()}});
}

// Pinged from the event loop itself: if the loop stalls, the pings stop and systemd restarts
// the node after WatchdogSec.
kj::Promise<void> watchdogLoop(kj::Timer& timer, std::chrono::milliseconds every) {
  return timer.afterDelay(static_cast<int64_t>(every.count()) * kj::MILLISECONDS)
      .then([&timer, every]() {
        notifySystemd("WATCHDOG=1");
        return watchdogLoop(timer, every);
      });
}

int startupFailure(const Status& s) {
  spdlog::critical("node not started: {}", s.toString());
  ops::flush();
  std::fprintf(stderr, "trialmesh-node: %s\n", s.toString().c_str());
  return 1;
}

}  // namespace

int runSiteNode(const NodeConfig& config) {
  // Before any thread exists (RocksDB, the pools, the ops server): blocked in every thread
  // started later, delivered to the event loop only.
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  kj::UnixEventPort::captureSignal(SIGHUP);  // reload
  signal(SIGPIPE, SIG_IGN);

  ops::LoggingOptions logOptions;
  logOptions.format = config.logFormat == "json" ? ops::LogFormat::kJson : ops::LogFormat::kPlain;
  if (!config.logFile.empty()) logOptions.file = config.logFile;
  auto level = ops::parseLogLevel(config.logLevel);
  if (!level) return startupFailure(level.status().withContext(config.path + ": log_level"));
  logOptions.level = *level;
  Status logging = ops::setupLogging(logOptions);
  if (!logging.isOk()) return startupFailure(logging);

  auto members = loadNodeMembers(config);
  if (!members) return startupFailure(members.status());
  const Member* self = members->findByName(config.name);
  if (self == nullptr || self->role != Role::kSite) {
    return startupFailure(Status::invalidArgument(config.path + ": name '" + config.name +
                                                  "' is not a member with role site in " +
                                                  config.membersPath));
  }
  auto identity = crypto::loadIdentity(config.identityPath,
                                       [&config]() { return readIdentityPassphrase(config); });
  if (!identity) return startupFailure(identity.status().withContext(config.identityPath));
  Status ownKey = checkOwnKey(*self, identity->pub, config.identityPath, nowUnixMs());
  if (!ownKey.isOk()) return startupFailure(ownKey);
  Status isPrivate = checkDataDirPrivate(config.dataDir, config.path);
  if (!isPrivate.isOk()) return startupFailure(isPrivate);
  storage::StoreOptions storeOptions;
  storeOptions.createIfMissing = false;
  auto store = storage::Store::open(config.dataDir, storeOptions);
  if (!store) return startupFailure(store.status().withContext(config.path + ": data_dir"));
  std::map<std::string, ethics::Hash> dictionaryHashes;
  for (const auto& b : config.datasets) {
    auto info = (*store)->datasetInfo(b.dataset);
    if (!info) {
      return startupFailure(info.status().withContext(config.path + ": dataset '" + b.dataset +
                                                      "' for study '" + b.study + "'"));
    }
    auto source = (*store)->openDataset(b.dataset);
    if (!source) {
      return startupFailure(source.status().withContext(config.path + ": dataset '" + b.dataset +
                                                        "' for study '" + b.study + "'"));
    }
    dictionaryHashes[b.study] = (*source)->dictionary().hash();
  }

  auto io = kj::setupAsyncIo();
  ops::Registry registry;
  ops::NodeMetrics metrics(registry);
  SiteState state(config, std::move(*members), std::move(*identity), std::move(*store),
                  io.provider->getTimer(), metrics);
  Status ethicsOpened = state.openEthics(dictionaryHashes);
  if (!ethicsOpened.isOk()) return startupFailure(ethicsOpened);

  kj::Own<kj::ConnectionReceiver> listener;
  try {
    auto address = io.provider->getNetwork().parseAddress(config.listen).wait(io.waitScope);
    listener = address->listen();
  } catch (const kj::Exception& e) {
    std::string why = e.getDescription().cStr();
    if (why.find("Address already in use") != std::string::npos) {
      why =
          "address already in use (another process holds this port: stop it, or change "
          "`listen` here and this site's address in the members file)";
    }
    return startupFailure(Status::ioError(config.path + ": listen " + config.listen + ": " + why));
  }

  ops::OpsServer opsServer;
  if (!config.opsListen.empty()) {
    auto port = opsServer.start(config.opsListen, registry, [&config]() {
      ops::HealthReport r;
      r.details = {{"name", config.name}};
      return r;
    });
    if (!port) return startupFailure(port.status());
  }

  // Peer fork detection ([ethics] peer_check_interval_ms; node/peer_audit.h).
  PeerAuditOptions peerAudit;
  peerAudit.interval = std::chrono::milliseconds(config.ethics.peerCheckIntervalMs);
  peerAudit.stateDir = config.dataDir + "/ethics-peer-heads";
  peerAudit.expectedHeads = config.ethics.peerHeads;
  PeerAuditor peerAuditor(
      state.identity(), [&state]() { return state.membersSnapshot(); }, config.name, state.audit(),
      registry, peerAudit);
  Status peerAuditStarted = peerAuditor.start();
  if (!peerAuditStarted.isOk()) return startupFailure(peerAuditStarted);

  // The local admin channel (live import, datasets, backup): the node stays the one writer.
  AdminServer adminServer;
  const std::string adminPointer = config.dataDir + "/" + kAdminSocketPointerFile;
  if (!config.adminSocketOffReason.empty())
    logEvent(level_enum::warn, "admin_socket_off", {{"reason", config.adminSocketOffReason}});
  if (!config.adminSocket.empty()) {
    AdminContext admin;
    admin.nodeName = config.name;
    admin.store = state.store();
    admin.audit = &state.audit();
    admin.approvals = &state.approvalStore();
    admin.ledger = [&state]() { return state.ledgerForBackup(); };
    admin.peerHeadsDir = peerAudit.stateDir;
    for (const auto& b : config.datasets) {
      admin.boundDictionaries[b.dataset] = crypto::toHex(dictionaryHashes[b.study]);
    }
    Status adminStarted = adminServer.start(config.adminSocket, makeAdminHandler(std::move(admin)));
    if (!adminStarted.isOk()) {
      return startupFailure(adminStarted.withContext(config.path + ": admin_socket"));
    }
    // Lets `trialmesh import --store <data_dir>` find this node (docs/deployment.md).
    std::ofstream pointer(adminPointer, std::ios::trunc);
    std::error_code ec;
    pointer << std::filesystem::absolute(config.adminSocket, ec).string() << "\n";
  }

  metrics.up.set(1);
  logEvent(level_enum::info, "node_ready",
           {{"name", config.name},
            {"listen", config.listen},
            {"port", static_cast<uint64_t>(listener->getPort())},
            {"ops_listen", config.opsListen},
            {"federation", state.members().federation}});
  ops::flush();

  kj::Maybe<kj::Promise<void>> acceptTask = state.acceptLoop(*listener).eagerlyEvaluate(
      [](kj::Exception&& e) { spdlog::error("accept loop ended: {}", e.getDescription().cStr()); });
  notifySystemd("READY=1\nSTATUS=serving " + config.listen +
                "\nMAINPID=" + std::to_string(::getpid()));
  kj::Maybe<kj::Promise<void>> watchdogTask;
  if (auto every = ops::sdWatchdogInterval()) {
    notifySystemd("WATCHDOG=1");
    watchdogTask =
        watchdogLoop(io.provider->getTimer(), *every).eagerlyEvaluate([](kj::Exception&& e) {
          spdlog::error("watchdog loop ended: {}", e.getDescription().cStr());
        });
  }
  auto& port = io.unixEventPort;
  siginfo_t signalled;
  for (;;) {
    signalled = port.onSignal(SIGTERM)
                    .exclusiveJoin(port.onSignal(SIGINT))
                    .exclusiveJoin(port.onSignal(SIGHUP))
                    .wait(io.waitScope);
    if (signalled.si_signo != SIGHUP) break;
    notifySystemd(ops::sdReloadingMessage());
    Status reloaded = reloadMembers(state);
    if (!reloaded.isOk()) {
      logEvent(level_enum::err, "reload_refused",
               {{"reason", reloaded.toString()}, {"kept", "previous members"}});
      notifySystemd("READY=1\nSTATUS=reload refused, serving with the previous members: " +
                    reloaded.toString());
    } else {
      notifySystemd("READY=1\nSTATUS=serving " + config.listen + " (reloaded)");
    }
    ops::flush();
  }
  notifySystemd("STOPPING=1");
  watchdogTask = nullptr;
  logEvent(level_enum::info, "shutdown_started",
           {{"signal", signalled.si_signo == SIGTERM ? "SIGTERM" : "SIGINT"},
            {"queries_in_flight", static_cast<uint64_t>(state.inFlight())},
            {"connections", static_cast<uint64_t>(state.connections())}});
  metrics.up.set(0);
  acceptTask = nullptr;
  listener = nullptr;
  state.beginShutdown();
  // In-flight queries now fail with "site is shutting down"; give their answers a moment to
  // reach the peers before the connections are torn down.
  for (int i = 0; i < 200 && state.inFlight() > 0; ++i) {
    io.provider->getTimer().afterDelay(5 * kj::MILLISECONDS).wait(io.waitScope);
  }
  io.provider->getTimer().afterDelay(50 * kj::MILLISECONDS).wait(io.waitScope);
  state.finish();
  adminServer.stop();  // a live import still running completes first
  if (!config.adminSocket.empty()) {
    std::error_code ignored;
    std::filesystem::remove(adminPointer, ignored);
  }
  peerAuditor.stop();
  state.closeEthics(signalled.si_signo == SIGTERM ? "SIGTERM" : "SIGINT");
  opsServer.stop();
  logEvent(level_enum::info, "shutdown_complete", {{"name", config.name}});
  ops::flush();
  return 0;
}

}  // namespace trialmesh::node
