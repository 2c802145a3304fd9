#include "node/coordinator.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <variant>

#include "crypto/seal.h"
#include "node/client_connection.h"
#include "protocol/secure_stream.h"
#include "query/additive.h"
#include "query/engine.h"
#include "query/plan.h"
#include "query/query.h"
#include "storage/dictionary.h"

namespace trialmesh::node {
namespace {

namespace wire = protocol::wire;
using namespace detail;

using Clock = std::chrono::steady_clock;

struct SiteAnswer {
  SiteOutcome outcome;
  std::optional<query::PartialResult> partial;
  std::string dictionary;
  // Secure modes: the sealed masked vector and the shape the site reported with it.
  std::vector<uint8_t> sealed;
  query::PartialShape shape;
};

SiteInfo siteInfoFromWire(wire::NodeInfo::Reader r) {
  SiteInfo info;
  info.name = r.getName();
  info.federation = r.getFederation();
  info.protocolVersion = r.getProtocolVersion();
  info.softwareVersion = r.getSoftwareVersion();
  for (auto s : r.getStudies()) info.studies.emplace_back(s.cStr(), s.size());
  for (auto p : r.getPolicies()) {
    StudyPolicy policy;
    policy.study = p.getStudy();
    policy.approval = p.getApproval();
    policy.aggregation = protocol::aggregationFromWire(p.getAggregation());
    policy.minSites = p.getMinSites();
    policy.minCellSize = p.getMinCellSize();
    if (p.getTimeBin() > 0) policy.timeBin = p.getTimeBin();
    policy.dpEpsilonPerQuery = p.getDpEpsilonPerQuery();
    info.policies.push_back(std::move(policy));
  }
  for (auto d : r.getDatasets()) info.datasetVersions[d.getStudy()] = d.getVersion();
  return info;
}

// finalize() and disclosure control with the approval's minimum cell size. A model round's
// table is the coordinator's input to a fit (node/model_runner.h), not a released cell table,
// so it is only finalized.
Result<query::DisclosedResult> release(const query::PartialResult& merged,
                                       const query::BoundQuery& bound, uint32_t minCellSize) {
  if (bound.plan().model) {
    TM_ASSIGN_OR_RETURN(query::ResultTable table, query::finalize(merged, bound));
    return query::DisclosedResult{std::move(table), {}};
  }
  query::DisclosurePolicy policy;
  policy.minCellSize = minCellSize;
  return query::finalizeWithDisclosureControl(merged, bound, policy);
}

std::string describePolicy(const StudyPolicy& p) {
  std::string out = p.approval + " (" + ethics::aggregationModeName(p.aggregation) +
                    ", min_sites " + std::to_string(p.minSites) + ", min_cell_size " +
                    std::to_string(p.minCellSize);
  if (p.timeBin) out += ", time_bin " + std::to_string(*p.timeBin);
  return out + ")";
}

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

const char* outcomeName(SiteOutcomeKind kind) {
  switch (kind) {
    case SiteOutcomeKind::kAnswered:
      return "answered";
    case SiteOutcomeKind::kRefused:
      return "refused";
    case SiteOutcomeKind::kUnreachable:
      return "unreachable";
    case SiteOutcomeKind::kTimedOut:
      return "timed out";
  }
  return "?";
}

size_t FederatedResult::answered() const {
  size_t n = 0;
  for (const auto& s : sites) n += s.outcome == SiteOutcomeKind::kAnswered ? 1 : 0;
  return n;
}

namespace {

// What the caller thread prepared for one site of one query.
struct SitePlan {
  const Member* site = nullptr;
  protocol::QueryRequestFields fields;     // kept for a retry with a fresh nonce
  protocol::SignedQueryBytes signedQuery;  // what is sent first
  const protocol::Clock* clock = nullptr;
  bool mayRetry = true;  // false when test hooks shaped the request: send exactly that
};

// An open connection of a session. Refcounted: the session's per-site slot holds one
// reference and every call in flight on it another, so a connection the session drops (the
// site went away) lives until the calls using it have ended.
struct SessionConnection : public kj::Refcounted {
  explicit SessionConnection(kj::Own<ClientConnection> c)
      : conn(kj::mv(c)), site(conn->bootstrap()) {}
  kj::Own<ClientConnection> conn;
  wire::Site::Client site;  // declared after conn: destroyed before the RPC system
};

bool isRemote(const kj::Exception& e) {
  return std::string_view(e.getDescription().cStr()).substr(0, 18) == "remote exception: ";
}

SiteAnswer answerFromResponse(const SiteOutcome& base, Clock::time_point start,
                              capnp::Response<wire::Site::RunQueryResults>& response) {
  SiteAnswer a;
  a.outcome = base;
  a.outcome.elapsedMs = msSince(start);
  auto r = response.getResponse();
  if (r.hasMaskedVector()) {
    auto shape = r.getPartial();
    a.shape.dictionaryHash = shape.getDictionaryHash();
    a.shape.queryText = shape.getQueryText();
    a.shape.cells = shape.getCells();
    a.shape.statistics = shape.getStatistics();
    auto sealed = r.getMaskedVector();
    a.sealed.assign(sealed.begin(), sealed.end());
    a.outcome.outcome = SiteOutcomeKind::kAnswered;
    a.dictionary = std::string(r.getDictionary().cStr(), r.getDictionary().size());
    return a;
  }
  auto partial = protocol::partialFromWire(r.getPartial());
  if (!partial) {
    a.outcome.outcome = SiteOutcomeKind::kRefused;
    a.outcome.reason = "site sent an invalid answer: " + partial.status().message();
    return a;
  }
  a.outcome.outcome = SiteOutcomeKind::kAnswered;
  a.outcome.rowsScanned = partial->rowsScanned;
  a.partial = std::move(*partial);
  a.dictionary = std::string(r.getDictionary().cStr(), r.getDictionary().size());
  return a;
}

// The outcome row of `site` before it answers: its name and address.
SiteOutcome baseOutcome(const Member& site) {
  SiteOutcome base;
  base.site = site.name;
  base.address = site.address;
  return base;
}

SiteAnswer closedAnswer(const SiteOutcome& base, Clock::time_point start) {
  SiteAnswer a;
  a.outcome = base;
  a.outcome.outcome = SiteOutcomeKind::kUnreachable;
  a.outcome.elapsedMs = msSince(start);
  a.outcome.reason = "the coordinator session was closed before this site answered";
  return a;
}

}  // namespace

// Everything below that touches KJ objects runs on the session's event-loop thread
// (loopMain and what executeSync hands it); the caller-thread side is query()/connect()/
// siteInfo() up to executeSync, and the merge after it.
class CoordinatorSession::Impl final : public kj::TaskSet::ErrorHandler {
 public:
  Impl(const crypto::Identity& identity, Members members, CoordinatorSessionOptions options)
      : identity_(identity), members_(std::move(members)), options_(options) {
    std::promise<void> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, &ready] { loopMain(ready); });
    started.wait();
  }
  ~Impl() { close(); }

