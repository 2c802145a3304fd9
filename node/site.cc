#include "node/site.h"

#include <arpa/inet.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "node/ops/logging.h"
#include "node/ops/metrics.h"
#include "node/ops/ops_server.h"
#include "protocol/freshness.h"
#include "protocol/messages.h"
#include "protocol/secure_stream.h"
#include "query/engine.h"
#include "query/query.h"
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

// What a scan on the worker pool hands back to the event loop.
struct ScanOutcome {
  Status status;
  query::PartialResult partial;
  std::string dictionaryToml;
  uint64_t datasetVersion = 0;
  uint64_t elapsedUs = 0;
};

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
  void sleepFor(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, d, [this] { return stopped; });
  }
};

class SiteState;

// One authenticated connection: the secure stream with RPC on top.
struct Connection {
  Connection(kj::Own<protocol::SecureStream> s, capnp::Capability::Client bootstrap,
             capnp::ReaderOptions options)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER, options),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  kj::Own<protocol::SecureStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

class SiteState final : public kj::TaskSet::ErrorHandler {
 public:
  SiteState(const NodeConfig& config, Members members, crypto::Identity identity,
            std::unique_ptr<storage::Store> store, kj::Timer& timer, ops::NodeMetrics& metrics)
      : config_(config),
        members_(std::move(members)),
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
  const Members& members() const { return members_; }
  const crypto::Identity& identity() const { return identity_; }
  ops::NodeMetrics& metrics() { return metrics_; }
  kj::Timer& timer() { return timer_; }
  uint32_t inFlight() const { return inFlight_; }
  uint32_t connections() const { return connections_; }
  bool shuttingDown() const { return shuttingDown_; }

  std::vector<std::string> studies() const {
    std::vector<std::string> out;
    for (const auto& [study, dataset] : datasets_) out.push_back(study);
    return out;
  }

  // Throws the refusal after logging and counting it.
  [[noreturn]] void refuse(RefusalReason reason, const Status& status, const std::string& peer) {
    metrics_.queriesRefused(reason).inc();
    logEvent(level_enum::warn, "query_refused",
             {{"peer", peer},
              {"reason", ops::refusalReasonLabel(reason)},
              {"detail", status.toString()}});
    throw protocol::statusToException(status);
  }

  kj::Promise<void> runQuery(RunQueryContext context, const crypto::PublicKey& peerKey,
                             const std::string& peerName);

  void accept(kj::Own<kj::AsyncIoStream> transport);
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
  Members members_;
  crypto::Identity identity_;
  std::shared_ptr<storage::Store> store_;
  kj::Timer& timer_;
  ops::NodeMetrics& metrics_;
  protocol::ReplayGuard guard_;
  boost::asio::thread_pool pool_;
  std::map<std::string, std::string> datasets_;  // study -> dataset
  kj::PromiseFulfillerPair<void> shutdownPaf_;
  kj::ForkedPromise<void> shutdown_;
  bool shuttingDown_ = false;
  std::shared_ptr<StopSignal> stop_ = std::make_shared<StopSignal>();
  uint32_t inFlight_ = 0;
  uint32_t connections_ = 0;
  kj::Own<kj::TaskSet> tasks_;
};

// The Site capability for one authenticated peer.
class SiteImpl final : public wire::Site::Server {
 public:
  SiteImpl(SiteState& state, crypto::PublicKey peer, std::string peerName)
      : state_(state), peer_(peer), peerName_(std::move(peerName)) {}

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
    return kj::READY_NOW;
  }

  kj::Promise<void> runQuery(RunQueryContext context) override {
    return state_.runQuery(context, peer_, peerName_);
  }

 private:
  SiteState& state_;
  crypto::PublicKey peer_;
  std::string peerName_;
};

