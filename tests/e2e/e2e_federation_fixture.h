// Starting and stopping a LocalFederation for an e2e test, shared by the suites whose fixtures
// need nothing but a small federation in a fresh temporary folder.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "node/local_federation.h"

namespace trialmesh::node {

// The whole content of a file (a node's log, an exported report); empty when unreadable.
inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Creates `dir` afresh and starts `sites` nodes holding `rows` generated subjects in all.
// Fails the test (fatally) when the federation cannot start.
inline void startLocalFederation(const std::filesystem::path& dir, uint32_t sites, uint64_t rows,
                                 std::unique_ptr<LocalFederation>& fed) {
  using namespace std::chrono_literals;
  std::filesystem::remove_all(dir);
  LocalFederationOptions o;
  o.directory = dir.string();
  o.sites = sites;
  o.rows = rows;
  o.nodeBinary = TRIALMESH_NODE_BINARY;
  auto created = LocalFederation::create(o);
  ASSERT_TRUE(created.isOk()) << created.status().toString();
  fed = std::move(*created);
  Status s = fed->start(30s);
  ASSERT_TRUE(s.isOk()) << s.toString();
}

// The sites' CSVs concatenated under one header into `path`: the pooled rows R is run on.
inline void writePooledCsv(const LocalFederation& fed, const std::filesystem::path& path) {
  std::ofstream pooled(path);
  for (size_t i = 0; i < fed.siteCount(); ++i) {
    std::ifstream in(fed.siteCsvPath(i));
    std::string line;
    bool first = true;
    while (std::getline(in, line)) {
      if (!first || i == 0) pooled << line << "\n";
      first = false;
    }
  }
}

// Stops the nodes (if any) and removes their folder.
inline void stopLocalFederation(std::unique_ptr<LocalFederation>& fed,
                                const std::filesystem::path& dir) {
  using namespace std::chrono_literals;
  if (fed) fed->stop(5s);
  fed.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace trialmesh::node