  Result<FederatedResult> query(const std::string& study, const std::string& queryText,
                                const FederatedQueryOptions& options);
  Result<std::vector<SiteOutcome>> connect(const std::string& study,
                                           std::chrono::milliseconds deadline);
  Result<SiteInfo> siteInfo(const std::string& siteName, std::chrono::milliseconds deadline);
  // The key a secure round names `site` by: the one it authenticated with when its info was
  // fetched (a site still on its previous key during a rotation masks with that key), else
  // its current key.
  crypto::PublicKey roundKey(const Member& site) {
    std::lock_guard<std::mutex> lock(infoMu_);
    auto it = infos_.find(site.name);
    if (it != infos_.end() && site.checkKeyAt(it->second.key, nowUnixMs(), "site").isOk()) {
      return it->second.key;
    }
    return site.publicKey;
  }
  size_t openConnections() const { return open_.load(); }
  uint64_t handshakesCompleted() const { return handshakes_.load(); }

  void close() {
    {
      std::lock_guard<std::mutex> lock(closeMu_);
      if (closed_) return;
      closed_ = true;
    }
    try {
      executor_->executeSync([this]() { stopFulfiller_->fulfill(); });
    } catch (const kj::Exception&) {
      // The loop is already gone; nothing to stop.
    }
    thread_.join();
  }

 private:
  // One site's slot. Loop thread only.
  struct Link {
    const Member* member = nullptr;
    kj::Own<SessionConnection> conn;  // null while not connected
    bool connecting = false;
    kj::Maybe<kj::ForkedPromise<void>> attempt;  // the last connection attempt
    std::shared_ptr<Stage> stage;                // how far that attempt got
  };

  void taskFailed(kj::Exception&& e) override {
    // Only connection watchers run as tasks, and they end quietly; nothing to report.
    (void)e;
  }

  void loopMain(std::promise<void>& ready) {
    auto io = kj::setupAsyncIo();
    io_ = &io;
    auto tasks = kj::heap<kj::TaskSet>(*this);
    tasks_ = tasks.get();
    auto stop = kj::newPromiseAndFulfiller<void>();
    stopFulfiller_ = kj::mv(stop.fulfiller);
    auto closing = stop.promise.fork();
    closing_ = &closing;
    for (const Member& m : members_.members) {
      if (m.role == Role::kSite) links_[m.name].member = &m;
    }
    executor_ = kj::getCurrentThreadExecutor().addRef();
    ready.set_value();

    closing.addBranch().wait(io.waitScope);
    // Queries still running resolve as "session closed" (their closing branches fired); let
    // them hand their results back, then say goodbye on every connection, bounded.
    kj::evalLast([]() {}).wait(io.waitScope);
    kj::Vector<kj::Promise<void>> ends;
    for (auto& [name, link] : links_) {
      link.attempt = nullptr;
      if (link.conn) {
        ends.add(kj::evalLater([c = kj::addRef(*link.conn)]() mutable {
                   auto& stream = *c->conn->stream;
                   return stream.end().attach(kj::mv(c));
                 }).catch_([](kj::Exception&&) {}));
      }
    }
    kj::joinPromises(ends.releaseAsArray())
        .exclusiveJoin(io.provider->getTimer().afterDelay(1 * kj::SECONDS))
        .wait(io.waitScope);
    tasks_ = nullptr;
    tasks = nullptr;  // connection watchers go before the connections they watch
    for (auto& [name, link] : links_) link.conn = nullptr;
    links_.clear();
    open_ = 0;
    closing_ = nullptr;
    io_ = nullptr;
  }

  // Starts a connection attempt for `link` (none running, none open).
  void startConnect(Link& link) {
    auto stage = std::make_shared<Stage>(Stage::kConnect);
    link.stage = stage;
    link.connecting = true;
    const auto limit = options_.connectTimeout;
    link.attempt =
        connectSite(*io_, identity_, *link.member, options_.maxMessageBytes, stage)
            .exclusiveJoin(
                io_->provider->getTimer()
                    .afterDelay(limit.count() * kj::MILLISECONDS)
                    .then([limit]() -> kj::Own<ClientConnection> {
                      kj::throwFatalException(kj::Exception(
                          kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                          kj::str("Unavailable: connect + handshake not completed within ",
                                  limit.count(), " ms (the session's connect timeout)")));
                    }))
            .then(
                [this, &link](kj::Own<ClientConnection> c) {
                  link.connecting = false;
                  ++handshakes_;
                  auto conn = kj::refcounted<SessionConnection>(kj::mv(c));
                  SessionConnection* raw = conn.get();
                  link.conn = kj::mv(conn);
                  ++open_;
                  // Drop the connection as soon as the site ends it, so the next query
                  // reconnects instead of failing on it.
                  tasks_->add(raw->conn->network.onDisconnect().then(
                      [this, &link, raw]() { drop(link, raw); }));
                },
                [&link](kj::Exception&& e) {
                  link.connecting = false;
                  kj::throwFatalException(kj::mv(e));
                })
            .fork();
  }

  // Forgets `which` if it is still `link`'s connection. It is destroyed a turn later, once
  // nothing on the current call stack can still be using it.
  void drop(Link& link, SessionConnection* which) {
    if (which != nullptr && link.conn.get() == which) {
      tasks_->add(kj::evalLater([c = kj::mv(link.conn)]() {}));
      link.conn = nullptr;
      --open_;
    }
  }

