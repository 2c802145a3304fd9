// LocalFederation: a complete, throwaway federation on 127.0.0.1 for the demo, the end-to-end
// tests and benchmarks. create() generates the LUNG-7 study (tools/gen) split across N sites,
// imports each part into that site's own store, writes fresh identities (no passphrase), the
// members file and one node.toml per site into `directory`; start() runs one trialmesh-node
// process per site and waits until each answers Site.info; stop() (and the destructor) end
// them with SIGTERM, then SIGKILL if needed.
//
// Ethics (docs/ethics.md): create() also generates a lead ethics committee identity
// (committee.key), signs one approval for LUNG-7 covering every site, the coordinator, every
// dictionary variable and every analysis, valid from yesterday for a year (approval.signed),
// stores it in each site's approval store and lists the committee in each node.toml's
// [ethics] recognised_committees, so queries pass enforcement exactly as in production. The
// committee key is also the members file's "ethics-board" member, which may read audit logs
// and submit approvals and statements.
//
// Layout of `directory`: members.toml, coordinator.key, committee.key, approval.signed,
// dictionary.toml, site-S01.csv..., and per site site-sNN/{node.toml, site-sNN.key, store/
// (with store/ethics-audit and store/ethics-approvals), node.log, output.log}.
//
// Thread-safety: single-threaded. Not for production: keys have no passphrase.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "ethics/approval.h"
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
  // The approval's aggregation policy (issue #5, docs/privacy.md). Defaults: secure
  // aggregation with min_sites = min(3, sites) — plain for a one-site federation, since masks
  // need two sites —, min_cell_size 1 (nothing suppressed) and time_bin 1 (the generator's
  // times are whole days, so Kaplan–Meier curves stay exact).
  std::optional<ethics::AggregationMode> aggregation;
  std::optional<uint32_t> minSites;
  uint32_t minCellSize = 1;
  std::optional<double> timeBin = 1.0;
  double dpEpsilonPerQuery = 0;            // secure-dp only
  double dpBudget = 0;                     // secure-dp only
  uint32_t modelMinSiteRows = 0;           // the approval's model_min_site_rows; 0 = none
  uint64_t surveillanceMinIntervalMs = 0;  // the approval's surveillance_min_interval_ms; 0 = none
  // Exact site sizes, for federations of very unequal sites (benchmarks): when not empty it has
  // one entry per site and site i keeps only the first siteRows[i] subjects the generator gave
  // it. The generator splits `rows` mildly unequally (site j in proportion to 2 * sites - j),
  // so `rows` must leave every site at least its entry; create() says which site is short.
  std::vector<uint64_t> siteRows;
};

class LocalFederation {
 public:
  static Result<std::unique_ptr<LocalFederation>> create(const LocalFederationOptions& options);
  ~LocalFederation();  // stop()

  // Starts every site not running and waits (at most `timeout`) until each answers. A site
  // whose port another process took meanwhile moves to new ports (node.toml and members.toml
  // are rewritten and members() reloaded); re-read sitePort/siteOpsPort/members() after.
  Status start(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  Status startSite(size_t index, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Re-reads members.toml after a test edited it (e.g. a key rotation, docs/keys.md), so
  // start() and members() use the keys it lists now.
  Status reloadMembers();
  // SIGTERM to every running site, SIGKILL after `grace`. Returns the exit statuses.
  std::vector<int> stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  size_t siteCount() const { return sites_.size(); }
  const std::string& siteName(size_t i) const { return sites_[i].name; }
  const std::string& siteDirectory(size_t i) const { return sites_[i].dir; }
  std::string siteLogPath(size_t i) const { return sites_[i].dir + "/node.log"; }
  std::string siteConfigPath(size_t i) const { return sites_[i].dir + "/node.toml"; }
  const std::string& siteCsvPath(size_t i) const { return sites_[i].csv; }
  uint16_t sitePort(size_t i) const { return sites_[i].port; }  // RPC, as in members.toml
  uint16_t siteOpsPort(size_t i) const { return sites_[i].opsPort; }
  // The site's process; nullptr when not started (or after stop()).
  ChildProcess* siteProcess(size_t i) { return sites_[i].process.get(); }

  const std::string& directory() const { return options_.directory; }
  std::string membersPath() const { return options_.directory + "/members.toml"; }
  std::string dictionaryPath() const { return options_.directory + "/dictionary.toml"; }
  std::string coordinatorKeyPath() const { return options_.directory + "/coordinator.key"; }
  std::string committeeKeyPath() const { return options_.directory + "/committee.key"; }
  std::string approvalPath() const { return options_.directory + "/approval.signed"; }
  std::string siteAuditDir(size_t i) const { return sites_[i].dir + "/store/ethics-audit"; }
  // The lead ethics committee that signed approval.signed (recognised by every site).
  const crypto::Identity& committee() const { return committee_; }
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
    crypto::PublicKey pub{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
    std::unique_ptr<ChildProcess> process;
  };
  LocalFederation(LocalFederationOptions options, crypto::Identity coordinator,
                  crypto::Identity committee)
      : options_(std::move(options)),
        coordinator_(std::move(coordinator)),
        committee_(std::move(committee)) {}
  Status writeSiteConfig(size_t i) const;  // site-sNN/node.toml from sites_[i]
  Status writeMembers();                   // members.toml from sites_, then reloads members_
  Status launchSite(size_t i, std::chrono::milliseconds timeout);  // one attempt

  LocalFederationOptions options_;
  crypto::Identity coordinator_;
  crypto::Identity committee_;
  Members members_;
  std::vector<Site> sites_;
};

}  // namespace trialmesh::node
