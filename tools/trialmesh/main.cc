// trialmesh: the command-line client for trial coordinators, site IT and ethics boards.
#include <CLI/CLI.hpp>

#include "common/allocator.h"
#include "tools/trialmesh/commands.h"
#include "tools/trialmesh/ethics_commands.h"
#include "tools/trialmesh/federation_commands.h"

int main(int argc, char** argv) {
  trialmesh::retainFreedMemoryForReuse();
  CLI::App app{
      "trialmesh: federated aggregate analysis for multicenter clinical trials.\n"
      "Each hospital keeps its records in its own store; coordinators get aggregates only.\n\n"
      "Site IT:      gen, import, datasets, dict, keygen (then run trialmesh-node),\n"
      "              rotate-key, backup, restore\n"
      "Coordinators: query, watch (standing surveillance query), console (a local web\n"
      "application)\n"
      "Ethics:       ethics (sign, submit, show, list, revoke), audit (verify, export, tail)\n"
      "Organiser:    members (sign, verify)\n"
      "Everyone:     demo (a 3-site federation on loopback answering a query)\n\n"
      "Exit status: 0 success, 1 the operation failed, 2 bad usage, 3 partial federated "
      "result (some sites did not answer).",
      "trialmesh"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "trialmesh 0.1.0");
  int exitCode = 0;
  trialmesh::cli::addSiteCommands(app, exitCode);
  trialmesh::cli::addLiveOpsCommands(app, exitCode);
  trialmesh::cli::addQueryCommands(app, exitCode);
  trialmesh::cli::addDemoCommand(app, exitCode);
  trialmesh::cli::addConsoleCommand(app, exitCode);
  trialmesh::cli::addFederationCommands(app, exitCode);
  trialmesh::cli::addWatchCommand(app, exitCode);
  trialmesh::cli::addKeyCommands(app, exitCode);
  trialmesh::cli::addMembersCommands(app, exitCode);
  trialmesh::cli::addEthicsCommands(app, exitCode);
  trialmesh::cli::addAuditCommands(app, exitCode);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  return exitCode;
}
