// How every `trialmesh` subcommand reports a failed operation: the Status message on stderr as
// "error: ...", exit status 1 (commands.h documents the exit codes).
#pragma once

#include <cstdio>

#include "common/status.h"

namespace trialmesh::cli {

inline int fail(const Status& status) {
  std::fprintf(stderr, "error: %s\n", status.message().c_str());
  return 1;
}

}  // namespace trialmesh::cli
