// One console query: the statement a coordinator typed, run over the console's coordinator
// session exactly as `trialmesh query --json` runs it (tools/trialmesh/cmd_federation.cc and
// cmd_model.cc), and the result in the same JSON (docs/json-output.md) and CSV.
//
// Thread-safety: may be called concurrently (CoordinatorSession is thread-safe).
#pragma once

#include <chrono>
#include <string>

#include "common/status.h"
#include "node/coordinator.h"

namespace trialmesh::console {

struct ConsoleQueryResult {
  std::string json;  // as `trialmesh query --json` prints it
  std::string csv;   // as `trialmesh query --csv` prints it on stdout
};

// Errors: the query's own (InvalidArgument with line, column and a caret for a syntax error;
// NotFound for a study no site serves), a model's (e.g. below the approval's quorum). A query
// no site answered is not an error: its JSON says why in `sites` and `refusal`.
Result<ConsoleQueryResult> runConsoleQuery(node::CoordinatorSession& session,
                                           const std::string& study, const std::string& text,
                                           std::chrono::milliseconds deadline);

}  // namespace trialmesh::console