kj::Promise<void> SiteState::runQuery(RunQueryContext context, const crypto::PublicKey& peerKey,
                                      const std::string& peerName) {
  const auto start = std::chrono::steady_clock::now();
  if (shuttingDown_) {
    refuse(RefusalReason::kLimit, Status::unavailable("site is shutting down"), peerName);
  }
  protocol::SignedQueryBytes signedQuery;
  try {
    signedQuery = protocol::signedQueryFromWire(context.getParams().getQuery());
  } catch (const kj::Exception& e) {
    refuse(RefusalReason::kInvalid,
           Status::invalidArgument(std::string("malformed query message: ") +
                                   e.getDescription().cStr()),
           peerName);
  }
  auto verified = protocol::verifySignedQuery(signedQuery);
  if (!verified) {
    refuse(verified.status().code() == StatusCode::kPermissionDenied ? RefusalReason::kSignature
                                                                     : RefusalReason::kInvalid,
           verified.status(), peerName);
  }
  const protocol::QueryRequestFields& r = *verified;
  const Member* signer = members_.findByKey(r.coordinatorKey);
  if (signer == nullptr) {
    refuse(RefusalReason::kMembership,
           Status::permissionDenied("query signer " + r.coordinatorKey.toText() +
                                    " is not a member of federation '" + members_.federation + "'"),
           peerName);
  }
  if (signer->role != Role::kCoordinator) {
    refuse(RefusalReason::kMembership,
           Status::permissionDenied("member '" + signer->name + "' has role " +
                                    roleName(signer->role) + "; only coordinators may query"),
           peerName);
  }
  if (!(r.coordinatorKey == peerKey)) {
    refuse(RefusalReason::kMembership,
           Status::permissionDenied("query signed by '" + signer->name +
                                    "' but sent over a connection authenticated as '" + peerName +
                                    "'; a coordinator must send its own queries"),
           peerName);
  }
  if (r.protocolVersion != protocol::kProtocolVersion) {
    refuse(RefusalReason::kInvalid,
           Status::failedPrecondition("query uses protocol version " +
                                      std::to_string(r.protocolVersion) + "; this site speaks " +
                                      std::to_string(protocol::kProtocolVersion)),
           peerName);
  }
  if (r.federation != members_.federation) {
    refuse(RefusalReason::kMembership,
           Status::permissionDenied("query is for federation '" + r.federation +
                                    "'; this site belongs to '" + members_.federation + "'"),
           peerName);
  }
  if (!(r.siteKey == identity_.pub)) {
    refuse(RefusalReason::kMembership,
           Status::permissionDenied("query is addressed to another site (" + r.siteKey.toText() +
                                    "); this site is '" + config_.name + "'"),
           peerName);
  }
  Status fresh = guard_.admit(r);
  if (!fresh.isOk()) {
    RefusalReason reason = RefusalReason::kFreshness;
    if (fresh.code() == StatusCode::kResourceExhausted) reason = RefusalReason::kLimit;
    if (fresh.message().find("nonce already used") != std::string::npos) {
      reason = RefusalReason::kReplay;
    }
    refuse(reason, fresh, peerName);
  }
  auto ds = datasets_.find(r.study);
  if (ds == datasets_.end()) {
    refuse(RefusalReason::kInvalid,
           Status::notFound("site '" + config_.name + "' has no dataset for study '" + r.study +
                            "' (node config [[dataset]])"),
           peerName);
  }
  auto parsed = query::parseQuery(r.queryText);
  if (!parsed) refuse(RefusalReason::kInvalid, parsed.status(), peerName);
  if (query::canonicalQueryText(*parsed) != r.queryText) {
    refuse(RefusalReason::kInvalid,
           Status::invalidArgument("query text is not in canonical form; coordinators sign "
                                   "query::canonicalQueryText"),
           peerName);
  }
  if (inFlight_ >= config_.limits.maxConcurrentQueries) {
    refuse(RefusalReason::kLimit,
           Status::resourceExhausted("site is already running " + std::to_string(inFlight_) +
                                     " queries (limits.max_concurrent_queries); retry later"),
           peerName);
  }

  ++inFlight_;
  metrics_.queriesInFlight.set(inFlight_);
  logEvent(level_enum::info, "query_started",
           {{"peer", peerName}, {"study", r.study}, {"query", r.queryText}});

  auto paf = kj::newPromiseAndCrossThreadFulfiller<ScanOutcome>();
  boost::asio::post(pool_, [fulfiller = kj::mv(paf.fulfiller), store = store_, dataset = ds->second,
                            q = *parsed, threads = config_.limits.scanThreads, stop = stop_,
                            delayMs = config_.testScanDelayMs]() mutable {
    if (delayMs > 0) stop->sleepFor(std::chrono::milliseconds(delayMs));
    ScanOutcome out;
    const auto t0 = std::chrono::steady_clock::now();
    auto run = [&]() -> Status {
      TM_ASSIGN_OR_RETURN(auto info, store->datasetInfo(dataset));
      TM_ASSIGN_OR_RETURN(auto source, store->openDataset(dataset));
      TM_ASSIGN_OR_RETURN(query::BoundQuery bound, query::bindQuery(q, source->dictionary()));
      query::ExecOptions options;
      options.threads = threads;
      TM_ASSIGN_OR_RETURN(out.partial, query::execute(bound, *source, options));
      out.dictionaryToml = source->dictionary().toToml();
      out.datasetVersion = info.version;
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
    fulfiller->fulfill(kj::mv(out));
  });

  const uint32_t timeoutMs = config_.limits.queryTimeoutMs;
  auto timeout = timer_.afterDelay(timeoutMs * kj::MILLISECONDS).then([timeoutMs]() {
    ScanOutcome o;
    o.status =
        Status::resourceExhausted("query timed out at the site after " + std::to_string(timeoutMs) +
                                  " ms (limits.query_timeout_ms)");
    return o;
  });
  auto cancelled = shutdown_.addBranch().then([]() {
    ScanOutcome o;
    o.status = Status::unavailable("site is shutting down; query cancelled");
    return o;
  });
  return paf.promise.exclusiveJoin(kj::mv(timeout))
      .exclusiveJoin(kj::mv(cancelled))
      .then([this, context, peerName, start, study = r.study](ScanOutcome o) mutable {
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
        auto response = context.getResults().initResponse();
        response.setSite(config_.name);
        protocol::partialToWire(o.partial, response.initPartial());
        response.setDictionary(o.dictionaryToml);
        response.setDatasetVersion(o.datasetVersion);
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
      })
      .attach(kj::defer([this]() {
        --inFlight_;
        metrics_.queriesInFlight.set(inFlight_);
      }));
}

void SiteState::accept(kj::Own<kj::AsyncIoStream> transport) {
  const std::string address = peerAddressOf(*transport);
  if (shuttingDown_) return;
  if (connections_ >= config_.limits.maxConnections) {
    metrics_.peerFailures(PeerFailureKind::kHandshake).inc();
    logEvent(level_enum::warn, "connection_refused",
             {{"remote", address},
              {"reason", "too many open connections (limits.max_connections = " +
                             std::to_string(config_.limits.maxConnections) + ")"}});
    return;  // dropping the stream closes it
  }
  ++connections_;
  metrics_.openConnections.set(connections_);
  auto peerName = std::make_shared<std::string>(address);
  auto onFailure = [this, peerName, address](const Status& s) {
    const bool truncated = s.message().find("truncated") != std::string::npos;
    metrics_.peerFailures(truncated ? PeerFailureKind::kDisconnect : PeerFailureKind::kFrame).inc();
    logEvent(level_enum::warn, "channel_failed",
             {{"peer", *peerName}, {"remote", address}, {"reason", s.toString()}});
  };
  const uint32_t handshakeMs = config_.limits.handshakeTimeoutMs;
  auto handshake =
      protocol::secureAccept(kj::mv(transport), identity_, members_.keys(), onFailure)
          .exclusiveJoin(timer_.afterDelay(handshakeMs * kj::MILLISECONDS)
                             .then([handshakeMs]() -> protocol::SecureConnection {
                               throw protocol::statusToException(Status::unavailable(
                                   "handshake not completed within " + std::to_string(handshakeMs) +
                                   " ms (limits.handshake_timeout_ms)"));
                             }));
  tasks_->add(
      handshake
          .then(
              [this, address, peerName](protocol::SecureConnection sc) -> kj::Promise<void> {
                const Member* m = members_.findByKey(sc.peer);
                *peerName = m != nullptr ? m->name : sc.peer.toText();
                logEvent(level_enum::info, "connection_accepted",
                         {{"peer", *peerName},
                          {"remote", address},
                          {"role", m != nullptr ? roleName(m->role) : "?"}});
                auto conn = kj::heap<Connection>(
                    kj::mv(sc.stream), kj::heap<SiteImpl>(*this, sc.peer, *peerName),
                    protocol::peerReaderOptions(config_.limits.maxMessageBytes));
                auto done = conn->network.onDisconnect();
                return done.attach(kj::mv(conn));
              },
              [this, address](kj::Exception&& e) -> kj::Promise<void> {
                metrics_.peerFailures(PeerFailureKind::kHandshake).inc();
                logEvent(
                    level_enum::warn, "connection_refused",
                    {{"remote", address}, {"reason", protocol::exceptionToStatus(e).toString()}});
                return kj::READY_NOW;
              })
          .then([peerName, address]() {
            logEvent(level_enum::info, "connection_closed",
                     {{"peer", *peerName}, {"remote", address}});
          })
          .attach(kj::defer([this]() {
            --connections_;
            metrics_.openConnections.set(connections_);
          })));
}

Result<std::string> readPassphrase(const NodeConfig& config) {
  if (config.identityPassphraseFile) {
    std::ifstream in(*config.identityPassphraseFile);
    if (!in) {
      return Status::notFound(config.path + ": identity_passphrase_file '" +
                              *config.identityPassphraseFile + "' cannot be read");
    }
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
  }
  if (const char* env = std::getenv("TRIALMESH_PASSPHRASE")) return std::string(env);
  return Status::failedPrecondition(
      "the identity key file is passphrase-protected: set identity_passphrase_file in " +
      config.path + " or the environment variable TRIALMESH_PASSPHRASE");
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
  signal(SIGPIPE, SIG_IGN);

  ops::LoggingOptions logOptions;
  logOptions.format = config.logFormat == "json" ? ops::LogFormat::kJson : ops::LogFormat::kPlain;
  if (!config.logFile.empty()) logOptions.file = config.logFile;
  auto level = ops::parseLogLevel(config.logLevel);
  if (!level) return startupFailure(level.status().withContext(config.path + ": log_level"));
  logOptions.level = *level;
  Status logging = ops::setupLogging(logOptions);
  if (!logging.isOk()) return startupFailure(logging);

  auto members = loadMembers(config.membersPath);
  if (!members) return startupFailure(members.status());
  const Member* self = members->findByName(config.name);
  if (self == nullptr || self->role != Role::kSite) {
    return startupFailure(Status::invalidArgument(config.path + ": name '" + config.name +
                                                  "' is not a member with role site in " +
                                                  config.membersPath));
  }
  auto identity =
      crypto::loadIdentity(config.identityPath, [&config]() { return readPassphrase(config); });
  if (!identity) return startupFailure(identity.status().withContext(config.identityPath));
  if (!(identity->pub == self->publicKey)) {
    return startupFailure(Status::permissionDenied(
        "identity " + config.identityPath + " has public key " + identity->pub.toText() +
        " but the members file lists " + self->publicKey.toText() + " for '" + config.name + "'"));
  }
  storage::StoreOptions storeOptions;
  storeOptions.createIfMissing = false;
  auto store = storage::Store::open(config.dataDir, storeOptions);
  if (!store) return startupFailure(store.status().withContext(config.path + ": data_dir"));
  for (const auto& b : config.datasets) {
    auto info = (*store)->datasetInfo(b.dataset);
    if (!info) {
      return startupFailure(info.status().withContext(config.path + ": dataset '" + b.dataset +
                                                      "' for study '" + b.study + "'"));
    }
  }

  auto io = kj::setupAsyncIo();
  ops::Registry registry;
  ops::NodeMetrics metrics(registry);
  SiteState state(config, std::move(*members), std::move(*identity), std::move(*store),
                  io.provider->getTimer(), metrics);

  kj::Own<kj::ConnectionReceiver> listener;
  try {
    auto address = io.provider->getNetwork().parseAddress(config.listen).wait(io.waitScope);
    listener = address->listen();
  } catch (const kj::Exception& e) {
    return startupFailure(Status::ioError(config.path + ": listen " + config.listen + ": " +
                                          e.getDescription().cStr()));
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
  auto& port = io.unixEventPort;
  auto signalled = port.onSignal(SIGTERM).exclusiveJoin(port.onSignal(SIGINT)).wait(io.waitScope);
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
  opsServer.stop();
  logEvent(level_enum::info, "shutdown_complete", {{"name", config.name}});
  ops::flush();
  return 0;
}

}  // namespace trialmesh::node
