// How a TOML value is named in error messages ("key 'min' must be a number, not a string").
// Shared by every TOML reader (data dictionaries, approvals, node configs) so site IT sees the
// same wording everywhere. Header-only; include it only from files that already use toml++.
#pragma once

#include <toml++/toml.h>

#include <string>

namespace trialmesh {

inline std::string describeTomlNode(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "nothing";
  }
}

}  // namespace trialmesh
