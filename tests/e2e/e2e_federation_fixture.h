// Starting and stopping a LocalFederation for an e2e test, shared by the suites whose fixtures
// need nothing but a small federation in a fresh temporary folder.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

// GET http://127.0.0.1:<port><path> (a node's ops endpoint); the whole response, "" on failure.
inline std::string httpGet(uint16_t port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string req =
        "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (::write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return out;
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
