// Ethics and audit commands of the `trialmesh` CLI (issue #4; docs/ethics.md):
//   trialmesh ethics sign --approval approval.toml --identity committee.key --out F.signed
//   trialmesh ethics submit --members M --identity K --study S F.signed
//   trialmesh ethics show F.signed
//   trialmesh ethics list --members M --identity K (--node N | --study S) [--json]
//   trialmesh ethics revoke --members M --identity committee.key --study S --version V
//                           --reason "..." [--as board.key]
//   trialmesh audit verify --node N --members M --identity K
//   trialmesh audit export --node N --members M --identity K [--study S] [--from D] [--to D]
//                          [--format csv|json]
//   trialmesh audit tail --node N --members M --identity K [--count N] [--interval-ms MS]
// Exit status: 0 success, 1 failure (the reason on stderr), 2 bad usage.
#pragma once

#include <CLI/CLI.hpp>

namespace trialmesh::cli {

void addEthicsCommands(CLI::App& app, int& exitCode);  // cmd_ethics.cc
void addAuditCommands(CLI::App& app, int& exitCode);   // cmd_audit.cc
// `ethics list` (cmd_ethics_list.cc), added to the `ethics` subcommand.
void addEthicsListCommand(CLI::App& ethics, int& exitCode);

}  // namespace trialmesh::cli
