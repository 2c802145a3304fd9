#include "node/alert.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <sstream>

#include "crypto/hash.h"

namespace trialmesh::node {
namespace {

constexpr std::string_view kAlertContext{"trialmesh/surveillance-alert/v1\0", 32};

std::string signedMessage(std::string_view bytes) {
  std::string m(kAlertContext);
  m.append(bytes);
  return m;
}

std::span<const uint8_t> spanOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string numberText(double v) {
  std::ostringstream o;
  o.precision(17);
  o << v;
  return o.str();
}

}  // namespace

std::string alertJson(const SurveillanceAlert& a) {
  // ordered_json keeps the documented key order, so the bytes are the same on every build.
  nlohmann::ordered_json j;
  j["federation"] = a.federation;
  j["study"] = a.study;
  j["query"] = a.query;
  j["method"] = a.method;
  j["period"] = a.period;
  j["count"] = a.count;
  if (a.upperBound && std::isfinite(*a.upperBound)) {
    j["upper_bound"] = *a.upperBound;
  } else {
    j["upper_bound"] = nullptr;
  }
  j["coordinator"] = a.coordinator.toText();
  j["raised_at_ms"] = a.raisedAtMs;
  return j.dump();
}

Result<SurveillanceAlert> parseAlertJson(std::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Status::invalidArgument("surveillance alert: not a JSON object");
  auto field = [&](const char* name) -> Result<const nlohmann::json*> {
    auto it = j.find(name);
    if (it == j.end())
      return Status::invalidArgument(std::string("surveillance alert: field '") + name +
                                     "' is missing");
    return &*it;
  };
  SurveillanceAlert a;
  for (auto [name, out] : {std::pair<const char*, std::string*>{"federation", &a.federation},
                           {"study", &a.study},
                           {"query", &a.query},
                           {"method", &a.method},
                           {"period", &a.period}}) {
    TM_ASSIGN_OR_RETURN(const nlohmann::json* v, field(name));
    if (!v->is_string())
      return Status::invalidArgument(std::string("surveillance alert: field '") + name +
                                     "' must be a string");
    *out = v->get<std::string>();
  }
  TM_ASSIGN_OR_RETURN(const nlohmann::json* count, field("count"));
  if (!count->is_number_integer())
    return Status::invalidArgument("surveillance alert: field 'count' must be an integer");
  a.count = count->get<int64_t>();
  TM_ASSIGN_OR_RETURN(const nlohmann::json* bound, field("upper_bound"));
  if (bound->is_number()) {
    a.upperBound = bound->get<double>();
  } else if (!bound->is_null()) {
    return Status::invalidArgument(
        "surveillance alert: field 'upper_bound' must be a number or null");
  }
  TM_ASSIGN_OR_RETURN(const nlohmann::json* key, field("coordinator"));
  if (!key->is_string())
    return Status::invalidArgument("surveillance alert: field 'coordinator' must be a key text");
  auto pub = crypto::parsePublicKey(key->get<std::string>());
  if (!pub) return pub.status().withContext("surveillance alert: field 'coordinator'");
  a.coordinator = *pub;
  TM_ASSIGN_OR_RETURN(const nlohmann::json* at, field("raised_at_ms"));
  if (!at->is_number_integer())
    return Status::invalidArgument("surveillance alert: field 'raised_at_ms' must be an integer");
  a.raisedAtMs = at->get<int64_t>();
  if (j.size() != 9)
    return Status::invalidArgument("surveillance alert: unknown fields (expected exactly 9)");
  return a;
}

Result<SignedAlert> signAlert(const SurveillanceAlert& alert, const crypto::Identity& identity) {
  if (!(alert.coordinator == identity.pub))
    return Status::invalidArgument("surveillance alert names coordinator " +
                                   alert.coordinator.toText() + " but is signed by " +
                                   identity.pub.toText());
  SignedAlert s;
  s.bytes = alertJson(alert);
  s.signature = crypto::sign(identity.secret, spanOf(signedMessage(s.bytes)));
  return s;
}

Result<SurveillanceAlert> verifyAlert(std::string_view bytes, std::span<const uint8_t> signature) {
  TM_ASSIGN_OR_RETURN(SurveillanceAlert a, parseAlertJson(bytes));
  if (signature.size() != crypto::kSignatureBytes)
    return Status::invalidArgument("surveillance alert signature has " +
                                   std::to_string(signature.size()) + " bytes; expected " +
                                   std::to_string(crypto::kSignatureBytes));
  crypto::Signature sig{};
  std::copy(signature.begin(), signature.end(), sig.begin());
  if (!crypto::verify(a.coordinator, spanOf(signedMessage(bytes)), sig))
    return Status::permissionDenied(
        "surveillance alert signature does not verify with its "
        "coordinator key " +
        a.coordinator.toText());
  return a;
}

std::string describeAlert(const SurveillanceAlert& a) {
  return "surveillance alarm study=" + a.study + " period=" + a.period +
         " count=" + std::to_string(a.count) +
         " upper_bound=" + (a.upperBound ? numberText(*a.upperBound) : std::string("none")) +
         " method=" + a.method + " query='" + a.query + "'";
}

}  // namespace trialmesh::node
