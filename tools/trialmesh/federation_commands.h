// Federation commands of the `trialmesh` CLI (tools/trialmesh/cmd_federation.cc):
//   trialmesh keygen --out NAME.key [--passphrase-file F] [--force]
//   trialmesh rotate-key --config node.toml --new-identity NEW.key [--generate]
//   trialmesh query --study S --members members.toml --identity coord.key [--deadline-ms N]
//                   [--json|--csv] '<query>'        (federated form; cmd_query.cc calls
//                                                     runFederatedQueryCommand)
//   trialmesh demo --federation                     (cmd_demo.cc calls runFederationDemo)
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace trialmesh::cli {

// Registers `keygen`.
void addFederationCommands(CLI::App& app, int& exitCode);
// Registers `watch`, the standing surveillance query (cmd_watch.cc).
void addWatchCommand(CLI::App& app, int& exitCode);
// Registers `rotate-key` (cmd_keys.cc).
void addKeyCommands(CLI::App& app, int& exitCode);
// Registers `members sign` and `members verify` (cmd_members.cc).
void addMembersCommands(CLI::App& app, int& exitCode);

struct FederatedQueryArgs {
  std::string text;
  std::string study;
  std::string members;
  std::string identity;
  std::string passphraseFile;  // optional; else env TRIALMESH_PASSPHRASE when needed
  int64_t deadlineMs = 5000;
  bool json = false;
  bool csv = false;
  std::string plot;  // --plot FILE.svg|FILE.png (tools/plot/plot.h); empty: no plot
};
// Signs and fans the query out, prints the combined table (text, --json or --csv) on stdout,
// then which sites answered and why others did not (on stderr for --json/--csv, so scripts get
// clean output; in --json the site list is also part of the JSON). Returns the exit status:
// 0 when every site answered, 1 when the query failed or no site answered, 3 when the result
// is partial (some sites missing).
int runFederatedQueryCommand(const FederatedQueryArgs& args);

struct FederationDemoArgs {
  uint32_t sites = 3;
  uint64_t rows = 3000;  // whole study
  uint64_t seed = 1;
  std::string workdir;  // default: a fresh temporary directory, removed afterwards
  bool keep = false;    // keep the directory
  std::string query = "count, mean(age), mean(bmi) by arm";
};
// The main job: a 3-site federation on loopback (generated data split across sites, fresh keys
// and configs in a temporary directory, trialmesh-node child processes), one federated query
// with its result, then a clean shutdown. Returns the exit status.
int runFederationDemo(const FederationDemoArgs& args);

}  // namespace trialmesh::cli
