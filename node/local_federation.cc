#include "node/local_federation.h"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "ethics/approval.h"
#include "node/coordinator.h"
#include "storage/dictionary.h"
#include "storage/store.h"
#include "tools/gen/gen.h"

namespace trialmesh::node {
namespace {

Status writeText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return Status::ioError("cannot write " + path);
  return Status::ok();
}

// Keeps the header and the first `rows` subjects of a generated site CSV (one subject a line:
// the generator quotes no field with a line break).
Status truncateCsv(const std::string& path, uint64_t rows) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::ioError("cannot read " + path);
  std::string out, line;
  uint64_t kept = 0;
  for (bool header = true; kept < rows && std::getline(in, line); header = false) {
    out += line;
    out += '\n';
    if (!header) ++kept;
  }
  if (kept < rows) {
    return Status::invalidArgument("LocalFederation: siteRows asks " + std::to_string(rows) +
                                   " rows of " + path + ", which has " + std::to_string(kept) +
                                   "; raise rows");
  }
  in.close();
  return writeText(path, out);
}

std::string tail(const std::string& path, size_t bytes = 2000) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  std::string t = s.str();
  return t.size() > bytes ? t.substr(t.size() - bytes) : t;
}

}  // namespace

Result<std::unique_ptr<LocalFederation>> LocalFederation::create(
    const LocalFederationOptions& options) {
  namespace fs = std::filesystem;
  if (options.directory.empty()) return Status::invalidArgument("LocalFederation: no directory");
  std::error_code ec;
  fs::create_directories(options.directory, ec);
  if (ec) return Status::ioError("cannot create " + options.directory + ": " + ec.message());

  gen::GenOptions g;
  g.rows = options.rows;
  g.seed = options.seed;
  g.sites = options.sites;
  TM_ASSIGN_OR_RETURN(std::vector<std::string> csvs,
                      gen::writeTrialDatasetPerSite(g, options.directory));
  if (!options.siteRows.empty()) {
    if (options.siteRows.size() != options.sites) {
      return Status::invalidArgument("LocalFederation: siteRows has " +
                                     std::to_string(options.siteRows.size()) + " entries for " +
                                     std::to_string(options.sites) + " sites");
    }
    for (size_t i = 0; i < csvs.size(); ++i)
      TM_RETURN_IF_ERROR(truncateCsv(csvs[i], options.siteRows[i]));
  }
  TM_ASSIGN_OR_RETURN(storage::Dictionary dict,
                      storage::Dictionary::loadFile(options.directory + "/dictionary.toml"));

  std::unique_ptr<LocalFederation> fed(
      new LocalFederation(options, crypto::generateIdentity(), crypto::generateIdentity()));
  TM_RETURN_IF_ERROR(crypto::saveIdentity(fed->coordinatorKeyPath(), fed->coordinator_,
                                          std::nullopt, {.overwrite = true}));
  TM_RETURN_IF_ERROR(crypto::saveIdentity(fed->committeeKeyPath(), fed->committee_, std::nullopt,
                                          {.overwrite = true}));

  // The approval every site enforces: the whole dictionary, every analysis, this coordinator.
  ethics::Approval approval;
  approval.study = kStudy;
  approval.protocolVersion = 1;
  approval.leadCommittee = {"local-demo-committee", fed->committee_.pub};
  approval.coordinators = {fed->coordinator_.pub};
  approval.dictionaryHash = dict.hash();
  for (const auto& v : dict.variables()) approval.variables.push_back(v.name);
  for (std::string_view a : ethics::kKnownAnalyses) {
    (ethics::isDisclosiveAnalysis(a) ? approval.disclosiveAnalyses : approval.analyses)
        .emplace_back(a);
  }
  approval.minCellSize = options.minCellSize;
  approval.aggregation = options.aggregation.value_or(
      options.sites >= 2 ? ethics::AggregationMode::kSecure : ethics::AggregationMode::kPlain);
  approval.minSites =
      options.minSites.value_or(std::max<uint32_t>(2, std::min<uint32_t>(3, options.sites)));
  approval.timeBin = options.timeBin;
  approval.dpEpsilonPerQuery = options.dpEpsilonPerQuery;
  approval.dpBudget = options.dpBudget;
  approval.modelMinSiteRows = options.modelMinSiteRows;
  approval.surveillanceMinIntervalMs = options.surveillanceMinIntervalMs;
  const int64_t nowMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  constexpr int64_t kDayMs = 86'400'000;
  approval.validFrom = ethics::dateFromUnixMs(nowMs - kDayMs);
  approval.validUntil = ethics::dateFromUnixMs(nowMs + 365 * kDayMs);

  std::vector<std::string> siteNames;
  for (uint32_t i = 0; i < options.sites; ++i) {
    std::string code = gen::siteCode(i);
    for (auto& c : code) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    siteNames.push_back("site-" + code);
  }
  approval.sites = siteNames;
  ethics::canonicalise(approval);
  TM_ASSIGN_OR_RETURN(ethics::SignedApproval signedApproval,
                      ethics::signApproval(std::move(approval), fed->committee_));
  TM_RETURN_IF_ERROR(writeText(fed->approvalPath(), ethics::encodeSignedApproval(signedApproval)));

  for (uint32_t i = 0; i < options.sites; ++i) {
    Site site;
    std::string code = gen::siteCode(i);  // "S01"
    for (auto& c : code) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    site.name = "site-" + code;
    site.dir = options.directory + "/" + site.name;
    site.csv = csvs[i];
    fs::create_directories(site.dir, ec);
    if (ec) return Status::ioError("cannot create " + site.dir + ": " + ec.message());
    crypto::Identity id = crypto::generateIdentity();
    TM_RETURN_IF_ERROR(crypto::saveIdentity(site.dir + "/" + site.name + ".key", id, std::nullopt,
                                            {.overwrite = true}));
    {
      storage::StoreOptions so;
      so.cacheBytes = 16 << 20;
      TM_ASSIGN_OR_RETURN(auto store, storage::Store::open(site.dir + "/store", so));
      TM_ASSIGN_OR_RETURN(auto report, store->importCsv(kDataset, dict, site.csv));
      (void)report;
    }
    {
      TM_ASSIGN_OR_RETURN(auto approvals,
                          ethics::ApprovalStore::open(site.dir + "/store/ethics-approvals"));
      TM_RETURN_IF_ERROR(approvals->putApproval(signedApproval));
    }
    site.pub = id.pub;
    TM_ASSIGN_OR_RETURN(site.port, pickFreeLoopbackPort());
    TM_ASSIGN_OR_RETURN(site.opsPort, pickFreeLoopbackPort());
    fed->sites_.push_back(std::move(site));
    TM_RETURN_IF_ERROR(fed->writeSiteConfig(fed->sites_.size() - 1));
  }
  TM_RETURN_IF_ERROR(fed->writeMembers());
  if (fed->options_.nodeBinary.empty()) {
    std::string sibling = executableDirectory() + "/trialmesh-node";
    fed->options_.nodeBinary = fs::exists(sibling) ? sibling : "trialmesh-node";
  }
  return fed;
}

