// Query JSON parser (query/query_json.cc): any bytes either fail with a Status (never an
// exception) or give a query whose canonical text and JSON form read back to it.
#include "query_roundtrip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace trialmesh;
  auto q = query::parseQueryJson(fuzz::asText(data, size));
  if (q.isOk()) fuzz::checkQueryRoundTrips(*q);
  return 0;
}
