// `trialmesh import` through a running node's admin socket (cmd_liveops.cc).
#pragma once

#include <cstddef>
#include <string>

namespace trialmesh::cli {

struct LiveImportRequest {
  std::string dataset;
  std::string dictionary;
  std::string csv;
  size_t maxErrors = 20;
  std::string delimiter = ",";
  std::string encoding = "utf-8";
  std::string duplicateIds = "error";
};

// Sends the import to the node at `socket` (the CSV passed as an open file) and prints the
// same progress, warnings, result and errors as an offline import. Returns the exit status.
int runImportViaNode(const std::string& socket, const LiveImportRequest& request);

}  // namespace trialmesh::cli