  // The open connection of `link`, connecting first if needed. `stage` tells a failure's
  // caller how far the connection got.
  kj::Promise<kj::Own<SessionConnection>> connection(Link& link, std::shared_ptr<Stage>& stage) {
    if (link.conn) {
      stage = std::make_shared<Stage>(Stage::kRpc);
      return kj::addRef(*link.conn);
    }
    if (!link.connecting) startConnect(link);
    stage = link.stage;
    return KJ_ASSERT_NONNULL(link.attempt)
        .addBranch()
        .then([&link]() -> kj::Own<SessionConnection> {
          if (!link.conn) {
            kj::throwFatalException(
                KJ_EXCEPTION(DISCONNECTED, "the connection closed right after it was opened"));
          }
          return kj::addRef(*link.conn);
        });
  }

  kj::Promise<SiteAnswer> querySite(Link& link, std::shared_ptr<const SitePlan> plan,
                                    protocol::SignedQueryBytes signedQuery, std::string knownHash,
                                    SiteOutcome base, Clock::time_point start, bool mayRetry,
                                    std::string retryNote) {
    const bool reused = link.conn.get() != nullptr;
    std::shared_ptr<Stage> stage;
    auto used = std::make_shared<SessionConnection*>(nullptr);
    return connection(link, stage)
        .then([signedQuery = std::move(signedQuery), knownHash, base, start,
               used](kj::Own<SessionConnection> c) mutable -> kj::Promise<SiteAnswer> {
          *used = c.get();
          auto request = c->site.runQueryRequest();
          protocol::signedQueryToWire(signedQuery, request.initQuery());
          if (!knownHash.empty()) request.setKnownDictionaryHash(knownHash);
          return request.send()
              .then([base, start](capnp::Response<wire::Site::RunQueryResults> response) {
                return answerFromResponse(base, start, response);
              })
              .attach(kj::mv(c));
        })
        .catch_([this, &link, plan, knownHash, base, stage, start, reused, mayRetry, used,
                 retryNote](kj::Exception&& e) mutable -> kj::Promise<SiteAnswer> {
          if (reused && mayRetry && e.getType() == kj::Exception::Type::DISCONNECTED) {
            // The connection was opened for an earlier query and has died since (the site
            // restarted or dropped it): reconnect and ask again, once, with a new nonce, so
            // the site sees a fresh query rather than a replay.
            drop(link, *used);
            protocol::QueryRequestFields fields = plan->fields;
            const int64_t validity = fields.expiresAtMs - fields.issuedAtMs;
            fields.nonce = protocol::newNonce();
            // This copy is for this site only (any key it may run on during a rotation).
            fields.audience = link.member->keysAcceptedAt(nowUnixMs());
            std::sort(fields.audience.begin(), fields.audience.end());
            fields.issuedAtMs = plan->clock->nowMs();
            fields.expiresAtMs = fields.issuedAtMs + validity;
            auto resigned = protocol::signQuery(identity_, fields);
            const Status lost = protocol::exceptionToStatus(e);
            return querySite(
                link, plan, std::move(resigned), knownHash, base, start, false,
                "the open connection was lost (" + lost.toString() + ") and reconnecting failed: ");
          }
          SiteAnswer a;
          a.outcome = base;
          a.outcome.elapsedMs = msSince(start);
          if (*stage == Stage::kRpc && isRemote(e)) {
            a.outcome.outcome = SiteOutcomeKind::kRefused;
            a.outcome.reason = protocol::exceptionToStatus(e).toString();
          } else {
            a.outcome.outcome = SiteOutcomeKind::kUnreachable;
            a.outcome.reason = retryNote + describeFailure(*stage, *link.member, e);
          }
          return a;
        });
  }

  kj::Promise<SiteAnswer> withDeadline(kj::Promise<SiteAnswer> work, const SiteOutcome& base,
                                       std::chrono::milliseconds deadline,
                                       Clock::time_point start) {
    auto timeout = io_->provider->getTimer()
                       .afterDelay(deadline.count() * kj::MILLISECONDS)
                       .then([base, deadline, start]() {
                         SiteAnswer a;
                         a.outcome = base;
                         a.outcome.outcome = SiteOutcomeKind::kTimedOut;
                         a.outcome.elapsedMs = msSince(start);
                         a.outcome.reason = "no answer within the deadline of " +
                                            std::to_string(deadline.count()) + " ms";
                         return a;
                       });
    auto closed = closing_->addBranch().then([base, start]() { return closedAnswer(base, start); });
    return work.exclusiveJoin(kj::mv(timeout)).exclusiveJoin(kj::mv(closed));
  }

  std::string knownDictionaryHash(const std::string& study) {
    std::lock_guard<std::mutex> lock(dictMu_);
    auto it = knownHash_.find(study);
    return it == knownHash_.end() ? std::string() : it->second;
  }

  // The aggregation policy every reachable site of the study reports (fetched with Site.info
  // once per site and session, refetched after the site failed a query). Sites that cannot be
  // asked go to `early`. nullopt when no site reports one (the sites then refuse by their own
  // ethics rules). FailedPrecondition when the sites disagree.
  Result<std::optional<StudyPolicy>> studyPolicy(const std::string& study,
                                                 const std::vector<const Member*>& sites,
                                                 std::chrono::milliseconds deadline,
                                                 Clock::time_point start,
                                                 std::map<std::string, SiteOutcome>& early);
  // The plans of one fan-out to `sites`: `request` with their keys as its audience, `nonce`
  // and the validity filled in, signed once for all of them on the caller's thread (so
  // concurrent queries sign in parallel). With a test hook in `options` (adjustRequest,
  // adjustSigned) each site gets its own copy, shaped and signed separately, and `mayRetry` is
  // off: the test sends exactly that.
  std::vector<std::shared_ptr<const SitePlan>> signPlans(
      const std::vector<const Member*>& sites, protocol::QueryRequestFields request,
      std::vector<uint8_t> nonce, const protocol::Clock& clock, std::chrono::milliseconds validity,
      const FederatedQueryOptions& options, bool mayRetry);
  // Sends each plan's signed query and waits for every site's answer (or deadline).
  std::vector<SiteAnswer> sendAll(const std::vector<std::shared_ptr<const SitePlan>>& plans,
                                  const std::vector<SiteOutcome>& bases,
                                  const std::string& knownHash, Clock::time_point start,
                                  std::chrono::milliseconds deadline);
  // The verified dictionary of `hash`: cached, or parsed from a site's shipped TOML.
  Result<std::shared_ptr<const storage::Dictionary>> dictionaryFor(const std::string& hash,
                                                                   const std::string& toml,
                                                                   const std::string& siteName);
  Result<FederatedResult> querySecure(const query::Query& parsed, FederatedResult result,
                                      const std::string& study,
                                      const std::vector<const Member*>& sites,
                                      const StudyPolicy& policy,
                                      std::map<std::string, SiteOutcome> early,
                                      const FederatedQueryOptions& options,
                                      Clock::time_point start);
  void forgetInfo(const std::string& site) {
    std::lock_guard<std::mutex> lock(infoMu_);
    infos_.erase(site);
  }

