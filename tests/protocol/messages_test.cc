#include "protocol/messages.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <algorithm>

#include <limits>

namespace trialmesh::protocol {
namespace {

query::PartialResult samplePartial() {
  query::PartialResult p;
  p.shape = {"abc123", "count, mean(bmi), hist(age, 0, 100, 50), km(time, event) by arm", 2, 4};
  p.cellRows = {10, 20};
  p.rowsScanned = 35;
  query::StatPartial count;
  count.n = {10, 20};
  query::StatPartial mean;
  mean.n = {9, 19};
  mean.missing = {1, 1};
  mean.mean = {24.5, 27.25};
  mean.m2 = {12.0, 30.5};
  query::StatPartial hist;
  hist.n = {10, 20};
  hist.missing = {0, 0};
  hist.bins = 2;
  hist.binCounts = {3, 7, 0, 10, 9, 1};
  query::StatPartial km;
  km.n = {10, 20};
  km.missing = {0, 0};
  km.km = {{{1.0, 1, 0}, {5.5, 0, 2}}, {{2.0, 3, 1}}};
  p.stats = {count, mean, hist, km};
  return p;
}

query::PartialResult roundTrip(const query::PartialResult& p, Status* status = nullptr) {
  capnp::MallocMessageBuilder message;
  partialToWire(p, message.initRoot<wire::PartialResult>());
  auto back = partialFromWire(message.getRoot<wire::PartialResult>().asReader());
  if (status != nullptr) *status = back.status();
  return back.isOk() ? *back : query::PartialResult{};
}

TEST(PartialWire, RoundTripIsExact) {
  const query::PartialResult p = samplePartial();
  Status s;
  EXPECT_EQ(roundTrip(p, &s), p);
  EXPECT_TRUE(s.isOk()) << s.toString();
}

TEST(PartialWire, WrongVectorLengthIsInvalidArgument) {
  query::PartialResult p = samplePartial();
  p.stats[1].mean.push_back(1.0);
  Status s;
  roundTrip(p, &s);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("field mean has 3 entries, expected 2"), std::string::npos)
      << s.message();
}

TEST(PartialWire, StatisticCountMismatchIsInvalidArgument) {
  query::PartialResult p = samplePartial();
  p.shape.statistics = 5;
  Status s;
  roundTrip(p, &s);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("4 statistics, shape says 5"), std::string::npos) << s.message();
}

TEST(PartialWire, HugeBinCountClaimIsRefusedWithoutAllocating) {
  query::PartialResult p = samplePartial();
  p.stats[2].bins = std::numeric_limits<uint32_t>::max();
  Status s;
  roundTrip(p, &s);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("bin counts"), std::string::npos) << s.message();
}

TEST(PartialWire, UnorderedKmTimesAreRefused) {
  query::PartialResult p = samplePartial();
  p.stats[3].km[0] = {{5.0, 1, 0}, {1.0, 1, 0}};
  Status s;
  roundTrip(p, &s);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("strictly ascending"), std::string::npos) << s.message();
}

TEST(PartialWire, ZeroCellsIsRefused) {
  query::PartialResult p;
  Status s;
  roundTrip(p, &s);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
}

