// A surveillance alert (issue #15 item 3): what a coordinator's standing query (trialmesh watch,
// node/watcher.h) signs and sends to every site of the study when a new alarm appears.
//
// Form: the alert is a compact JSON object (alertJson; keys in a fixed order), and the Ed25519
// signature by the coordinator covers "trialmesh/surveillance-alert/v1\0" || those exact bytes.
// The receiver verifies the bytes it received and parses only them, so no re-encoding step can
// make the signed and the read content differ. The same JSON is what the operator's --on-alert
// command reads on stdin. Fields are documented in docs/surveillance.md ("Standing queries").
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "crypto/identity.h"

namespace trialmesh::node {

struct SurveillanceAlert {
  std::string federation;
  std::string study;
  std::string query;   // the standing query as registered, e.g. surveil(onset_date, ...)
  std::string method;  // "c1", "farrington", "percentile", "threshold", ...
  std::string period;  // the alarm's week/day/month label, e.g. "2024-W10"
  int64_t count = 0;
  std::optional<double> upperBound;  // none for a method that gives none for this period
  crypto::PublicKey coordinator{std::array<uint8_t, crypto::kPublicKeyBytes>{}};  // the signer
  int64_t raisedAtMs = 0;  // coordinator clock, Unix milliseconds
  bool operator==(const SurveillanceAlert&) const = default;
};

// The JSON bytes (keys: federation, study, query, method, period, count, upper_bound,
// coordinator, raised_at_ms; upper_bound null when absent).
std::string alertJson(const SurveillanceAlert& alert);
// Strict parse of alertJson's form: InvalidArgument naming the missing or mistyped field.
Result<SurveillanceAlert> parseAlertJson(std::string_view json);

struct SignedAlert {
  std::string bytes;  // alertJson
  crypto::Signature signature{};
};
// REQUIRES: alert.coordinator == identity.pub (InvalidArgument otherwise).
Result<SignedAlert> signAlert(const SurveillanceAlert& alert, const crypto::Identity& identity);
// Parses `bytes` and checks the signature with the alert's coordinator key: PermissionDenied
// when it does not verify, InvalidArgument for a malformed alert.
Result<SurveillanceAlert> verifyAlert(std::string_view bytes, std::span<const uint8_t> signature);

// One line for logs and the audit entry: "surveillance alarm study=FLU period=2024-W10
// count=57 upper_bound=23.4 method=farrington query='surveil(...)'".
std::string describeAlert(const SurveillanceAlert& alert);

}  // namespace trialmesh::node
