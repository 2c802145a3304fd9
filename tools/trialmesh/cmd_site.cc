// Site admin commands: gen, import, datasets, dict.
#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "storage/dictionary.h"
#include "storage/store.h"
#include "tools/gen/gen.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/commands.h"
#include "tools/trialmesh/live_import.h"
#include "tools/trialmesh/progress.h"
#include "tools/trialmesh/store_access.h"

namespace trialmesh::cli {
namespace {

struct GenArgs {
  uint64_t rows = 1000;
  uint64_t seed = 1;
  uint32_t sites = 3;
  std::string out = ".";
  bool perSite = false;
};

int runGen(const GenArgs& a) {
  gen::GenOptions options{a.rows, a.seed, a.sites};
  std::error_code ec;
  std::filesystem::create_directories(a.out, ec);
  if (ec) return fail(Status::ioError(fmt::format("cannot create {}: {}", a.out, ec.message())));
  if (a.perSite) {
    auto paths = gen::writeTrialDatasetPerSite(options, a.out);
    if (!paths) return fail(paths.status());
    for (const auto& p : *paths) std::printf("%s\n", p.c_str());
    std::printf("%s\n", (std::filesystem::path(a.out) / "dictionary.toml").c_str());
    return 0;
  }
  std::string csv = (std::filesystem::path(a.out) / "trial.csv").string();
  std::string dict = (std::filesystem::path(a.out) / "dictionary.toml").string();
  Status s = gen::writeTrialDataset(options, csv, dict);
  if (!s.isOk()) return fail(s);
  std::printf("%s\n%s\n", csv.c_str(), dict.c_str());
  return 0;
}

struct ImportArgs {
  std::string store;
  std::string dataset;
  std::string dictionary;
  std::string csv;
  size_t maxErrors = 20;
  std::string delimiter = ",";
  std::string encoding = "utf-8";
  std::string duplicateIds = "error";
  std::string viaNode;
};

int runImport(const ImportArgs& a) {
  // The store holds patient rows: every file and directory the import creates is private to
  // the importing user (0600/0700), whatever the shell's umask.
  ::umask(077);
  storage::ImportOptions options;
  auto delimiter = storage::parseCsvDelimiter(a.delimiter);
  if (!delimiter) return fail(delimiter.status());
  auto encoding = storage::parseCsvEncoding(a.encoding);
  if (!encoding) return fail(encoding.status());
  options.csv.delimiter = *delimiter;
  options.csv.encoding = *encoding;
  options.duplicateIds = a.duplicateIds == "warn" ? storage::ImportOptions::DuplicateIds::kWarn
                                                  : storage::ImportOptions::DuplicateIds::kError;
  const LiveImportRequest live{a.dataset,   a.dictionary, a.csv,         a.maxErrors,
                               a.delimiter, a.encoding,   a.duplicateIds};
  if (!a.viaNode.empty()) return runImportViaNode(a.viaNode, live);
  auto dict = storage::Dictionary::loadFile(a.dictionary);
  if (!dict) return fail(dict.status());
  auto store = storage::Store::open(a.store);
  if (!store && store.status().code() == StatusCode::kUnavailable) {
    // A node holds the store: it is the one writer, so the import goes through it.
    auto socket = adminSocketFor(a.store, store.status());
    if (!socket) return fail(socket.status());
    return runImportViaNode(*socket, live);
  }
  if (!store) return fail(store.status());
  ProgressBar bar("importing " + std::filesystem::path(a.csv).filename().string());
  options.maxErrors = a.maxErrors;
  options.progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };
  auto report = (*store)->importCsv(a.dataset, *dict, a.csv, options);
  bar.finish();
  if (!report) return fail(report.status());
  for (const auto& w : report->warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (report->duplicateIds > report->warnings.size()) {
    std::fprintf(stderr, "warning: ... and %llu more repeated subject ids\n",
                 static_cast<unsigned long long>(report->duplicateIds - report->warnings.size()));
  }
  double rate = report->seconds > 0 ? static_cast<double>(report->rows) / report->seconds : 0;
  std::printf("imported %llu rows into dataset '%s' (version %llu) in %.2f s (%.0f rows/s)\n",
              static_cast<unsigned long long>(report->rows), a.dataset.c_str(),
              static_cast<unsigned long long>(report->version), report->seconds, rate);
  return 0;
}

int runDatasets(const std::string& storeDir, bool json) {
  auto store = openStoreForReading(storeDir);
  if (!store) return fail(store.status());
  auto list = (*store)->listDatasets();
  if (!list) return fail(list.status());
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& d : *list) {
      out.push_back({{"name", d.name},
                     {"study", d.study},
                     {"version", d.version},
                     {"rows", d.rows},
                     {"dictionary_hash", d.dictionaryHash},
                     {"source_file", d.sourceFile},
                     {"imported_at_unix", d.importedAtUnixSeconds}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  if (list->empty()) {
    std::printf("no datasets in %s (import one with `trialmesh import`)\n", storeDir.c_str());
    return 0;
  }
  std::printf("%-20s %-12s %8s %12s  %-16s %s\n", "dataset", "study", "version", "rows",
              "dictionary", "source");
  for (const auto& d : *list) {
    std::printf("%-20s %-12s %8llu %12llu  %-16s %s\n", d.name.c_str(), d.study.c_str(),
                static_cast<unsigned long long>(d.version), static_cast<unsigned long long>(d.rows),
                d.dictionaryHash.substr(0, 16).c_str(), d.sourceFile.c_str());
  }
  return 0;
}

int runDictCheck(const std::string& path) {
  auto dict = storage::Dictionary::loadFile(path);
  if (!dict) return fail(dict.status());
  std::printf("study:      %s\nvariables:  %zu\nhash:       %s\n\n", dict->study().c_str(),
              dict->size(), dict->hashHex().c_str());
  std::printf("%-14s %-12s %-12s %-10s %s\n", "variable", "type", "column", "missing", "values");
  for (const auto& v : dict->variables()) {
    std::string values;
    if (v.type == storage::VariableType::kCategorical) {
      for (size_t i = 0; i < v.levels.size(); ++i) values += (i ? ", " : "") + v.levels[i].code;
    } else if (v.type == storage::VariableType::kDate) {
      values =
          fmt::format("{} .. {}", v.min ? storage::formatIsoDate(static_cast<int32_t>(*v.min)) : "",
                      v.max ? storage::formatIsoDate(static_cast<int32_t>(*v.max)) : "");
    } else if (v.type == storage::VariableType::kIdentifier) {
      values = "unique; checked at import, not stored";
    } else if (v.min || v.max) {
      values = fmt::format("{} .. {}", v.min ? fmt::format("{}", *v.min) : "",
                           v.max ? fmt::format("{}", *v.max) : "");
    }
    if (!v.unit.empty()) values += " " + v.unit;
    std::printf("%-14s %-12s %-12s %-10s %s\n", v.name.c_str(), storage::variableTypeName(v.type),
                v.csvColumn.c_str(), v.missingAllowed ? "allowed" : "no", values.c_str());
  }
  return 0;
}

}  // namespace

void addSiteCommands(CLI::App& app, int& exitCode) {
  auto genArgs = std::make_shared<GenArgs>();
  CLI::App* gen = app.add_subcommand(
      "gen", "Write a deterministic synthetic trial dataset (CSV) and its dictionary (TOML)");
  gen->add_option("--rows", genArgs->rows, "Subjects in the whole study")->capture_default_str();
  gen->add_option("--seed", genArgs->seed, "Random seed (same seed, same bytes)")
      ->capture_default_str();
  gen->add_option("--sites", genArgs->sites, "Number of sites (S01..S99, then S100..S999)")
      ->check(CLI::Range(1u, gen::kMaxSites))
      ->capture_default_str();
  gen->add_option("--out", genArgs->out, "Output directory (trial.csv, dictionary.toml)")
      ->capture_default_str();
  gen->add_flag("--per-site", genArgs->perSite, "Write one CSV per site (site-S01.csv, ...)");
  gen->callback([genArgs, &exitCode] { exitCode = runGen(*genArgs); });

  auto importArgs = std::make_shared<ImportArgs>();
  CLI::App* imp = app.add_subcommand(
      "import",
      "Import a CSV export into a dataset of the site store, validating every value against the "
      "study's dictionary. All or nothing: on any error the store is unchanged.");
  imp->add_option("csv", importArgs->csv,
                  "CSV file (RFC 4180; UTF-8 unless --encoding; empty or NA = missing)")
      ->required()
      ->check(CLI::ExistingFile);
  imp->add_option("--store", importArgs->store, "Site store directory (created if missing)")
      ->required();
  imp->add_option("--dataset", importArgs->dataset, "Dataset name, e.g. lung7")->required();
  imp->add_option("--dictionary", importArgs->dictionary, "Study dictionary (TOML)")
      ->required()
      ->check(CLI::ExistingFile);
  imp->add_option("--max-errors", importArgs->maxErrors, "Validation errors to list at most")
      ->capture_default_str();
  imp->add_option("--delimiter", importArgs->delimiter,
                  "Field separator: ',', ';' (European exports), '|' or tab")
      ->capture_default_str();
  imp->add_option("--encoding", importArgs->encoding,
                  "The file's encoding: utf-8, latin1, windows-1252 or gb18030 (also GBK); "
                  "converted to UTF-8 as it is read")
      ->capture_default_str();
  imp->add_option("--duplicate-ids", importArgs->duplicateIds,
                  "A subject id (identifier variable) seen twice: 'error' stops the import, "
                  "'warn' lists the repeats and imports (exports with one row per visit)")
      ->check(CLI::IsMember({"error", "warn"}))
      ->capture_default_str();
  imp->add_option("--via-node", importArgs->viaNode,
                  "Import through the running node's admin socket (node.toml admin_socket). "
                  "Without it, a store held by a node is imported through the socket the node "
                  "advertises in the store directory");
  imp->callback([importArgs, &exitCode] { exitCode = runImport(*importArgs); });

  auto store = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* ds = app.add_subcommand("datasets", "List the datasets of a site store");
  ds->add_option("--store", *store, "Site store directory")->required();
  ds->add_flag("--json", *json, "JSON output");
  ds->callback([store, json, &exitCode] { exitCode = runDatasets(*store, *json); });

  auto dictPath = std::make_shared<std::string>();
  CLI::App* dict = app.add_subcommand("dict", "Check a study dictionary and print its hash");
  dict->add_option("dictionary", *dictPath, "Dictionary file (TOML)")
      ->required()
      ->check(CLI::ExistingFile);
  dict->callback([dictPath, &exitCode] { exitCode = runDictCheck(*dictPath); });
}

}  // namespace trialmesh::cli
