// The `trialmesh` command-line client: one registration function per group of subcommands.
// main.cc only wires them into CLI11. Each subcommand prints its result on stdout, errors on
// stderr, and sets a non-zero exit status on failure.
#pragma once

#include <CLI/CLI.hpp>

namespace trialmesh::cli {

// Exit codes (documented in --help): 0 success, 1 the operation failed (bad data, refused
// query, I/O error), 2 bad command-line usage.
inline constexpr int kExitFailure = 1;

// Site admin: gen, import, datasets, dict.
void addSiteCommands(CLI::App& app, int& exitCode);
// Coordinator: query.
void addQueryCommands(CLI::App& app, int& exitCode);
// Live operations: backup, restore (import through a node is part of `import`).
void addLiveOpsCommands(CLI::App& app, int& exitCode);
// The main job: demo.
void addDemoCommand(CLI::App& app, int& exitCode);
// The local web application: console (cmd_console.cc, tools/console).
void addConsoleCommand(CLI::App& app, int& exitCode);

}  // namespace trialmesh::cli
