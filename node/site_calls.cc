// One-shot calls to a single site (node/coordinator.h): submitting approvals and ethics
// statements, listing a site's approvals, downloading and proving its audit log. Each opens
// its own connection, bounded by a deadline, and closes it cleanly.
// GCC 12 reports a false maybe-uninitialized inside kj::_::ExceptionOr<Status> (the string of
// a Status in an immediate promise) for these calls in a file of their own, under -Werror.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <kj/async-io.h>

#include <cstring>
#include <functional>
#include <memory>

#include "node/client_connection.h"
#include "node/coordinator.h"

namespace trialmesh::node {

using namespace detail;

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

Result<std::string> deliverAlertToSite(const crypto::Identity& identity, const Members& members,
                                       const std::string& siteName, const std::string& alertBytes,
                                       const crypto::Signature& signature,
                                       std::chrono::milliseconds deadline) {
  auto receipt = std::make_shared<std::string>();
  TM_RETURN_IF_ERROR(callSite(identity, members, siteName, deadline,
                              [&alertBytes, &signature, receipt](wire::Site::Client site) {
                                auto req = site.deliverAlertRequest();
                                req.setAlert(bytesOf(alertBytes));
                                req.setSignature(kj::arrayPtr(signature.data(), signature.size()));
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

Result<ethics::StatementKind> statementKindOf(const std::string& name) {
  for (auto k : {ethics::StatementKind::kRecognition, ethics::StatementKind::kSuspension,
                 ethics::StatementKind::kReinstatement, ethics::StatementKind::kRevocation}) {
    if (name == ethics::statementKindName(k)) return k;
  }
  return Status::corruption("unknown statement kind '" + name + "'");
}

Result<crypto::PublicKey> keyOf(capnp::Data::Reader bytes) {
  return crypto::PublicKey::fromBytes({bytes.begin(), bytes.size()});
}

}  // namespace

Result<std::vector<ethics::ApprovalStanding>> listSiteApprovalStandings(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    std::chrono::milliseconds deadline) {
  auto out = std::make_shared<std::vector<ethics::ApprovalStanding>>();
  TM_RETURN_IF_ERROR(
      callSite(identity, members, siteName, deadline, [out](wire::Site::Client site) {
        return site.listApprovalsRequest().send().then([out](auto response) -> Status {
          auto approvals = response.getApprovals();
          auto standings = response.getStandings();
          for (unsigned i = 0; i < approvals.size(); ++i) {
            auto bytes = approvals[i];
            auto sa = ethics::decodeSignedApproval({bytes.begin(), bytes.size()});
            if (!sa) return sa.status().withContext("approval from the site");
            ethics::ApprovalStanding s;
            s.approval = std::move(*sa);
            if (i < standings.size()) {
              auto st = standings[i];
              s.state = st.getState();
              if (st.getRecognisedBy().size() > 0) {
                auto key = keyOf(st.getRecognisedBy());
                if (!key) return key.status().withContext("recognisedBy");
                s.recognisedBy = *key;
              }
              for (auto h : st.getStatements()) {
                ethics::Statement x;
                TM_ASSIGN_OR_RETURN(x.kind, statementKindOf(h.getKind()));
                TM_ASSIGN_OR_RETURN(x.signer, keyOf(h.getSigner()));
                TM_ASSIGN_OR_RETURN(x.effective, ethics::parseDate(h.getEffective().cStr()));
                if (h.getIssuedAtMs() != 0) x.issuedAtMs = h.getIssuedAtMs();
                x.reason = h.getReason();
                x.site = h.getSite();
                x.study = s.approval.approval.study;
                x.protocolVersion = s.approval.approval.protocolVersion;
                x.approvalId = ethics::approvalId(s.approval.approval);
                s.statements.push_back(std::move(x));
              }
            }
            out->push_back(std::move(s));
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

namespace {

Status appendProofHashes(capnp::List<capnp::Data>::Reader proof, std::vector<ethics::Hash>& out) {
  for (auto h : proof) {
    if (h.size() != sizeof(ethics::Hash)) {
      return Status::corruption("consistency proof hash of " + std::to_string(h.size()) +
                                " bytes (expected 32)");
    }
    ethics::Hash hash;
    std::memcpy(hash.data(), h.begin(), hash.size());
    out.push_back(hash);
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<ethics::Hash>> fetchAuditConsistency(const crypto::Identity& identity,
                                                        const Members& members,
                                                        const std::string& siteName,
                                                        uint64_t fromSize, uint64_t toSize,
                                                        std::chrono::milliseconds deadline) {
  auto out = std::make_shared<std::vector<ethics::Hash>>();
  TM_RETURN_IF_ERROR(callSite(
      identity, members, siteName, deadline, [out, fromSize, toSize](wire::Site::Client site) {
        auto req = site.auditConsistencyRequest();
        req.setFromSize(fromSize);
        req.setToSize(toSize);
        return req.send().then(
            [out](auto proof) -> Status { return appendProofHashes(proof.getProof(), *out); });
      }));
  return std::move(*out);
}

Result<AuditHeadAndProof> fetchAuditHead(const crypto::Identity& identity, const Members& members,
                                         const std::string& siteName,
                                         std::optional<uint64_t> fromSize,
                                         std::chrono::milliseconds deadline) {
  auto out = std::make_shared<AuditHeadAndProof>();
  TM_RETURN_IF_ERROR(
      callSite(identity, members, siteName, deadline, [out, fromSize](wire::Site::Client site) {
        return site.auditTreeHeadRequest().send().then(
            [site, out, fromSize](auto response) mutable -> kj::Promise<Status> {
              auto head = response.getHead();
              auto decoded = ethics::decodeTreeHead({head.begin(), head.size()});
              if (!decoded) return decoded.status().withContext("signed tree head");
              out->head = *decoded;
              if (!fromSize || *fromSize > out->head.treeSize) return Status::ok();
              auto req = site.auditConsistencyRequest();
              req.setFromSize(*fromSize);
              req.setToSize(out->head.treeSize);
              return req.send().then([out](auto proof) -> Status {
                return appendProofHashes(proof.getProof(), out->consistency);
              });
            });
      }));
  return std::move(*out);
}

Result<std::vector<ethics::ProvenEntry>> fetchAuditKeyRotations(
    const crypto::Identity& identity, const Members& members, const std::string& siteName,
    uint64_t treeSize, std::chrono::milliseconds deadline) {
  auto out = std::make_shared<std::vector<ethics::ProvenEntry>>();
  TM_RETURN_IF_ERROR(
      callSite(identity, members, siteName, deadline, [out, treeSize](wire::Site::Client site) {
        auto req = site.auditKeyRotationsRequest();
        req.setTreeSize(treeSize);
        return req.send().then([out](auto response) -> Status {
          for (auto e : response.getEntries()) {
            ethics::ProvenEntry p;
            p.index = e.getIndex();
            p.bytes = stringOf(e.getEntry());
            TM_RETURN_IF_ERROR(appendProofHashes(e.getProof(), p.inclusionProof));
            out->push_back(std::move(p));
          }
          return Status::ok();
        });
      }));
  return std::move(*out);
}

}  // namespace trialmesh::node
