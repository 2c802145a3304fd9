// The properties every accepted query must have, shared by fuzz_query_text and
// fuzz_query_json: canonical text and the JSON form both read back to the same query, and
// canonical text is a fixed point.
#pragma once

#include "fuzz_check.h"
#include "query/query.h"

namespace trialmesh::fuzz {

inline void checkQueryRoundTrips(const query::Query& q) {
  const std::string canonical = query::canonicalQueryText(q);
  auto again = query::parseQuery(canonical);
  if (!again.isOk())
    std::fprintf(stderr, "%s\n%s\n", canonical.c_str(), again.status().message().c_str());
  FUZZ_CHECK(again.isOk(), "canonical text parses");
  FUZZ_CHECK(*again == q, "canonical text parses to the same query");
  FUZZ_CHECK(query::canonicalQueryText(*again) == canonical, "canonical text is a fixed point");
  const std::string json = query::toJson(q);  // throws (a crash) on invalid UTF-8
  auto fromJson = query::parseQueryJson(json);
  if (!fromJson.isOk())
    std::fprintf(stderr, "%s\n%s\n", json.c_str(), fromJson.status().message().c_str());
  FUZZ_CHECK(fromJson.isOk(), "toJson parses");
  FUZZ_CHECK(*fromJson == q, "toJson parses to the same query");
}

}  // namespace trialmesh::fuzz