LocalFederation::~LocalFederation() { stop(); }

Status LocalFederation::writeSiteConfig(size_t i) const {
  const Site& site = sites_[i];
  std::string config = "name = \"" + site.name + "\"\nidentity = \"" + site.name +
                       ".key\"\nlisten = \"127.0.0.1:" + std::to_string(site.port) +
                       "\"\ndata_dir = \"store\"\nmembers = \"../members.toml\"\n"
                       "ops_listen = \"127.0.0.1:" +
                       std::to_string(site.opsPort) + "\"\nlog_format = \"" + options_.logFormat +
                       "\"\nlog_file = \"node.log\"\n\n[limits]\nworker_threads = 2\n" +
                       options_.extraLimits + "\n\n[ethics]\nrecognised_committees = [\"" +
                       committee_.pub.toText() + "\"]\n\n[[dataset]]\nstudy = \"" + kStudy +
                       "\"\nname = \"" + kDataset + "\"\n";
  return writeText(site.dir + "/node.toml", config);
}

Status LocalFederation::writeMembers() {
  std::string members =
      "federation = \"local-demo\"\n\n[[member]]\nname = \"coordinator\"\n"
      "role = \"coordinator\"\npublic_key = \"" +
      coordinator_.pub.toText() +
      "\"\n\n[[member]]\nname = \"ethics-board\"\nrole = \"ethics-board\"\npublic_key = \"" +
      committee_.pub.toText() + "\"\n";
  for (const Site& site : sites_) {
    members += "\n[[member]]\nname = \"" + site.name + "\"\nrole = \"site\"\npublic_key = \"" +
               site.pub.toText() + "\"\naddress = \"127.0.0.1:" + std::to_string(site.port) +
               "\"\nstudies = [\"" + kStudy + "\"]\n";
  }
  TM_RETURN_IF_ERROR(writeText(membersPath(), members));
  TM_ASSIGN_OR_RETURN(members_, loadMembers(membersPath()));
  return Status::ok();
}