  Link* linkFor(const Member& site) {
    auto it = links_.find(site.name);
    return it == links_.end() ? nullptr : &it->second;
  }

  std::shared_ptr<const storage::Dictionary> cachedDictionary(const std::string& hash) {
    std::lock_guard<std::mutex> lock(dictMu_);
    auto it = dictionaries_.find(hash);
    return it == dictionaries_.end() ? nullptr : it->second;
  }

  const crypto::Identity& identity_;
  const Members members_;
  const CoordinatorSessionOptions options_;
  std::thread thread_;
  kj::Own<const kj::Executor> executor_;  // set before the constructor returns

  // Loop thread only.
  kj::AsyncIoContext* io_ = nullptr;
  kj::TaskSet* tasks_ = nullptr;
  kj::ForkedPromise<void>* closing_ = nullptr;
  kj::Own<kj::PromiseFulfiller<void>> stopFulfiller_;
  std::map<std::string, Link> links_;  // by site name

  std::atomic<size_t> open_{0};
  std::atomic<uint64_t> handshakes_{0};
  std::mutex closeMu_;
  bool closed_ = false;

  // Verified dictionaries by hex hash, and the hash last used per study (what the sites are
  // told the session holds). Any thread, under dictMu_.
  std::mutex dictMu_;
  std::map<std::string, std::shared_ptr<const storage::Dictionary>> dictionaries_;
  std::map<std::string, std::string> knownHash_;

  // Site.info answers by site name (policies), any thread, under infoMu_.
  std::mutex infoMu_;
  std::map<std::string, SiteInfo> infos_;
};

Result<FederatedResult> CoordinatorSession::Impl::query(const std::string& study,
                                                        const std::string& queryText,
                                                        const FederatedQueryOptions& options) {
  TM_ASSIGN_OR_RETURN(query::Query parsed, query::parseQuery(queryText));
  FederatedResult result;
  result.canonicalQuery = query::canonicalQueryText(parsed);
  std::vector<const Member*> sites = members_.sitesOf(study);
  if (sites.empty()) {
    return Status::notFound("the members file of federation '" + members_.federation +
                            "' lists no site for study '" + study + "'");
  }
  if (!options.onlySites.empty()) {
    for (const std::string& name : options.onlySites) {
      if (std::none_of(sites.begin(), sites.end(),
                       [&](const Member* m) { return m->name == name; }))
        return Status::invalidArgument("site '" + name + "' is not a site of study '" + study +
                                       "' in the members file");
    }
    // Members-file order, as every result lists its sites.
    std::erase_if(sites, [&](const Member* m) {
      return std::find(options.onlySites.begin(), options.onlySites.end(), m->name) ==
             options.onlySites.end();
    });
  }
  const auto start = Clock::now();
  // The study's aggregation policy, as its sites' approvals say (issue #5).
  std::map<std::string, SiteOutcome> early;  // sites that cannot take part, by name
  TM_ASSIGN_OR_RETURN(std::optional<StudyPolicy> policy,
                      studyPolicy(study, sites, options.deadline, start, early));
  if (policy) {
    result.aggregation = policy->aggregation;
    result.approval = policy->approval;
    if (policy->aggregation != ethics::AggregationMode::kPlain) {
      return querySecure(parsed, std::move(result), study, sites, *policy, std::move(early),
                         options, start);
    }
  }
  const protocol::Clock& clock =
      options.clock != nullptr ? *options.clock : protocol::SystemClock::instance();
  const auto validity = options.validity.value_or(options.deadline + std::chrono::minutes(1));
  std::string knownHash = knownDictionaryHash(study);

  protocol::QueryRequestFields request;
  request.federation = members_.federation;
  request.study = study;
  request.queryText = result.canonicalQuery;
  request.coordinatorKey = identity_.pub;
  const std::vector<std::shared_ptr<const SitePlan>> plans =
      signPlans(sites, request, protocol::newNonce(), clock, validity, options,
                /*mayRetry=*/true);
  std::vector<SiteOutcome> bases;
  for (const Member* site : sites) bases.push_back(baseOutcome(*site));
  std::vector<SiteAnswer> answers = sendAll(plans, bases, knownHash, start, options.deadline);

  // Merge. The first answering site's dictionary binds the query; every other answer must come
  // from the same dictionary (same hash) and the same query.
  std::shared_ptr<const storage::Dictionary> dictionary;
  std::string dictionaryHash;
  std::string dictionarySite;
  std::optional<query::BoundQuery> bound;
  for (SiteAnswer& a : answers) {
    if (a.outcome.outcome == SiteOutcomeKind::kAnswered) {
      auto refuse = [&a](std::string reason) {
        a.outcome.outcome = SiteOutcomeKind::kRefused;
        a.outcome.reason = std::move(reason);
        a.partial.reset();
      };
      const std::string& hash = a.partial->shape.dictionaryHash;
      if (a.partial->shape.queryText != result.canonicalQuery) {
        refuse("site answered a different query: '" + a.partial->shape.queryText + "'");
      } else if (!dictionary) {
        std::shared_ptr<const storage::Dictionary> dict = cachedDictionary(hash);
        std::string problem;
        if (!dict) {
          if (a.dictionary.empty()) {
            problem = "site sent no dictionary for its hash " + hash.substr(0, 12) +
                      "..., which the coordinator does not hold";
          } else {
            auto parsedDict =
                storage::Dictionary::parseToml(a.dictionary, a.outcome.site + " dictionary");
            if (!parsedDict) {
              problem = "site sent an unreadable dictionary: " + parsedDict.status().message();
            } else if (parsedDict->hashHex() != hash) {
              problem = "site's dictionary does not match the hash of its answer";
            } else {
              dict = std::make_shared<const storage::Dictionary>(std::move(*parsedDict));
              std::lock_guard<std::mutex> lock(dictMu_);
              dictionaries_.emplace(hash, dict);
            }
          }
        }
        if (!problem.empty()) {
          refuse(problem);
        } else {
          auto b = query::bindQuery(parsed, *dict);
          if (!b) {
            refuse(b.status().toString());
          } else {
            dictionary = std::move(dict);
            dictionaryHash = hash;
            dictionarySite = a.outcome.site;
            bound = std::move(*b);
          }
        }
      } else if (hash != dictionaryHash) {
        refuse("site's data dictionary differs from " + dictionarySite + "'s (hash " +
               hash.substr(0, 12) + "... vs " + dictionaryHash.substr(0, 12) +
               "...); align the dictionaries");
      }
    }
    if (a.outcome.outcome == SiteOutcomeKind::kAnswered) {
      if (!result.merged) {
        result.merged = std::move(*a.partial);
      } else {
        Status merged = query::mergeInto(*result.merged, *a.partial);
        if (!merged.isOk()) {
          a.outcome.outcome = SiteOutcomeKind::kRefused;
          a.outcome.reason = "answer does not merge: " + merged.message();
        }
      }
    }
    result.sites.push_back(std::move(a.outcome));
  }
  if (dictionary) {
    std::lock_guard<std::mutex> lock(dictMu_);
    knownHash_[study] = dictionaryHash;
  }
  if (result.merged && bound) {
    TM_ASSIGN_OR_RETURN(query::DisclosedResult released,
                        release(*result.merged, *bound, policy ? policy->minCellSize : 0));
    result.table = std::move(released.table);
    result.disclosure = released.report;
  }
  return result;
}

