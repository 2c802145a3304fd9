// The trialmesh wire messages (protocol/trialmesh.capnp) as C++ values: conversion of partial
// aggregates to and from Cap'n Proto with validation, signing and verification of queries,
// reader limits for peer messages, and the one mapping between Status and kj::Exception.
// Overview: docs/protocol.md.
//
// Everything read from a peer is untrusted: a malformed, oversized or inconsistent message
// comes back as an InvalidArgument (or Corruption) Status naming the field, never a crash.
//
// Thread-safety: pure functions over plain values; safe from any thread.
#pragma once

#include <capnp/message.h>
#include <kj/exception.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "protocol/trialmesh.capnp.h"

namespace trialmesh::ethics {
enum class AggregationMode : uint8_t;  // ethics/approval.h
}
#include "query/partial.h"

namespace trialmesh::protocol {

inline constexpr uint32_t kProtocolVersion = wire::PROTOCOL_VERSION;
inline constexpr size_t kMinNonceBytes = 16;
inline constexpr size_t kMaxNonceBytes = 64;
// Largest participant list of a secure round a site accepts.
inline constexpr size_t kMaxParticipants = 4096;
// Default cap on one RPC message from a peer (node config `limits.max_message_bytes`).
inline constexpr uint64_t kDefaultMaxMessageBytes = 16ull << 20;
// Depth of nested structs/lists a peer message may have; ours need fewer than 8.
inline constexpr int kPeerNestingLimit = 16;

// Reader limits for a message from a peer: the traversal limit equals `maxMessageBytes` (in
// words), so a message can neither be larger nor amplify reads beyond it (Cap'n Proto's
// serializer also refuses a frame whose segment table announces more than the limit, before
// allocating). REQUIRES: maxMessageBytes >= 1024.
capnp::ReaderOptions peerReaderOptions(uint64_t maxMessageBytes = kDefaultMaxMessageBytes);

// ---- partial aggregates ----

// Fills `out` with `partial`.
void partialToWire(const query::PartialResult& partial, wire::PartialResult::Builder out);
// Copies and validates a peer's partial: every vector's length must match the shape
// (cells, statistics, bins), km times must be finite and strictly ascending, cells and bins
// are bounded so a tiny message cannot make us allocate a huge one. Errors: InvalidArgument.
Result<query::PartialResult> partialFromWire(wire::PartialResult::Reader in);

// ---- signed queries ----

// The fields of wire::QueryRequest.
struct QueryRequestFields {
  uint32_t protocolVersion = kProtocolVersion;
  std::string federation;
  std::string study;
  std::string queryText;
  crypto::PublicKey coordinatorKey{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  std::vector<uint8_t> nonce;
  int64_t issuedAtMs = 0;
  int64_t expiresAtMs = 0;
  // Issue #5 (docs/privacy.md): the aggregation mode asked for, and in secure modes the round's
  // participant list (site keys, strictly ascending, at most kMaxParticipants); `nonce` is the
  // round id. Plain requests leave both at their defaults and encode as before.
  wire::Aggregation aggregation = wire::Aggregation::PLAIN;
  std::vector<crypto::PublicKey> participants;
  // The sites the request is sent to (strictly ascending, 1..kMaxParticipants keys): one
  // signature serves all of them (wire::QueryRequest.audience).
  std::vector<crypto::PublicKey> audience;
  bool operator==(const QueryRequestFields&) const = default;
};

// A signed query as it travels (wire::SignedQuery).
struct SignedQueryBytes {
  std::vector<uint8_t> request;    // canonical Cap'n Proto encoding of a QueryRequest
  std::vector<uint8_t> signature;  // Ed25519 over kQuerySignatureContext || request
};

// Domain separation: a query signature can never be mistaken for any other trialmesh signature.
inline constexpr std::string_view kQuerySignatureContext{"trialmesh-query-v1\0", 19};

// A fresh random nonce of kMinNonceBytes bytes.
std::vector<uint8_t> newNonce();
// The canonical encoding of `fields`.
std::vector<uint8_t> encodeQueryRequest(const QueryRequestFields& fields);
// Encodes and signs with `signer` (whose public key should be fields.coordinatorKey).
SignedQueryBytes signQuery(const crypto::Identity& signer, const QueryRequestFields& fields);
// Decodes a request and checks it is canonical and well-formed (key and nonce sizes, text
// lengths, expiry after issue). Does not check the signature. Errors: InvalidArgument.
Result<QueryRequestFields> decodeQueryRequest(std::span<const uint8_t> request);
// Decodes and verifies the signature by the request's own coordinatorKey. Who that key belongs
// to, the freshness and the nonce are the caller's checks (ReplayGuard, membership).
// Errors: InvalidArgument (malformed), PermissionDenied ("query signature does not verify").
Result<QueryRequestFields> verifySignedQuery(const SignedQueryBytes& signedQuery);

void signedQueryToWire(const SignedQueryBytes& q, wire::SignedQuery::Builder out);
SignedQueryBytes signedQueryFromWire(wire::SignedQuery::Reader in);

// ---- Status <-> kj::Exception ----

// The exception a Cap'n Proto method throws to refuse with `status` (REQUIRES: not OK). Its
// description is "<StatusCodeName>: <message>", which the peer receives verbatim. Type:
// ResourceExhausted/Unavailable -> OVERLOADED (retry later), everything else -> FAILED.
kj::Exception statusToException(const Status& status);
// The Status a caller sees for `e`: a remote refusal made by statusToException comes back with
// its code and message; DISCONNECTED -> Unavailable; OVERLOADED -> ResourceExhausted unless the
// description names a code; other exceptions -> Internal with their description.
Status exceptionToStatus(const kj::Exception& e);

// An approval's aggregation mode (ethics::AggregationMode) as the wire enum and back. A wire
// value this build does not know reads as kSecure, the default and strictest masked mode.
wire::Aggregation aggregationToWire(ethics::AggregationMode mode);
ethics::AggregationMode aggregationFromWire(wire::Aggregation mode);

}  // namespace trialmesh::protocol