// Found by fuzz_partial_wire: a text field with a NUL inside decoded, but did not survive being
// written back, so a relayed partial would change.
TEST(PartialWire, NulInsideATextFieldIsRefused) {
  capnp::MallocMessageBuilder message;
  auto w = message.initRoot<wire::PartialResult>();
  partialToWire(samplePartial(), w);
  // Written as 4 bytes with a NUL inside (a std::string would be cut at the NUL by capnp).
  w.setDictionaryHash(capnp::Text::Reader("ab\0c", 4));
  auto back = partialFromWire(message.getRoot<wire::PartialResult>().asReader());
  EXPECT_EQ(back.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(back.status().message().find("NUL byte"), std::string::npos) << back.status().message();
}

QueryRequestFields sampleRequest(const crypto::Identity& coordinator) {
  QueryRequestFields f;
  f.federation = "fed";
  f.study = "LUNG-7";
  f.queryText = "count";
  f.coordinatorKey = coordinator.pub;
  for (int i = 0; i < 3; ++i) f.audience.push_back(crypto::generateIdentity().pub);
  std::sort(f.audience.begin(), f.audience.end());
  f.nonce = newNonce();
  f.issuedAtMs = 1'000'000;
  f.expiresAtMs = 1'060'000;
  return f;
}

TEST(SignedQuery, SignThenVerifyReturnsTheFields) {
  crypto::Identity id = crypto::generateIdentity();
  QueryRequestFields f = sampleRequest(id);
  SignedQueryBytes q = signQuery(id, f);
  EXPECT_EQ(q.request.size() % 8, 0u);
  auto v = verifySignedQuery(q);
  ASSERT_TRUE(v.isOk()) << v.status().toString();
  EXPECT_EQ(*v, f);
}

// Issue #5: the aggregation mode and the participant list are signed and round-trip; a plain
// request without them encodes exactly as before they existed (shorter bytes).
TEST(SignedQuery, SecureRoundFieldsRoundTrip) {
  crypto::Identity id = crypto::generateIdentity();
  QueryRequestFields plain = sampleRequest(id);
  QueryRequestFields secure = plain;
  secure.aggregation = wire::Aggregation::SECURE_DP;
  for (int i = 0; i < 3; ++i) secure.participants.push_back(crypto::generateIdentity().pub);
  std::sort(secure.participants.begin(), secure.participants.end());
  auto v = verifySignedQuery(signQuery(id, secure));
  ASSERT_TRUE(v.isOk()) << v.status().toString();
  EXPECT_EQ(*v, secure);
  EXPECT_EQ(v->participants.size(), 3u);
  EXPECT_GT(encodeQueryRequest(secure).size(), encodeQueryRequest(plain).size());
  auto p = verifySignedQuery(signQuery(id, plain));
  ASSERT_TRUE(p.isOk());
  EXPECT_EQ(p->aggregation, wire::Aggregation::PLAIN);
  EXPECT_TRUE(p->participants.empty());
}

TEST(SignedQuery, ModifiedRequestOrSignatureIsRefused) {
  crypto::Identity id = crypto::generateIdentity();
  SignedQueryBytes q = signQuery(id, sampleRequest(id));
  SignedQueryBytes badSig = q;
  badSig.signature[0] ^= 1;
  EXPECT_EQ(verifySignedQuery(badSig).status().code(), StatusCode::kPermissionDenied);
  // Change the study text "LUNG-7" -> "LUNG-8" inside the canonical bytes: still a valid
  // message, but the signature no longer matches.
  SignedQueryBytes badReq = q;
  bool changed = false;
  for (size_t i = 0; i + 6 <= badReq.request.size(); ++i) {
    if (std::equal(badReq.request.begin() + i, badReq.request.begin() + i + 6, "LUNG-7")) {
      badReq.request[i + 5] = '8';
      changed = true;
    }
  }
  ASSERT_TRUE(changed);
  auto r = verifySignedQuery(badReq);
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("does not verify"), std::string::npos);
}

TEST(SignedQuery, SignatureByAnotherKeyIsRefused) {
  crypto::Identity coordinator = crypto::generateIdentity();
  crypto::Identity forger = crypto::generateIdentity();
  // Claims to come from `coordinator`, signed by `forger`.
  SignedQueryBytes q = signQuery(forger, sampleRequest(coordinator));
  EXPECT_EQ(verifySignedQuery(q).status().code(), StatusCode::kPermissionDenied);
}

TEST(SignedQuery, GarbageAndShortNoncesAreInvalidArgument) {
  crypto::Identity id = crypto::generateIdentity();
  SignedQueryBytes garbage{std::vector<uint8_t>(24, 0xff), std::vector<uint8_t>(64, 0)};
  EXPECT_EQ(verifySignedQuery(garbage).status().code(), StatusCode::kInvalidArgument);
  SignedQueryBytes odd{std::vector<uint8_t>(13, 0), std::vector<uint8_t>(64, 0)};
  EXPECT_EQ(verifySignedQuery(odd).status().code(), StatusCode::kInvalidArgument);
  QueryRequestFields f = sampleRequest(id);
  f.nonce.resize(8);
  auto r = verifySignedQuery(signQuery(id, f));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("nonce has 8 bytes"), std::string::npos);
}

