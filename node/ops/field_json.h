// Internal to tm_ops: turns Fields into nlohmann::json values. Not for other modules.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <variant>

#include "node/ops/field.h"

namespace trialmesh::ops::internal {

// ordered_json: objects keep insertion order, so "status" or "ts" stays the first key.
inline nlohmann::ordered_json fieldValueToJson(const Field::Value& value) {
  return std::visit([](const auto& v) { return nlohmann::ordered_json(v); }, value);
}

// Serialises one JSON document on one line. Bytes that are not valid UTF-8 (a corrupt CSV cell
// quoted into a message, say) become U+FFFD instead of throwing.
inline std::string dumpJsonLine(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace trialmesh::ops::internal
