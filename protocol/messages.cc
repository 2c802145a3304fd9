#include "protocol/messages.h"

#include <capnp/serialize.h>

#include <cmath>
#include <cstring>
#include <string_view>

#include "crypto/random.h"
#include "ethics/approval.h"
#include "storage/utf8.h"

namespace trialmesh::protocol {
namespace {

// Bounds on what a peer may make us allocate when its partial is copied into vectors: a
// list's length is already bounded by the message size, but `cells * (bins + 1)` is not.
constexpr uint64_t kMaxCells = 1u << 24;
constexpr uint64_t kMaxBinCells = 1u << 26;
// Query text up to 1 MiB: a Cox round (cox_sums) carries the event-time grid of every stratum.
constexpr size_t kMaxTextBytes = 1024 * 1024;

template <typename T, typename L>
std::vector<T> copyList(L list) {
  std::vector<T> out;
  out.reserve(list.size());
  for (auto v : list) out.push_back(v);
  return out;
}

template <typename L, typename V>
void fillList(L builder, const V& values) {
  for (size_t i = 0; i < values.size(); ++i) builder.set(static_cast<unsigned>(i), values[i]);
}

template <typename V>
Status checkLength(const V& v, uint64_t expected, size_t stat, const char* field) {
  if (!v.empty() && v.size() != expected) {
    return Status::invalidArgument("partial result: statistic " + std::to_string(stat) + " field " +
                                   field + " has " + std::to_string(v.size()) +
                                   " entries, expected " + std::to_string(expected) + " (cells)");
  }
  return Status::ok();
}

std::string textOf(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

kj::ArrayPtr<const capnp::byte> bytesOf(const std::vector<uint8_t>& v) {
  return kj::ArrayPtr<const capnp::byte>(v.data(), v.size());
}

std::vector<uint8_t> vecOf(capnp::Data::Reader d) {
  return std::vector<uint8_t>(d.begin(), d.end());
}

}  // namespace

capnp::ReaderOptions peerReaderOptions(uint64_t maxMessageBytes) {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = std::max<uint64_t>(maxMessageBytes, 1024) / sizeof(capnp::word);
  options.nestingLimit = kPeerNestingLimit;
  return options;
}

void partialToWire(const query::PartialResult& p, wire::PartialResult::Builder out) {
  out.setDictionaryHash(p.shape.dictionaryHash);
  out.setQueryText(p.shape.queryText);
  out.setCells(p.shape.cells);
  out.setStatistics(p.shape.statistics);
  fillList(out.initCellRows(static_cast<unsigned>(p.cellRows.size())), p.cellRows);
  out.setRowsScanned(p.rowsScanned);
  auto stats = out.initStats(static_cast<unsigned>(p.stats.size()));
  for (size_t i = 0; i < p.stats.size(); ++i) {
    const query::StatPartial& s = p.stats[i];
    auto w = stats[static_cast<unsigned>(i)];
    fillList(w.initN(static_cast<unsigned>(s.n.size())), s.n);
    fillList(w.initMissing(static_cast<unsigned>(s.missing.size())), s.missing);
    fillList(w.initSum(static_cast<unsigned>(s.sum.size())), s.sum);
    fillList(w.initIntSum(static_cast<unsigned>(s.intSum.size())), s.intSum);
    fillList(w.initMean(static_cast<unsigned>(s.mean.size())), s.mean);
    fillList(w.initM2(static_cast<unsigned>(s.m2.size())), s.m2);
    fillList(w.initMin(static_cast<unsigned>(s.min.size())), s.min);
    fillList(w.initMax(static_cast<unsigned>(s.max.size())), s.max);
    w.setBins(s.bins);
    fillList(w.initBinCounts(static_cast<unsigned>(s.binCounts.size())), s.binCounts);
    auto km = w.initKm(static_cast<unsigned>(s.km.size()));
    for (size_t c = 0; c < s.km.size(); ++c) {
      auto points = km[static_cast<unsigned>(c)].initPoints(static_cast<unsigned>(s.km[c].size()));
      for (size_t k = 0; k < s.km[c].size(); ++k) {
        auto pt = points[static_cast<unsigned>(k)];
        pt.setTime(s.km[c][k].time);
        pt.setEvents(s.km[c][k].events);
        pt.setCensored(s.km[c][k].censored);
      }
    }
    fillList(w.initVec(static_cast<unsigned>(s.vec.size())), s.vec);
  }
}

Result<query::PartialResult> partialFromWire(wire::PartialResult::Reader in) {
  try {
    query::PartialResult p;
    if (in.getDictionaryHash().size() > kMaxTextBytes || in.getQueryText().size() > kMaxTextBytes) {
      return Status::invalidArgument("partial result: dictionary hash or query text too long");
    }
    p.shape.dictionaryHash = textOf(in.getDictionaryHash());
    p.shape.queryText = textOf(in.getQueryText());
    // A NUL inside a text field cannot be a dictionary hash or a query, and would not survive
    // being written back (found by fuzz_partial_wire).
    if (p.shape.dictionaryHash.find('\0') != std::string::npos ||
        p.shape.queryText.find('\0') != std::string::npos) {
      return Status::invalidArgument(
          "partial result: a NUL byte inside the dictionary hash or "
          "query text");
    }
    p.shape.cells = in.getCells();
    p.shape.statistics = in.getStatistics();
    if (p.shape.cells == 0 || p.shape.cells > kMaxCells) {
      return Status::invalidArgument("partial result: cell count " + std::to_string(p.shape.cells) +
                                     " outside 1.." + std::to_string(kMaxCells));
    }
    const uint64_t cells = p.shape.cells;
    p.cellRows = copyList<uint64_t>(in.getCellRows());
    if (p.cellRows.size() != cells) {
      return Status::invalidArgument("partial result: cellRows has " +
                                     std::to_string(p.cellRows.size()) + " entries, expected " +
                                     std::to_string(cells));
    }
    p.rowsScanned = in.getRowsScanned();
    auto stats = in.getStats();
    if (stats.size() != p.shape.statistics) {
      return Status::invalidArgument("partial result: " + std::to_string(stats.size()) +
                                     " statistics, shape says " +
                                     std::to_string(p.shape.statistics));
    }
    p.stats.reserve(stats.size());
    for (unsigned i = 0; i < stats.size(); ++i) {
      auto w = stats[i];
      query::StatPartial s;
      s.n = copyList<uint64_t>(w.getN());
      s.missing = copyList<uint64_t>(w.getMissing());
      s.sum = copyList<double>(w.getSum());
      s.intSum = copyList<int64_t>(w.getIntSum());
      s.mean = copyList<double>(w.getMean());
      s.m2 = copyList<double>(w.getM2());
      s.min = copyList<double>(w.getMin());
      s.max = copyList<double>(w.getMax());
      s.vec = copyList<double>(w.getVec());
      TM_RETURN_IF_ERROR(checkLength(s.n, cells, i, "n"));
      TM_RETURN_IF_ERROR(checkLength(s.missing, cells, i, "missing"));
      TM_RETURN_IF_ERROR(checkLength(s.sum, cells, i, "sum"));
      TM_RETURN_IF_ERROR(checkLength(s.intSum, cells, i, "intSum"));
      TM_RETURN_IF_ERROR(checkLength(s.mean, cells, i, "mean"));
      TM_RETURN_IF_ERROR(checkLength(s.m2, cells, i, "m2"));
      TM_RETURN_IF_ERROR(checkLength(s.min, cells, i, "min"));
      TM_RETURN_IF_ERROR(checkLength(s.max, cells, i, "max"));
      s.bins = w.getBins();
      auto binCounts = w.getBinCounts();
      if (binCounts.size() != 0) {
        const uint64_t expected = cells * (uint64_t{s.bins} + 1);
        if (expected > kMaxBinCells || binCounts.size() != expected) {
          return Status::invalidArgument(
              "partial result: statistic " + std::to_string(i) + " has " +
              std::to_string(binCounts.size()) +
              " bin counts, expected cells * (bins + 1) = " + std::to_string(expected));
        }
        s.binCounts = copyList<uint64_t>(binCounts);
      }
      auto km = w.getKm();
      if (km.size() != 0) {
        if (km.size() != cells) {
          return Status::invalidArgument("partial result: statistic " + std::to_string(i) +
                                         " has km for " + std::to_string(km.size()) +
                                         " cells, expected " + std::to_string(cells));
        }
        s.km.resize(cells);
        for (unsigned c = 0; c < km.size(); ++c) {
          auto points = km[c].getPoints();
          s.km[c].reserve(points.size());
          for (auto pt : points) {
            const double t = pt.getTime();
            if (!std::isfinite(t) || (!s.km[c].empty() && !(s.km[c].back().time < t))) {
              return Status::invalidArgument("partial result: statistic " + std::to_string(i) +
                                             " km times of cell " + std::to_string(c) +
                                             " are not finite and strictly ascending");
            }
            s.km[c].push_back({t, pt.getEvents(), pt.getCensored()});
          }
        }
      }
      p.stats.push_back(std::move(s));
    }
    return p;
  } catch (const kj::Exception& e) {
    // Cap'n Proto validates pointers lazily and throws on a malformed or over-limit message.
    return Status::invalidArgument(std::string("partial result: malformed message: ") +
                                   e.getDescription().cStr());
  }
}

std::vector<uint8_t> newNonce() {
  std::vector<uint8_t> nonce(kMinNonceBytes);
  crypto::randomBytes(nonce);
  return nonce;
}

std::vector<uint8_t> encodeQueryRequest(const QueryRequestFields& f) {
  capnp::MallocMessageBuilder message;
  auto r = message.initRoot<wire::QueryRequest>();
  r.setProtocolVersion(f.protocolVersion);
  r.setFederation(f.federation);
  r.setStudy(f.study);
  r.setQueryText(f.queryText);
  r.setCoordinatorKey(
      kj::ArrayPtr<const capnp::byte>(f.coordinatorKey.bytes().data(), crypto::kPublicKeyBytes));
  r.setNonce(bytesOf(f.nonce));
  r.setIssuedAtMs(f.issuedAtMs);
  r.setExpiresAtMs(f.expiresAtMs);
  if (f.aggregation != wire::Aggregation::PLAIN) r.setAggregation(f.aggregation);
  if (!f.participants.empty()) {
    auto list = r.initParticipants(static_cast<unsigned>(f.participants.size()));
    for (size_t i = 0; i < f.participants.size(); ++i) {
      list.set(static_cast<unsigned>(i),
               kj::ArrayPtr<const capnp::byte>(f.participants[i].bytes().data(),
                                               crypto::kPublicKeyBytes));
    }
  }
  if (!f.audience.empty()) {
    auto list = r.initAudience(static_cast<unsigned>(f.audience.size()));
    for (size_t i = 0; i < f.audience.size(); ++i) {
      list.set(
          static_cast<unsigned>(i),
          kj::ArrayPtr<const capnp::byte>(f.audience[i].bytes().data(), crypto::kPublicKeyBytes));
    }
  }
  kj::Array<capnp::word> words = capnp::canonicalize(r.asReader());
  auto bytes = words.asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

SignedQueryBytes signQuery(const crypto::Identity& signer, const QueryRequestFields& fields) {
  SignedQueryBytes out;
  out.request = encodeQueryRequest(fields);
  std::vector<uint8_t> message(kQuerySignatureContext.begin(), kQuerySignatureContext.end());
  message.insert(message.end(), out.request.begin(), out.request.end());
  crypto::Signature sig = crypto::sign(signer.secret, message);
  out.signature.assign(sig.begin(), sig.end());
  return out;
}

namespace {

// A list of 32-byte keys of a signed query (participants, audience), at most kMaxParticipants.
Result<std::vector<crypto::PublicKey>> keyList(capnp::List<capnp::Data>::Reader list,
                                               const std::string& what, bool ascending) {
  if (list.size() > kMaxParticipants) {
    return Status::invalidArgument("signed query: " + std::to_string(list.size()) + " " + what +
                                   " keys, at most " + std::to_string(kMaxParticipants));
  }
  std::vector<crypto::PublicKey> keys;
  keys.reserve(list.size());
  for (unsigned i = 0; i < list.size(); ++i) {
    auto key =
        crypto::PublicKey::fromBytes(std::span<const uint8_t>(list[i].begin(), list[i].size()));
    if (!key) {
      return Status::invalidArgument("signed query: " + what + " " + std::to_string(i) +
                                     " is not a 32-byte key");
    }
    if (ascending && i > 0 && !(keys.back().bytes() < key->bytes())) {
      return Status::invalidArgument("signed query: " + what + " " + std::to_string(i) +
                                     " is not above the one before (the list must be strictly "
                                     "ascending)");
    }
    keys.push_back(*key);
  }
  return keys;
}

}  // namespace

Result<QueryRequestFields> decodeQueryRequest(std::span<const uint8_t> request) {
  if (request.empty() || request.size() % sizeof(capnp::word) != 0 ||
      request.size() > kDefaultMaxMessageBytes) {
    return Status::invalidArgument("signed query: request is " + std::to_string(request.size()) +
                                   " bytes, not a canonical Cap'n Proto message");
  }
  // Copy into word-aligned memory; the wire buffer need not be aligned.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(request.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), request.data(), request.size());
  try {
    kj::ArrayPtr<const capnp::word> segment = words.asPtr();
    capnp::SegmentArrayMessageReader message(kj::arrayPtr(&segment, 1),
                                             peerReaderOptions(kMaxTextBytes + 64 * 1024));
    if (!message.isCanonical()) {
      return Status::invalidArgument("signed query: request is not in canonical form");
    }
    auto r = message.getRoot<wire::QueryRequest>();
    QueryRequestFields f;
    f.protocolVersion = r.getProtocolVersion();
    if (r.getFederation().size() > kMaxTextBytes || r.getStudy().size() > kMaxTextBytes ||
        r.getQueryText().size() > kMaxTextBytes) {
      return Status::invalidArgument("signed query: a text field exceeds 64 KiB");
    }
    f.federation = textOf(r.getFederation());
    f.study = textOf(r.getStudy());
    f.queryText = textOf(r.getQueryText());
    auto ck = crypto::PublicKey::fromBytes(
        std::span<const uint8_t>(r.getCoordinatorKey().begin(), r.getCoordinatorKey().size()));
    if (!ck) return Status::invalidArgument("signed query: coordinatorKey is not 32 bytes");
    f.coordinatorKey = *ck;
    f.nonce = vecOf(r.getNonce());
    if (f.nonce.size() < kMinNonceBytes || f.nonce.size() > kMaxNonceBytes) {
      return Status::invalidArgument("signed query: nonce has " + std::to_string(f.nonce.size()) +
                                     " bytes, expected " + std::to_string(kMinNonceBytes) + ".." +
                                     std::to_string(kMaxNonceBytes));
    }
    f.issuedAtMs = r.getIssuedAtMs();
    f.expiresAtMs = r.getExpiresAtMs();
    if (f.expiresAtMs <= f.issuedAtMs) {
      return Status::invalidArgument("signed query: expiresAtMs is not after issuedAtMs");
    }
    f.aggregation = r.getAggregation();
    if (f.aggregation != wire::Aggregation::PLAIN && f.aggregation != wire::Aggregation::SECURE &&
        f.aggregation != wire::Aggregation::SECURE_DP) {
      return Status::invalidArgument("signed query: unknown aggregation mode " +
                                     std::to_string(static_cast<int>(f.aggregation)));
    }
    // The order of `participants` is the site's to check (with its own message); the
    // audience must be strictly ascending, so each set of sites has one encoding.
    TM_ASSIGN_OR_RETURN(f.participants, keyList(r.getParticipants(), "participant", false));
    TM_ASSIGN_OR_RETURN(f.audience, keyList(r.getAudience(), "audience entry", true));
    for (const std::string* text : {&f.federation, &f.study, &f.queryText}) {
      if (!storage::detail::isValidUtf8(*text))
        return Status::invalidArgument("signed query: a text field is not valid UTF-8");
    }
    // isCanonical() still admits bytes the fields do not determine (a protocolVersion-era
    // struct with extra data words, a text with an embedded NUL, ...). One request has one
    // encoding: what a site verifies, logs and hashes is exactly what it decoded.
    if (encodeQueryRequest(f) != std::vector<uint8_t>(request.begin(), request.end()))
      return Status::invalidArgument(
          "signed query: request is not the canonical encoding of its fields");
    return f;
  } catch (const kj::Exception& e) {
    return Status::invalidArgument(std::string("signed query: malformed request: ") +
                                   e.getDescription().cStr());
  }
}

Result<QueryRequestFields> verifySignedQuery(const SignedQueryBytes& q) {
  TM_ASSIGN_OR_RETURN(QueryRequestFields f, decodeQueryRequest(q.request));
  if (q.signature.size() != crypto::kSignatureBytes) {
    return Status::invalidArgument("signed query: signature has " +
                                   std::to_string(q.signature.size()) + " bytes, expected 64");
  }
  crypto::Signature sig;
  std::memcpy(sig.data(), q.signature.data(), sig.size());
  std::vector<uint8_t> message(kQuerySignatureContext.begin(), kQuerySignatureContext.end());
  message.insert(message.end(), q.request.begin(), q.request.end());
  if (!crypto::verify(f.coordinatorKey, message, sig)) {
    return Status::permissionDenied("query signature does not verify for coordinator key " +
                                    f.coordinatorKey.toText() + " (forged or modified query)");
  }
  return f;
}

void signedQueryToWire(const SignedQueryBytes& q, wire::SignedQuery::Builder out) {
  out.setRequest(bytesOf(q.request));
  out.setSignature(bytesOf(q.signature));
}

SignedQueryBytes signedQueryFromWire(wire::SignedQuery::Reader in) {
  return {vecOf(in.getRequest()), vecOf(in.getSignature())};
}

kj::Exception statusToException(const Status& status) {
  kj::Exception::Type type = kj::Exception::Type::FAILED;
  if (status.code() == StatusCode::kResourceExhausted ||
      status.code() == StatusCode::kUnavailable) {
    type = kj::Exception::Type::OVERLOADED;
  }
  return kj::Exception(type, __FILE__, __LINE__, kj::str(status.toString().c_str()));
}

Status exceptionToStatus(const kj::Exception& e) {
  std::string_view d(e.getDescription().cStr());
  constexpr std::string_view kRemote = "remote exception: ";
  if (d.substr(0, kRemote.size()) == kRemote) d.remove_prefix(kRemote.size());
  for (int c = 1; c <= static_cast<int>(StatusCode::kInternal); ++c) {
    const std::string name = std::string(statusCodeName(static_cast<StatusCode>(c))) + ": ";
    if (d.substr(0, name.size()) == name) {
      return Status(static_cast<StatusCode>(c), std::string(d.substr(name.size())));
    }
  }
  switch (e.getType()) {
    case kj::Exception::Type::DISCONNECTED:
      return Status::unavailable("connection lost: " + std::string(d));
    case kj::Exception::Type::OVERLOADED:
      return Status::resourceExhausted(std::string(d));
    default:
      return Status::internal(std::string(d));
  }
}

wire::Aggregation aggregationToWire(ethics::AggregationMode mode) {
  switch (mode) {
    case ethics::AggregationMode::kPlain:
      return wire::Aggregation::PLAIN;
    case ethics::AggregationMode::kSecure:
      return wire::Aggregation::SECURE;
    case ethics::AggregationMode::kSecureDp:
      return wire::Aggregation::SECURE_DP;
  }
  return wire::Aggregation::SECURE;
}

ethics::AggregationMode aggregationFromWire(wire::Aggregation mode) {
  switch (mode) {
    case wire::Aggregation::PLAIN:
      return ethics::AggregationMode::kPlain;
    case wire::Aggregation::SECURE:
      return ethics::AggregationMode::kSecure;
    case wire::Aggregation::SECURE_DP:
      return ethics::AggregationMode::kSecureDp;
  }
  return ethics::AggregationMode::kSecure;
}

}  // namespace trialmesh::protocol