Result<std::optional<StudyPolicy>> CoordinatorSession::Impl::studyPolicy(
    const std::string& study, const std::vector<const Member*>& sites,
    std::chrono::milliseconds deadline, Clock::time_point start,
    std::map<std::string, SiteOutcome>& early) {
  std::vector<const Member*> missing;
  {
    std::lock_guard<std::mutex> lock(infoMu_);
    for (const Member* site : sites) {
      if (infos_.find(site->name) == infos_.end()) missing.push_back(site);
    }
  }
  if (!missing.empty()) {
    // Open the missing connections concurrently; Site.info then costs a round trip each.
    (void)connect(study, deadline);
    for (const Member* site : missing) {
      auto info = siteInfo(site->name, deadline);
      if (!info) {
        SiteOutcome o;
        o.site = site->name;
        o.address = site->address;
        o.outcome = info.status().code() == StatusCode::kUnavailable ? SiteOutcomeKind::kUnreachable
                                                                     : SiteOutcomeKind::kRefused;
        o.reason = info.status().toString();
        o.elapsedMs = msSince(start);
        early[site->name] = std::move(o);
        continue;
      }
      std::lock_guard<std::mutex> lock(infoMu_);
      infos_[site->name] = std::move(*info);
    }
  }
  std::optional<StudyPolicy> agreed;
  std::string agreedSite;
  std::lock_guard<std::mutex> lock(infoMu_);
  for (const Member* site : sites) {
    auto it = infos_.find(site->name);
    if (it == infos_.end()) continue;
    const StudyPolicy* p = nullptr;
    for (const auto& candidate : it->second.policies) {
      if (candidate.study == study) p = &candidate;
    }
    if (p == nullptr) {
      SiteOutcome o;
      o.site = site->name;
      o.address = site->address;
      o.outcome = SiteOutcomeKind::kRefused;
      o.reason = "site holds no approval for study '" + study + "'";
      o.elapsedMs = msSince(start);
      early[site->name] = std::move(o);
      continue;
    }
    if (!agreed) {
      agreed = *p;
      agreedSite = site->name;
    } else if (!(*agreed == *p)) {
      return Status::failedPrecondition(
          "the sites of study '" + study + "' disagree on its approval: " + agreedSite + " has " +
          describePolicy(*agreed) + ", " + site->name + " has " + describePolicy(*p) +
          "; submit the same approval to every site");
    }
  }
  return agreed;
}

std::vector<std::shared_ptr<const SitePlan>> CoordinatorSession::Impl::signPlans(
    const std::vector<const Member*>& sites, protocol::QueryRequestFields request,
    std::vector<uint8_t> nonce, const protocol::Clock& clock, std::chrono::milliseconds validity,
    const FederatedQueryOptions& options, bool mayRetry) {
  request.audience.clear();
  // Every key a site may run on: during a key rotation (docs/keys.md) a site still on its
  // previous key must find itself in the audience.
  const int64_t now = nowUnixMs();
  for (const Member* site : sites) {
    for (const crypto::PublicKey& key : site->keysAcceptedAt(now)) request.audience.push_back(key);
  }
  std::sort(request.audience.begin(), request.audience.end());
  request.nonce = std::move(nonce);
  request.issuedAtMs = clock.nowMs();
  request.expiresAtMs = request.issuedAtMs + validity.count();
  const bool hooked = options.adjustRequest || options.adjustSigned;
  protocol::SignedQueryBytes shared;
  if (!hooked) shared = protocol::signQuery(identity_, request);
  std::vector<std::shared_ptr<const SitePlan>> plans;
  plans.reserve(sites.size());
  for (const Member* site : sites) {
    auto plan = std::make_shared<SitePlan>();
    plan->site = site;
    plan->clock = &clock;
    plan->fields = request;
    plan->mayRetry = mayRetry && !hooked;
    if (!hooked) {
      plan->signedQuery = shared;
    } else {
      if (options.adjustRequest) options.adjustRequest(*site, plan->fields);
      plan->signedQuery = protocol::signQuery(identity_, plan->fields);
      if (options.adjustSigned) options.adjustSigned(*site, plan->signedQuery);
    }
    plans.push_back(std::move(plan));
  }
  return plans;
}

