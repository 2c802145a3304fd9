// LocalFederation: a complete, throwaway federation on 127.0.0.1 for the demo, the end-to-end
// tests and benchmarks. create() generates the LUNG-7 study (tools/gen) split across N sites,
// imports each part into that site's own store, writes fresh identities (no passphrase), the
// members file and one node.toml per site into `directory`; start() runs one trialmesh-node
// process per site and waits until each answers Site.info; stop() (and the destructor) end
// them with SIGTERM, then SIGKILL if needed.
//
// Layout of `directory`: members.toml, coordinator.key, dictionary.toml, site-S01.csv...,
// and per site site-sNN/{node.toml, site-sNN.key, store/, node.log, output.log}.
//
// Thread-safety: single-threaded. Not for production: keys have no passphrase.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "node/child_process.h"
#include "node/config.h"

namespace trialmesh::node {

struct LocalFederationOptions {
  std::string directory;  // created if missing; must be empty or absent
  uint32_t sites = 3;
  uint64_t rows = 3000;  // subjects in the whole study, split across sites by the generator
  uint64_t seed = 1;
  // Path of trialmesh-node. Default: next to the running executable, else PATH.
  std::string nodeBinary;
  // Extra lines for each node.toml's [limits] table, e.g. "query_timeout_ms = 2000".
  std::string extraLimits;
  std::string logFormat = "plain";
};

class LocalFederation {
 public:
  static Result<std::unique_ptr<LocalFederation>> create(const LocalFederationOptions& options);
  ~LocalFederation();  // stop()

  // Starts every site not running and waits (at most `timeout`) until each answers.
  Status start(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  Status startSite(size_t index, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // SIGTERM to every running site, SIGKILL after `grace`. Returns the exit statuses.
  std::vector<int> stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  size_t siteCount() const { return sites_.size(); }
  const std::string& siteName(size_t i) const { return sites_[i].name; }
  const std::string& siteDirectory(size_t i) const { return sites_[i].dir; }
  std::string siteLogPath(size_t i) const { return sites_[i].dir + "/node.log"; }
  std::string siteConfigPath(size_t i) const { return sites_[i].dir + "/node.toml"; }
  const std::string& siteCsvPath(size_t i) const { return sites_[i].csv; }
  uint16_t siteOpsPort(size_t i) const { return sites_[i].opsPort; }
  // The site's process; nullptr when not started (or after stop()).
  ChildProcess* siteProcess(size_t i) { return sites_[i].process.get(); }

  const std::string& directory() const { return options_.directory; }
  std::string membersPath() const { return options_.directory + "/members.toml"; }
  std::string dictionaryPath() const { return options_.directory + "/dictionary.toml"; }
  std::string coordinatorKeyPath() const { return options_.directory + "/coordinator.key"; }
  const Members& members() const { return members_; }
  const crypto::Identity& coordinator() const { return coordinator_; }
  static constexpr const char* kStudy = "LUNG-7";
  static constexpr const char* kDataset = "lung7";

 private:
  struct Site {
    std::string name;
    std::string dir;
    std::string csv;
    uint16_t port = 0;
    uint16_t opsPort = 0;
    std::unique_ptr<ChildProcess> process;
  };
  LocalFederation(LocalFederationOptions options, crypto::Identity coordinator)
      : options_(std::move(options)), coordinator_(std::move(coordinator)) {}

  LocalFederationOptions options_;
  crypto::Identity coordinator_;
  Members members_;
  std::vector<Site> sites_;
};

}  // namespace trialmesh::node
