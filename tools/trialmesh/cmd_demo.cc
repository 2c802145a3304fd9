// The main job, end to end on one machine: generate a synthetic trial, import it into a site
// store, and answer aggregate queries from it.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "query/engine.h"
#include "query/format.h"
#include "query/query.h"
#include "storage/dictionary.h"
#include "storage/store.h"
#include "tools/gen/gen.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/commands.h"
#include "tools/trialmesh/federation_commands.h"
#include "tools/trialmesh/progress.h"

namespace trialmesh::cli {
namespace {

struct DemoArgs {
  uint64_t rows = 0;  // 0: the mode's default
  uint64_t seed = 7;
  std::string workdir;
  bool keep = false;
  bool local = false;  // single-site demo; otherwise cmd_federation.cc's runFederationDemo
  uint32_t sites = 3;  // federated demo only
};

Status runQuery(const storage::ColumnSource& source, const std::string& text) {
  TM_ASSIGN_OR_RETURN(query::Query q, query::parseQuery(text));
  TM_ASSIGN_OR_RETURN(query::BoundQuery bound, query::bindQuery(q, source.dictionary()));
  TM_ASSIGN_OR_RETURN(query::PartialResult partial, query::execute(bound, source));
  TM_ASSIGN_OR_RETURN(query::ResultTable table, query::finalize(partial, bound));
  std::printf("\n$ trialmesh query --local '%s'\n%s", text.c_str(),
              query::formatTable(table).c_str());
  return Status::ok();
}

int runDemo(const DemoArgs& a) {
  namespace fs = std::filesystem;
  fs::path dir = a.workdir;
  bool made = false;
  if (dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "trialmesh-demo-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      return fail(Status::ioError("cannot create a temporary directory under " +
                                  fs::temp_directory_path().string()));
    }
    dir = tmpl;
    made = true;
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::string csv = (dir / "trial.csv").string();
  std::string dictPath = (dir / "dictionary.toml").string();
  std::printf("1. generating %llu subjects of the synthetic LUNG-7 trial in %s\n",
              static_cast<unsigned long long>(a.rows), dir.c_str());
  Status s = gen::writeTrialDataset({a.rows, a.seed, 3}, csv, dictPath);
  if (!s.isOk()) return fail(s);

  auto dict = storage::Dictionary::loadFile(dictPath);
  if (!dict) return fail(dict.status());
  std::printf("2. importing trial.csv into the site store %s (dictionary %s)\n",
              (dir / "store").c_str(), dict->hashHex().substr(0, 16).c_str());
  auto store = storage::Store::open((dir / "store").string());
  if (!store) return fail(store.status());
  ProgressBar bar("importing");
  storage::ImportOptions options;
  options.progress = [&bar](uint64_t done, uint64_t total) { bar.update(done, total); };
  auto report = (*store)->importCsv("lung7", *dict, csv, options);
  bar.finish();
  if (!report) return fail(report.status());
  std::printf("   %llu rows imported as version %llu in %.2f s\n",
              static_cast<unsigned long long>(report->rows),
              static_cast<unsigned long long>(report->version), report->seconds);

  auto source = (*store)->openDataset("lung7");
  if (!source) return fail(source.status());
  std::printf("3. aggregate queries on the site's own data\n");
  for (const char* text :
       {"count where age >= 65 and sex = \"F\"", "count, mean(bmi), sd(bmi) by arm",
        "count by arm, ecog", "hist(age, 20, 100, 10)"}) {
    s = runQuery(**source, text);
    if (!s.isOk()) return fail(s);
  }
  source->reset();
  store->reset();
  if (made && !a.keep) {
    fs::remove_all(dir, ec);
  } else {
    std::printf("\nfiles kept in %s\n", dir.c_str());
  }
  return 0;
}

}  // namespace

void addDemoCommand(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<DemoArgs>();
  CLI::App* demo = app.add_subcommand(
      "demo",
      "The main job on one machine: a 3-site federation on 127.0.0.1 (generated data split "
      "across sites, fresh keys and configs, trialmesh-node processes) answering a federated "
      "query, then a clean shutdown. With --local: one site store, local queries only.");
  demo->add_option("--rows", args->rows,
                   "Subjects to generate in the whole study (default: 3000 federated, 200000 "
                   "with --local)");
  demo->add_option("--seed", args->seed, "Random seed")->capture_default_str();
  demo->add_option("--sites", args->sites,
                   "Sites of the federation (1-99; the generator gives them unequal sizes)")
      ->capture_default_str()
      ->check(CLI::Range(1, 99));
  demo->add_option("--workdir", args->workdir,
                   "Directory for the data, keys and stores (default: a new temporary "
                   "directory, removed afterwards)");
  demo->add_flag("--keep", args->keep, "Keep the temporary directory");
  demo->add_flag("--local", args->local,
                 "Single site: generate, import into one store, run local queries");
  demo->callback([args, &exitCode] {
    if (!args->local) {
      FederationDemoArgs f;
      f.workdir = args->workdir;
      f.keep = args->keep;
      f.seed = args->seed;
      f.sites = args->sites;
      if (args->rows != 0) f.rows = args->rows;
      exitCode = runFederationDemo(f);
      return;
    }
    if (args->rows == 0) args->rows = 200000;
    exitCode = runDemo(*args);
  });
}

}  // namespace trialmesh::cli