std::vector<SiteAnswer> CoordinatorSession::Impl::sendAll(
    const std::vector<std::shared_ptr<const SitePlan>>& plans,
    const std::vector<SiteOutcome>& bases, const std::string& knownHash, Clock::time_point start,
    std::chrono::milliseconds deadline) {
  std::vector<SiteAnswer> answers;
  try {
    kj::Array<SiteAnswer> got = executor_->executeSync([&]() {
      kj::Vector<kj::Promise<SiteAnswer>> promises;
      for (size_t i = 0; i < plans.size(); ++i) {
        const auto& plan = plans[i];
        Link* link = linkFor(*plan->site);
        KJ_ASSERT(link != nullptr);
        promises.add(withDeadline(querySite(*link, plan, plan->signedQuery, knownHash, bases[i],
                                            start, plan->mayRetry, ""),
                                  bases[i], deadline, start));
      }
      return kj::joinPromises(promises.releaseAsArray());
    });
    for (auto& a : got) answers.push_back(std::move(a));
  } catch (const kj::Exception&) {
    answers.clear();
    for (const auto& base : bases) answers.push_back(closedAnswer(base, start));
  }
  return answers;
}

Result<std::shared_ptr<const storage::Dictionary>> CoordinatorSession::Impl::dictionaryFor(
    const std::string& hash, const std::string& toml, const std::string& siteName) {
  if (auto dict = cachedDictionary(hash)) return dict;
  if (toml.empty()) {
    return Status::invalidArgument("site sent no dictionary for its hash " + hash.substr(0, 12) +
                                   "..., which the coordinator does not hold");
  }
  auto parsed = storage::Dictionary::parseToml(toml, siteName + " dictionary");
  if (!parsed) {
    return Status::invalidArgument("site sent an unreadable dictionary: " +
                                   parsed.status().message());
  }
  if (parsed->hashHex() != hash) {
    return Status::invalidArgument("site's dictionary does not match the hash of its answer");
  }
  auto dict = std::make_shared<const storage::Dictionary>(std::move(*parsed));
  std::lock_guard<std::mutex> lock(dictMu_);
  dictionaries_.emplace(hash, dict);
  return std::shared_ptr<const storage::Dictionary>(dict);
}