// Protocol version 2: one signature covers every site of the audience, which must be a strictly
// ascending list of 32-byte keys, so each audience has one encoding.
TEST(SignedQuery, AudienceOutOfOrderOrMalformedIsInvalidArgument) {
  crypto::Identity id = crypto::generateIdentity();
  QueryRequestFields f = sampleRequest(id);
  std::swap(f.audience[0], f.audience[2]);
  auto unsorted = verifySignedQuery(signQuery(id, f));
  EXPECT_EQ(unsorted.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unsorted.status().message().find("audience entry 1 is not above the one before"),
            std::string::npos)
      << unsorted.status().toString();
  f.audience = {f.audience[0], f.audience[0]};
  EXPECT_EQ(verifySignedQuery(signQuery(id, f)).status().code(), StatusCode::kInvalidArgument);

  // A short key, built by hand: the struct cannot hold one.
  capnp::MallocMessageBuilder message;
  auto r = message.initRoot<wire::QueryRequest>();
  r.setProtocolVersion(kProtocolVersion);
  r.setFederation("fed");
  r.setStudy("LUNG-7");
  r.setQueryText("count");
  r.setCoordinatorKey(kj::ArrayPtr<const capnp::byte>(id.pub.bytes().data(), 32));
  const std::vector<uint8_t> nonce = newNonce();
  r.setNonce(kj::ArrayPtr<const capnp::byte>(nonce.data(), nonce.size()));
  r.setIssuedAtMs(1);
  r.setExpiresAtMs(2);
  auto audience = r.initAudience(1);
  const uint8_t shortKey[31] = {};
  audience.set(0, kj::ArrayPtr<const capnp::byte>(shortKey, sizeof shortKey));
  auto words = capnp::canonicalize(r.asReader());
  auto decoded =
      decodeQueryRequest(std::span<const uint8_t>(words.asBytes().begin(), words.asBytes().size()));
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("audience entry 0 is not a 32-byte key"),
            std::string::npos)
      << decoded.status().toString();
}

// Issue #12 (found by fuzz_query_request): every accepted request re-encodes to exactly its
// bytes. An empty participant list written as a list pointer (not null) passes isCanonical()
// but is not what encodeQueryRequest makes of the same fields.
std::vector<uint8_t> handBuiltRequest(const crypto::Identity& id, bool emptyParticipants,
                                      std::string_view queryText) {
  capnp::MallocMessageBuilder message;
  auto r = message.initRoot<wire::QueryRequest>();
  r.setProtocolVersion(kProtocolVersion);
  r.setFederation("fed");
  r.setStudy("LUNG-7");
  r.setQueryText(capnp::Text::Reader(queryText.data(), queryText.size()));
  r.setCoordinatorKey(kj::ArrayPtr<const capnp::byte>(id.pub.bytes().data(), 32));
  const std::vector<uint8_t> nonce = newNonce();
  r.setNonce(kj::ArrayPtr<const capnp::byte>(nonce.data(), nonce.size()));
  r.setIssuedAtMs(1);
  r.setExpiresAtMs(2);
  if (emptyParticipants) r.initParticipants(0);
  auto words = capnp::canonicalize(r.asReader());
  return std::vector<uint8_t>(words.asBytes().begin(), words.asBytes().end());
}

TEST(SignedQuery, RequestThatDoesNotReEncodeToItselfIsRefused) {
  crypto::Identity id = crypto::generateIdentity();
  const std::vector<uint8_t> bytes = handBuiltRequest(id, false, "count");
  auto plain = decodeQueryRequest(bytes);
  ASSERT_TRUE(plain.isOk()) << plain.status().toString();
  EXPECT_EQ(encodeQueryRequest(*plain), bytes);
  auto odd = decodeQueryRequest(handBuiltRequest(id, true, "count"));
  EXPECT_EQ(odd.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(odd.status().message().find("not the canonical encoding"), std::string::npos)
      << odd.status().toString();
}

TEST(SignedQuery, TextThatIsNotUtf8IsRefused) {
  crypto::Identity id = crypto::generateIdentity();
  auto bad = decodeQueryRequest(handBuiltRequest(id, false, "count where x = \"\xff\""));
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("not valid UTF-8"), std::string::npos)
      << bad.status().toString();
}

TEST(StatusMapping, RoundTripsCodeAndMessageThroughRemoteException) {
  const Status original = Status::permissionDenied("query expired (site clock 5)");
  kj::Exception e = statusToException(original);
  EXPECT_EQ(e.getType(), kj::Exception::Type::FAILED);
  // What a Cap'n Proto peer sees.
  kj::Exception remote(e.getType(), "(remote)", 0,
                       kj::str("remote exception: ", e.getDescription()));
  Status back = exceptionToStatus(remote);
  EXPECT_EQ(back.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(back.message(), "query expired (site clock 5)");
  EXPECT_EQ(statusToException(Status::resourceExhausted("busy")).getType(),
            kj::Exception::Type::OVERLOADED);
  kj::Exception lost(kj::Exception::Type::DISCONNECTED, "x", 0, kj::str("Peer disconnected."));
  EXPECT_EQ(exceptionToStatus(lost).code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace trialmesh::protocol
