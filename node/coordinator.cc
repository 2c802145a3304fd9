#include "node/coordinator.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <cstring>
#include <memory>

#include "protocol/secure_stream.h"
#include "query/engine.h"
#include "query/query.h"
#include "storage/dictionary.h"

namespace trialmesh::node {
namespace {

namespace wire = protocol::wire;

using Clock = std::chrono::steady_clock;

// A client connection to one site: secure stream, RPC on top.
struct ClientConnection {
  ClientConnection(kj::Own<protocol::SecureStream> s, capnp::ReaderOptions options)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::CLIENT, options),
        rpc(capnp::makeRpcClient(network)) {}

  wire::Site::Client bootstrap() {
    capnp::MallocMessageBuilder message(8);
    auto vatId = message.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    return rpc.bootstrap(vatId).castAs<wire::Site>();
  }

  kj::Own<protocol::SecureStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

enum class Stage { kConnect, kHandshake, kRpc };

kj::Promise<kj::Own<ClientConnection>> connectSite(kj::AsyncIoContext& io,
                                                   const crypto::Identity& identity,
                                                   const Member& site, uint64_t maxMessageBytes,
                                                   std::shared_ptr<Stage> stage) {
  *stage = Stage::kConnect;
  return io.provider->getNetwork()
      .parseAddress(site.address)
      .then([](kj::Own<kj::NetworkAddress> address) {
        auto connected = address->connect();
        return connected.attach(kj::mv(address));
      })
      .then([&identity, key = site.publicKey, stage](kj::Own<kj::AsyncIoStream> transport) {
        *stage = Stage::kHandshake;
        return protocol::secureConnect(kj::mv(transport), identity, {key});
      })
      .then([maxMessageBytes, stage](protocol::SecureConnection sc) {
        *stage = Stage::kRpc;
        return kj::heap<ClientConnection>(kj::mv(sc.stream),
                                          protocol::peerReaderOptions(maxMessageBytes));
      });
}

// Ends the conversation cleanly: lets the RPC system send its last messages, then sends the
// channel's close frame so the site does not log a truncated stream.
template <typename T>
kj::Promise<T> closeAfter(ClientConnection& conn, T value) {
  auto holder = kj::heap<T>(kj::mv(value));
  T* p = holder.get();
  return kj::evalLater([&conn]() { return conn.stream->end(); })
      .then([]() {}, [](kj::Exception&&) {})
      .then([p]() { return kj::mv(*p); })
      .attach(kj::mv(holder));
}

std::string describeFailure(Stage stage, const Member& site, const kj::Exception& e) {
  const Status s = protocol::exceptionToStatus(e);
  switch (stage) {
    case Stage::kConnect:
      return "cannot connect to " + site.address + ": " + std::string(e.getDescription().cStr());
    case Stage::kHandshake:
      return "secure channel to " + site.address + " failed: " + s.toString();
    case Stage::kRpc:
      break;
  }
  return "connection lost during the query: " + s.toString();
}

struct SiteAnswer {
  SiteOutcome outcome;
  std::optional<query::PartialResult> partial;
  std::string dictionary;
};

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

Result<FederatedResult> runFederatedQuery(const crypto::Identity& identity, const Members& members,
                                          const std::string& study, const std::string& queryText,
                                          const FederatedQueryOptions& options) {
  TM_ASSIGN_OR_RETURN(query::Query parsed, query::parseQuery(queryText));
  FederatedResult result;
  result.canonicalQuery = query::canonicalQueryText(parsed);
  std::vector<const Member*> sites = members.sitesOf(study);
  if (sites.empty()) {
    return Status::notFound("the members file of federation '" + members.federation +
                            "' lists no site for study '" + study + "'");
  }
  const protocol::Clock& clock =
      options.clock != nullptr ? *options.clock : protocol::SystemClock::instance();
  const auto validity = options.validity.value_or(options.deadline + std::chrono::minutes(1));

  auto io = kj::setupAsyncIo();
  const auto start = Clock::now();
  kj::Vector<kj::Promise<SiteAnswer>> promises;
  for (const Member* site : sites) {
    protocol::QueryRequestFields fields;
    fields.federation = members.federation;
    fields.study = study;
    fields.queryText = result.canonicalQuery;
    fields.coordinatorKey = identity.pub;
    fields.siteKey = site->publicKey;
    fields.nonce = protocol::newNonce();
    fields.issuedAtMs = clock.nowMs();
    fields.expiresAtMs = fields.issuedAtMs + validity.count();
    if (options.adjustRequest) options.adjustRequest(*site, fields);
    protocol::SignedQueryBytes signedQuery = protocol::signQuery(identity, fields);
    if (options.adjustSigned) options.adjustSigned(*site, signedQuery);

    SiteOutcome base;
    base.site = site->name;
    base.address = site->address;
    auto stage = std::make_shared<Stage>(Stage::kConnect);
    auto work =
        connectSite(io, identity, *site, options.maxMessageBytes, stage)
            .then([signedQuery = std::move(signedQuery), base,
                   start](kj::Own<ClientConnection> conn) mutable -> kj::Promise<SiteAnswer> {
              auto request = conn->bootstrap().runQueryRequest();
              protocol::signedQueryToWire(signedQuery, request.initQuery());
              ClientConnection& c = *conn;
              return request.send()
                  .then([base, start](capnp::Response<wire::Site::RunQueryResults> response) {
                    SiteAnswer a;
                    a.outcome = base;
                    a.outcome.elapsedMs = msSince(start);
                    auto r = response.getResponse();
                    auto partial = protocol::partialFromWire(r.getPartial());
                    if (!partial) {
                      a.outcome.outcome = SiteOutcomeKind::kRefused;
                      a.outcome.reason =
                          "site sent an invalid answer: " + partial.status().message();
                      return a;
                    }
                    a.outcome.outcome = SiteOutcomeKind::kAnswered;
                    a.outcome.rowsScanned = partial->rowsScanned;
                    a.partial = std::move(*partial);
                    a.dictionary = std::string(r.getDictionary().cStr(), r.getDictionary().size());
                    return a;
                  })
                  .then([&c](SiteAnswer a) { return closeAfter(c, std::move(a)); })
                  .attach(kj::mv(conn));
            })
            .catch_([base, stage, site, start](kj::Exception&& e) {
              SiteAnswer a;
              a.outcome = base;
              a.outcome.elapsedMs = msSince(start);
              std::string_view d(e.getDescription().cStr());
              if (*stage == Stage::kRpc && d.substr(0, 18) == "remote exception: ") {
                a.outcome.outcome = SiteOutcomeKind::kRefused;
                a.outcome.reason = protocol::exceptionToStatus(e).toString();
              } else {
                a.outcome.outcome = SiteOutcomeKind::kUnreachable;
                a.outcome.reason = describeFailure(*stage, *site, e);
              }
              return a;
            });
    const auto deadline = options.deadline;
    auto timeout = io.provider->getTimer()
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
    promises.add(work.exclusiveJoin(kj::mv(timeout)));
  }
  kj::Array<SiteAnswer> answers = kj::joinPromises(promises.releaseAsArray()).wait(io.waitScope);

  // Merge. The first answering site's dictionary binds the query; every other answer must come
  // from the same dictionary (same hash) and the same query.
  std::optional<storage::Dictionary> dictionary;
  std::string dictionarySite;
  std::optional<query::BoundQuery> bound;
  for (SiteAnswer& a : answers) {
    if (a.outcome.outcome == SiteOutcomeKind::kAnswered) {
      auto refuse = [&a](std::string reason) {
        a.outcome.outcome = SiteOutcomeKind::kRefused;
        a.outcome.reason = std::move(reason);
        a.partial.reset();
      };
      if (a.partial->shape.queryText != result.canonicalQuery) {
        refuse("site answered a different query: '" + a.partial->shape.queryText + "'");
      } else if (!dictionary) {
        auto dict = storage::Dictionary::parseToml(a.dictionary, a.outcome.site + " dictionary");
        if (!dict) {
          refuse("site sent an unreadable dictionary: " + dict.status().message());
        } else if (dict->hashHex() != a.partial->shape.dictionaryHash) {
          refuse("site's dictionary does not match the hash of its answer");
        } else {
          auto b = query::bindQuery(parsed, *dict);
          if (!b) {
            refuse(b.status().toString());
          } else {
            dictionary = std::move(*dict);
            dictionarySite = a.outcome.site;
            bound = std::move(*b);
          }
        }
      } else if (a.partial->shape.dictionaryHash != dictionary->hashHex()) {
        refuse("site's data dictionary differs from " + dictionarySite + "'s (hash " +
               a.partial->shape.dictionaryHash.substr(0, 12) + "... vs " +
               dictionary->hashHex().substr(0, 12) + "...); align the dictionaries");
      }
    }
    if (a.outcome.outcome == SiteOutcomeKind::kAnswered) {
      if (!result.merged) {
        result.merged = *a.partial;
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
  if (result.merged && bound) {
    TM_ASSIGN_OR_RETURN(query::ResultTable table, query::finalize(*result.merged, *bound));
    result.table = std::move(table);
  }
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
                  auto r = response.getInfo();
                  SiteInfo info;
                  info.name = r.getName();
                  info.federation = r.getFederation();
                  info.protocolVersion = r.getProtocolVersion();
                  info.softwareVersion = r.getSoftwareVersion();
                  for (auto s : r.getStudies()) info.studies.emplace_back(s.cStr(), s.size());
                  return Out(std::move(info));
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

namespace {

// Runs `call` against site `siteName` over one connection, bounded by `deadline`.
Status callSite(const crypto::Identity& identity, const Members& members,
                const std::string& siteName, std::chrono::milliseconds deadline,
                std::function<kj::Promise<Status>(wire::Site::Client)> call) {
  const Member* site = members.findByName(siteName);
  if (site == nullptr || site->role != Role::kSite) {
    return Status::notFound("no site named '" + siteName + "' in the members file");
  }
  auto io = kj::setupAsyncIo();
  auto stage = std::make_shared<Stage>(Stage::kConnect);
  auto work =
      connectSite(io, identity, *site, 256ull << 20, stage)
          .then(
              [call = kj::mv(call)](kj::Own<ClientConnection> conn) mutable -> kj::Promise<Status> {
                ClientConnection& c = *conn;
                return call(conn->bootstrap())
                    .then([&c](Status s) { return closeAfter(c, std::move(s)); })
                    .attach(kj::mv(conn));
              })
          .catch_([stage, site](kj::Exception&& e) {
            if (*stage == Stage::kRpc) return protocol::exceptionToStatus(e);
            return Status::unavailable(describeFailure(*stage, *site, e));
          })
          .exclusiveJoin(io.provider->getTimer()
                             .afterDelay(deadline.count() * kj::MILLISECONDS)
                             .then([deadline]() {
                               return Status::unavailable("no answer within " +
                                                          std::to_string(deadline.count()) + " ms");
                             }));
  return work.wait(io.waitScope);
}

kj::ArrayPtr<const kj::byte> bytesOf(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}

std::string stringOf(capnp::Data::Reader d) {
  return std::string(reinterpret_cast<const char*>(d.begin()), d.size());
}

}  // namespace

Result<std::string> submitApprovalToSite(const crypto::Identity& identity, const Members& members,
                                         const std::string& siteName, const std::string& bytes,
                                         std::chrono::milliseconds deadline) {
  auto receipt = std::make_shared<std::string>();
  TM_RETURN_IF_ERROR(
      callSite(identity, members, siteName, deadline, [&bytes, receipt](wire::Site::Client site) {
        auto req = site.submitApprovalRequest();
        req.setApproval(bytesOf(bytes));
        return req.send().then([receipt](auto response) {
          *receipt = response.getReceipt();
          return Status::ok();
        });
      }));
  return *receipt;
}

Result<std::string> submitStatementToSite(const crypto::Identity& identity, const Members& members,
                                          const std::string& siteName, const std::string& bytes,
                                          std::chrono::milliseconds deadline) {
  auto receipt = std::make_shared<std::string>();
  TM_RETURN_IF_ERROR(
      callSite(identity, members, siteName, deadline, [&bytes, receipt](wire::Site::Client site) {
        auto req = site.submitStatementRequest();
        req.setStatement(bytesOf(bytes));
        return req.send().then([receipt](auto response) {
          *receipt = response.getReceipt();
          return Status::ok();
        });
      }));
  return *receipt;
}

Result<std::vector<std::string>> listSiteApprovals(const crypto::Identity& identity,
                                                   const Members& members,
                                                   const std::string& siteName,
                                                   std::chrono::milliseconds deadline) {
  auto out = std::make_shared<std::vector<std::string>>();
  TM_RETURN_IF_ERROR(
      callSite(identity, members, siteName, deadline, [out](wire::Site::Client site) {
        return site.listApprovalsRequest().send().then([out](auto response) {
          for (auto a : response.getApprovals()) {
            out->push_back(stringOf(a));
          }
          return Status::ok();
        });
      }));
  return *out;
}

namespace {

kj::Promise<Status> fetchEntries(wire::Site::Client site, std::shared_ptr<AuditDownload> out,
                                 uint64_t next) {
  if (next >= out->head.treeSize) return Status::ok();
  constexpr uint32_t kPage = 5000;
  auto req = site.auditEntriesRequest();
  req.setBegin(next);
  req.setCount(kPage);
  return req.send().then([site, out, next](auto response) mutable -> kj::Promise<Status> {
    auto entries = response.getEntries();
    if (entries.size() == 0) {
      return Status::corruption("site returned no audit entries at index " + std::to_string(next) +
                                " although its tree head has size " +
                                std::to_string(out->head.treeSize));
    }
    for (auto e : entries) {
      ethics::StoredEntry stored;
      if (e.getRootAfter().size() != stored.rootAfter.size()) {
        return Status::corruption("audit entry " + std::to_string(next) +
                                  ": stored root is not 32 bytes");
      }
      std::memcpy(stored.rootAfter.data(), e.getRootAfter().begin(), stored.rootAfter.size());
      stored.bytes = stringOf(e.getEntry());
      out->entries.push_back(std::move(stored));
    }
    return fetchEntries(site, out, next + entries.size());
  });
}

}  // namespace

Result<AuditDownload> downloadAuditLog(const crypto::Identity& identity, const Members& members,
                                       const std::string& siteName, uint64_t begin,
                                       std::chrono::milliseconds deadline) {
  auto out = std::make_shared<AuditDownload>();
  TM_RETURN_IF_ERROR(
      callSite(identity, members, siteName, deadline, [out, begin](wire::Site::Client site) {
        return site.auditTreeHeadRequest().send().then(
            [site, out, begin](auto response) mutable -> kj::Promise<Status> {
              auto head = response.getHead();
              auto decoded = ethics::decodeTreeHead({head.begin(), head.size()});
              if (!decoded) return decoded.status().withContext("signed tree head");
              out->head = *decoded;
              if (begin > out->head.treeSize) {
                return Status::invalidArgument("--from " + std::to_string(begin) +
                                               " is past the log's size " +
                                               std::to_string(out->head.treeSize));
              }
              return fetchEntries(site, out, begin);
            });
      }));
  return std::move(*out);
}

}  // namespace trialmesh::node