// Secure aggregation (docs/privacy.md): one masking round per attempt. Every participant gets
// the same nonce (the round id) and the same signed, sorted participant list; the coordinator
// opens the sealed vectors only when every participant answered, sums them modulo 2^128 and
// decodes the sum. When some participants fail, the round is re-run from scratch with a fresh
// nonce and the survivors, so no vector of an incomplete round is ever opened.
Result<FederatedResult> CoordinatorSession::Impl::querySecure(
    const query::Query& parsed, FederatedResult result, const std::string& study,
    const std::vector<const Member*>& sites, const StudyPolicy& policy,
    std::map<std::string, SiteOutcome> early, const FederatedQueryOptions& options,
    Clock::time_point start) {
  const protocol::Clock& clock =
      options.clock != nullptr ? *options.clock : protocol::SystemClock::instance();
  const auto validity = options.validity.value_or(options.deadline + std::chrono::minutes(1));
  const std::string knownHash = knownDictionaryHash(study);

  std::map<std::string, SiteOutcome> outcomes = std::move(early);
  std::vector<const Member*> participants;
  for (const Member* site : sites) {
    if (outcomes.find(site->name) == outcomes.end()) participants.push_back(site);
  }
  auto missingText = [&]() {
    std::string text;
    for (const Member* site : sites) {
      auto it = outcomes.find(site->name);
      if (it == outcomes.end() || it->second.outcome == SiteOutcomeKind::kAnswered) continue;
      text += (text.empty() ? "" : "; ") + site->name + " " + outcomeName(it->second.outcome) +
              ": " + it->second.reason;
    }
    return text;
  };
  // No result, but every site's outcome and the reason: what a plain query whose sites all
  // failed returns too.
  auto withoutTable = [&](std::string refusal) -> Result<FederatedResult> {
    result.refusal = std::move(refusal);
    for (const Member* site : sites) {
      auto it = outcomes.find(site->name);
      if (it != outcomes.end()) result.sites.push_back(it->second);
    }
    return std::move(result);
  };
  auto belowQuorum = [&]() {
    return withoutTable("only " + std::to_string(participants.size()) + " of " +
                        std::to_string(sites.size()) + " sites answered; approval " +
                        policy.approval + " requires at least " + std::to_string(policy.minSites) +
                        " (min_sites) for " + ethics::aggregationModeName(policy.aggregation) +
                        " aggregation (" + missingText() + ")");
  };

  for (uint32_t round = 1; round <= options.maxSecureRounds; ++round) {
    if (participants.size() < policy.minSites || participants.size() < 2) return belowQuorum();
    result.rounds = round;
    std::sort(participants.begin(), participants.end(),
              [&](const Member* a, const Member* b) { return roundKey(*a) < roundKey(*b); });
    std::vector<crypto::PublicKey> keys;
    for (const Member* m : participants) keys.push_back(roundKey(*m));
    const std::vector<uint8_t> nonce = protocol::newNonce();

    protocol::QueryRequestFields request;
    request.federation = members_.federation;
    request.study = study;
    request.queryText = result.canonicalQuery;
    request.coordinatorKey = identity_.pub;
    request.aggregation = protocol::aggregationToWire(policy.aggregation);
    request.participants = keys;
    // A retry would need a new round id for every participant, i.e. a new round.
    const std::vector<std::shared_ptr<const SitePlan>> plans =
        signPlans(participants, request, nonce, clock, validity, options, /*mayRetry=*/false);
    std::vector<SiteOutcome> bases;
    for (const Member* site : participants) bases.push_back(baseOutcome(*site));
    std::vector<SiteAnswer> answers = sendAll(plans, bases, knownHash, start, options.deadline);

    // Shapes first: every answer must be a sealed vector of this query over one dictionary.
    std::string dictionaryHash;
    std::string dictionaryToml;
    std::string dictionarySite;
    for (SiteAnswer& a : answers) {
      if (a.outcome.outcome != SiteOutcomeKind::kAnswered) continue;
      auto refuse = [&a](std::string reason) {
        a.outcome.outcome = SiteOutcomeKind::kRefused;
        a.outcome.reason = std::move(reason);
      };
      if (a.sealed.empty()) {
        refuse("site answered with a plain partial to a " +
               std::string(ethics::aggregationModeName(policy.aggregation)) + " query");
      } else if (a.shape.queryText != result.canonicalQuery) {
        refuse("site answered a different query: '" + a.shape.queryText + "'");
      } else if (dictionaryHash.empty()) {
        dictionaryHash = a.shape.dictionaryHash;
        dictionarySite = a.outcome.site;
      } else if (a.shape.dictionaryHash != dictionaryHash) {
        refuse("site's data dictionary differs from " + dictionarySite + "'s (hash " +
               a.shape.dictionaryHash.substr(0, 12) + "... vs " + dictionaryHash.substr(0, 12) +
               "...); align the dictionaries");
      }
      if (a.outcome.outcome == SiteOutcomeKind::kAnswered && dictionaryToml.empty()) {
        dictionaryToml = a.dictionary;
      }
    }
    std::vector<const Member*> survivors;
    bool complete = true;
    for (size_t i = 0; i < answers.size(); ++i) {
      outcomes[participants[i]->name] = answers[i].outcome;
      if (answers[i].outcome.outcome == SiteOutcomeKind::kAnswered) {
        survivors.push_back(participants[i]);
      } else {
        complete = false;
        result.dropped.push_back(participants[i]->name);
        forgetInfo(participants[i]->name);  // its policy may have changed (restart, approval)
      }
    }
    if (!complete) {
      participants = std::move(survivors);
      continue;
    }

    // Every participant answered: open, check and sum.
    TM_ASSIGN_OR_RETURN(std::shared_ptr<const storage::Dictionary> dictionary,
                        dictionaryFor(dictionaryHash, dictionaryToml, dictionarySite));
    TM_ASSIGN_OR_RETURN(query::BoundQuery bound, query::bindQuery(parsed, *dictionary));
    query::AdditiveOptions layoutOptions;
    layoutOptions.kmTimeBin = policy.timeBin;
    layoutOptions.noisyCounts = policy.aggregation == ethics::AggregationMode::kSecureDp;
    TM_ASSIGN_OR_RETURN(query::AdditiveLayout layout,
                        query::AdditiveLayout::create(bound, layoutOptions));
    std::vector<crypto::MaskWord> sum(layout.words(), 0);
    for (size_t i = 0; i < answers.size() && complete; ++i) {
      SiteAnswer& a = answers[i];
      auto opened = crypto::openForRound(identity_, roundKey(*participants[i]),
                                         plans[i]->fields.nonce, a.sealed);
      Result<std::vector<crypto::MaskWord>> words =
          opened ? crypto::maskWordsFromBytes(*opened)
                 : Result<std::vector<crypto::MaskWord>>(opened.status());
      std::string problem;
      if (!words) {
        problem = "site sent an unreadable masked vector: " + words.status().message();
      } else if (words->size() != layout.words()) {
        problem = "site sent a masked vector of " + std::to_string(words->size()) +
                  " words; the query's layout has " + std::to_string(layout.words());
      }
      if (!problem.empty()) {
        SiteOutcome& o = outcomes[participants[i]->name];
        o.outcome = SiteOutcomeKind::kRefused;
        o.reason = problem;
        complete = false;
        break;
      }
      if (options.observeMaskedVector) options.observeMaskedVector(a.outcome.site, *words);
      for (size_t w = 0; w < sum.size(); ++w) sum[w] += (*words)[w];
    }
    if (!complete) {
      // A faulty vector: drop that site and run a new round without it.
      std::vector<const Member*> rest;
      for (const Member* m : participants) {
        if (outcomes[m->name].outcome == SiteOutcomeKind::kAnswered) {
          rest.push_back(m);
        } else {
          result.dropped.push_back(m->name);
        }
      }
      participants = std::move(rest);
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(dictMu_);
      knownHash_[study] = dictionaryHash;
    }
    TM_ASSIGN_OR_RETURN(
        query::PartialResult merged,
        query::decodeAdditive(sum, layout, static_cast<uint32_t>(participants.size())));
    TM_ASSIGN_OR_RETURN(query::DisclosedResult released,
                        release(merged, bound, policy.minCellSize));
    result.table = std::move(released.table);
    result.disclosure = released.report;
    result.merged = std::move(merged);
    for (const Member* site : sites) {
      auto it = outcomes.find(site->name);
      if (it != outcomes.end()) result.sites.push_back(it->second);
    }
    return result;
  }
  if (participants.size() < policy.minSites) return belowQuorum();
  return withoutTable("secure aggregation of study '" + study + "' did not complete in " +
                      std::to_string(options.maxSecureRounds) + " rounds: sites kept failing (" +
                      missingText() + ")");
}

Result<std::vector<SiteOutcome>> CoordinatorSession::Impl::connect(
    const std::string& study, std::chrono::milliseconds deadline) {
  std::vector<const Member*> sites = members_.sitesOf(study);
  if (sites.empty()) {
    return Status::notFound("the members file of federation '" + members_.federation +
                            "' lists no site for study '" + study + "'");
  }
  const auto start = Clock::now();
  std::vector<SiteOutcome> out;
  try {
    kj::Array<SiteAnswer> got = executor_->executeSync([&]() {
      kj::Vector<kj::Promise<SiteAnswer>> promises;
      for (const Member* site : sites) {
        Link* link = linkFor(*site);
        KJ_ASSERT(link != nullptr);
        const SiteOutcome base = baseOutcome(*site);
        std::shared_ptr<Stage> stage;
        auto work = connection(*link, stage)
                        .then([base, start](kj::Own<SessionConnection>) {
                          SiteAnswer a;
                          a.outcome = base;
                          a.outcome.outcome = SiteOutcomeKind::kAnswered;
                          a.outcome.elapsedMs = msSince(start);
                          return a;
                        })
                        .catch_([base, start, stage, site](kj::Exception&& e) {
                          SiteAnswer a;
                          a.outcome = base;
                          a.outcome.elapsedMs = msSince(start);
                          a.outcome.reason = describeFailure(*stage, *site, e);
                          return a;
                        });
        promises.add(withDeadline(kj::mv(work), base, deadline, start));
      }
      return kj::joinPromises(promises.releaseAsArray());
    });
    for (auto& a : got) out.push_back(std::move(a.outcome));
  } catch (const kj::Exception&) {
    for (const Member* site : sites) {
      SiteOutcome o;
      o.site = site->name;
      o.address = site->address;
      o.reason = "the coordinator session was closed";
      out.push_back(std::move(o));
    }
  }
  return out;
}