Status LocalFederation::reloadMembers() {
  TM_ASSIGN_OR_RETURN(members_, loadMembers(membersPath()));
  return Status::ok();
}

Status LocalFederation::startSite(size_t i, std::chrono::milliseconds timeout) {
  Site& site = sites_[i];
  if (site.process && site.process->running()) return Status::ok();
  // A port picked free at create() may have been taken since by another process on the
  // machine (pickFreeLoopbackPort makes that unlikely, not impossible). Then the node exits
  // with "address already in use": pick new ports, rewrite node.toml and members.toml, retry.
  // Sites already running keep the old address of this site for their peer checks.
  constexpr int kAttempts = 4;
  for (int attempt = 1;; ++attempt) {
    Status s = launchSite(i, timeout);
    if (s.isOk() || attempt == kAttempts ||
        s.message().find("address already in use") == std::string::npos) {
      return s;
    }
    TM_ASSIGN_OR_RETURN(site.port, pickFreeLoopbackPort());
    TM_ASSIGN_OR_RETURN(site.opsPort, pickFreeLoopbackPort());
    TM_RETURN_IF_ERROR(writeSiteConfig(i));
    TM_RETURN_IF_ERROR(writeMembers());
  }
}

Status LocalFederation::launchSite(size_t i, std::chrono::milliseconds timeout) {
  Site& site = sites_[i];
  TM_ASSIGN_OR_RETURN(ChildProcess p, ChildProcess::spawn(options_.nodeBinary,
                                                          {"--config", site.dir + "/node.toml"},
                                                          site.dir + "/output.log"));
  site.process = std::make_unique<ChildProcess>(std::move(p));
  const auto end = std::chrono::steady_clock::now() + timeout;
  Status last;
  while (std::chrono::steady_clock::now() < end) {
    if (!site.process->running()) {
      return Status::unavailable(site.name + " exited with status " +
                                 std::to_string(site.process->exitStatus().value_or(-1)) +
                                 " during startup:\n" + tail(site.dir + "/output.log") +
                                 tail(site.dir + "/node.log"));
    }
    auto info = fetchSiteInfo(coordinator_, members_, site.name, std::chrono::seconds(2));
    if (info) return Status::ok();
    last = info.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return Status::unavailable(site.name + " did not become ready within " +
                             std::to_string(timeout.count()) + " ms: " + last.message());
}

Status LocalFederation::start(std::chrono::milliseconds timeout) {
  for (size_t i = 0; i < sites_.size(); ++i) TM_RETURN_IF_ERROR(startSite(i, timeout));
  return Status::ok();
}

std::vector<int> LocalFederation::stop(std::chrono::milliseconds grace) {
  std::vector<int> statuses;
  for (auto& s : sites_) {
    if (s.process && s.process->running()) s.process->signal(SIGTERM);
  }
  for (auto& s : sites_) {
    if (s.process) {
      statuses.push_back(s.process->stop(grace));
      s.process.reset();
    }
  }
  return statuses;
}

}  // namespace trialmesh::node