Result<SiteInfo> CoordinatorSession::Impl::siteInfo(const std::string& siteName,
                                                    std::chrono::milliseconds deadline) {
  const Member* site = members_.findByName(siteName);
  if (site == nullptr || site->role != Role::kSite) {
    return Status::notFound("no site named '" + siteName + "' in the members file");
  }
  using Out = std::variant<SiteInfo, Status>;
  try {
    return std::visit([](auto&& v) -> Result<SiteInfo> { return std::move(v); },
                      executor_->executeSync([&]() -> kj::Promise<Out> {
                        Link* link = linkFor(*site);
                        KJ_ASSERT(link != nullptr);
                        std::shared_ptr<Stage> stage;
                        return connection(*link, stage)
                            .then([](kj::Own<SessionConnection> c) {
                              auto request = c->site.infoRequest();
                              const crypto::PublicKey key = c->conn->peer;
                              return request.send()
                                  .then([key](capnp::Response<wire::Site::InfoResults> response) {
                                    SiteInfo info = siteInfoFromWire(response.getInfo());
                                    info.key = key;
                                    return Out(std::move(info));
                                  })
                                  .attach(kj::mv(c));
                            })
                            .catch_([stage, site](kj::Exception&& e) {
                              if (*stage == Stage::kRpc && isRemote(e))
                                return Out(protocol::exceptionToStatus(e));
                              return Out(Status::unavailable(describeFailure(*stage, *site, e)));
                            })
                            .exclusiveJoin(io_->provider->getTimer()
                                               .afterDelay(deadline.count() * kj::MILLISECONDS)
                                               .then([deadline]() {
                                                 return Out(Status::unavailable(
                                                     "no answer within " +
                                                     std::to_string(deadline.count()) + " ms"));
                                               }))
                            .exclusiveJoin(closing_->addBranch().then([]() {
                              return Out(Status::unavailable("the coordinator session was closed"));
                            }));
                      }));
  } catch (const kj::Exception&) {
    return Status::unavailable("the coordinator session was closed");
  }
}

CoordinatorSession::CoordinatorSession(const crypto::Identity& identity, Members members,
                                       CoordinatorSessionOptions options)
    : impl_(std::make_unique<Impl>(identity, std::move(members), options)) {}

CoordinatorSession::~CoordinatorSession() = default;

Result<FederatedResult> CoordinatorSession::query(const std::string& study,
                                                  const std::string& queryText,
                                                  const FederatedQueryOptions& options) {
  return impl_->query(study, queryText, options);
}

Result<std::vector<SiteOutcome>> CoordinatorSession::connect(const std::string& study,
                                                             std::chrono::milliseconds deadline) {
  return impl_->connect(study, deadline);
}

Result<SiteInfo> CoordinatorSession::siteInfo(const std::string& siteName,
                                              std::chrono::milliseconds deadline) {
  return impl_->siteInfo(siteName, deadline);
}

size_t CoordinatorSession::openConnections() const { return impl_->openConnections(); }
uint64_t CoordinatorSession::handshakesCompleted() const { return impl_->handshakesCompleted(); }
void CoordinatorSession::close() { impl_->close(); }

Result<FederatedResult> runFederatedQuery(const crypto::Identity& identity, const Members& members,
                                          const std::string& study, const std::string& queryText,
                                          const FederatedQueryOptions& options) {
  // Fail fast on what needs no network (and no session thread).
  TM_ASSIGN_OR_RETURN(query::Query parsed, query::parseQuery(queryText));
  (void)parsed;
  if (members.sitesOf(study).empty()) {
    return Status::notFound("the members file of federation '" + members.federation +
                            "' lists no site for study '" + study + "'");
  }
  CoordinatorSessionOptions sessionOptions;
  sessionOptions.maxMessageBytes = options.maxMessageBytes;
  // One query: the attempt may take as long as the query may.
  sessionOptions.connectTimeout = std::max(options.deadline, std::chrono::milliseconds(1));
  CoordinatorSession session(identity, members, sessionOptions);
  auto result = session.query(study, queryText, options);
  session.close();
  return result;
}

Result<SiteInfo> fetchSiteInfo(const crypto::Identity& identity, const Members& members,
                               const std::string& siteName, std::chrono::milliseconds deadline) {
  const Member* site = members.findByName(siteName);
  if (site == nullptr || site->role != Role::kSite) {
    return Status::notFound("no site named '" + siteName + "' in the members file");
  }
  auto io = kj::setupAsyncIo();
  auto stage = std::make_shared<Stage>(Stage::kConnect);
  using Out = std::variant<SiteInfo, Status>;
  auto work =
      connectSite(io, identity, *site, protocol::kDefaultMaxMessageBytes, stage)
          .then([](kj::Own<ClientConnection> conn) -> kj::Promise<Out> {
            ClientConnection& c = *conn;
            return conn->bootstrap()
                .infoRequest()
                .send()
                .then([](capnp::Response<wire::Site::InfoResults> response) {
                  return Out(siteInfoFromWire(response.getInfo()));
                })
                .then([&c](Out out) { return closeAfter(c, std::move(out)); })
                .attach(kj::mv(conn));
          })
          .catch_([stage, site](kj::Exception&& e) {
            return Out(Status::unavailable(describeFailure(*stage, *site, e)));
          })
          .exclusiveJoin(io.provider->getTimer()
                             .afterDelay(deadline.count() * kj::MILLISECONDS)
                             .then([deadline]() {
                               return Out(Status::unavailable(
                                   "no answer within " + std::to_string(deadline.count()) + " ms"));
                             }));
  Out out = work.wait(io.waitScope);
  if (auto* s = std::get_if<Status>(&out)) return *s;
  return std::get<SiteInfo>(std::move(out));
}

}  // namespace trialmesh::node
