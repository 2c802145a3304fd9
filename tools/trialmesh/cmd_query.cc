// Coordinator commands: query.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>

#include "query/cross_test.h"
#include "query/engine.h"
#include "query/format.h"
#include "query/query.h"
#include "query/stratified_km.h"
#include "query/surveil.h"
#include "storage/store.h"
#include "tools/plot/plot.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/commands.h"
#include "tools/trialmesh/federation_commands.h"
#include "tools/trialmesh/model_commands.h"
#include "tools/trialmesh/store_access.h"

namespace trialmesh::cli {
namespace {

struct QueryArgs {
  std::string text;
  bool local = false;
  std::string store;
  std::string dataset;
  bool json = false;
  bool csv = false;
  std::string plot;  // --plot FILE.svg|FILE.png
  unsigned threads = 0;
  FederatedQueryArgs federated;  // without --local (tools/trialmesh/cmd_federation.cc)
};

void printResult(const query::ResultTable& table, const QueryArgs& a) {
  if (a.json) {
    std::printf("%s\n", query::formatJson(table).c_str());
  } else if (a.csv) {
    std::fputs(query::formatCsv(table).c_str(), stdout);
  } else {
    std::fputs(query::formatTable(table).c_str(), stdout);
  }
}

int runLocalQuery(const QueryArgs& a) {
  // surveil(...) runs as its count query, then detection on the series (query/surveil.h).
  auto surveil = query::parseSurveil(a.text);
  if (!surveil) return fail(surveil.status());
  // chisq(a, b) / fisher(a, b): the count by a, b, then the test (query/cross_test.h).
  auto cross = query::parseCrossTest(a.text);
  if (!cross) return fail(cross.status());
  // km(..., strata = s) by g: the curves, then the km by g and s for the test
  // (query/stratified_km.h).
  auto stratified = query::parseStratifiedKm(a.text);
  if (!stratified) return fail(stratified.status());
  auto parsed = query::parseQuery(*surveil      ? (*surveil)->countQuery
                                  : *cross      ? (*cross)->countQuery
                                  : *stratified ? (*stratified)->curveQuery
                                                : a.text);
  if (!parsed) return fail(parsed.status());
  auto store = openStoreForReading(a.store);  // read-only beside a running node
  if (!store) return fail(store.status());
  auto source = (*store)->openDataset(a.dataset);
  if (!source) return fail(source.status());
  if (parsed->select.size() == 1 && query::isModel(parsed->select[0].fn))
    return runLocalModel(a.text, **source, a.threads, a.json, a.csv, a.plot);
  if (query::isQuantileQuery(*parsed))
    return runLocalQuantile(*parsed, **source, a.threads, a.json, a.csv);
  auto bound = query::bindQuery(*parsed, (*source)->dictionary());
  if (!bound) return fail(bound.status());
  auto start = std::chrono::steady_clock::now();
  query::ExecOptions options;
  options.threads = a.threads;
  auto partial = query::execute(*bound, **source, options);
  if (!partial) return fail(partial.status());
  auto table = query::finalize(*partial, *bound);
  if (!table) return fail(table.status());
  if (*surveil) {
    table = query::applySurveil(*table, **surveil);
    if (!table) return fail(table.status());
  }
  if (*cross) {
    table = query::applyCrossTest(*table, **cross);
    if (!table) return fail(table.status());
  }
  if (*stratified) {
    auto strataQuery = query::parseQuery((*stratified)->strataQuery);
    if (!strataQuery) return fail(strataQuery.status());
    auto strataBound = query::bindQuery(*strataQuery, (*source)->dictionary());
    if (!strataBound) return fail(strataBound.status());
    auto strataPartial = query::execute(*strataBound, **source, options);
    if (!strataPartial) return fail(strataPartial.status());
    auto strataTable = query::finalize(*strataPartial, *strataBound);
    if (!strataTable) return fail(strataTable.status());
    if (Status st = query::applyStratifiedLogRank(*table, *strataTable, **stratified); !st.isOk())
      return fail(st);
  }
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  printResult(*table, a);
  if (!a.json && !a.csv) {
    std::printf("\n%llu rows of dataset '%s' scanned locally in %.1f ms\n",
                static_cast<unsigned long long>(partial->rowsScanned), a.dataset.c_str(), ms);
  }
  if (!a.plot.empty()) {
    if (Status st = plot::plotTable(*table, a.text, a.plot); !st.isOk()) return fail(st);
    std::fprintf(stderr, "plot written to %s\n", a.plot.c_str());
  }
  return 0;
}

}  // namespace

void addQueryCommands(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<QueryArgs>();
  CLI::App* q = app.add_subcommand(
      "query",
      "Run an aggregate query, federated across a study's sites (coordinators) or against "
      "this site's own store (--local). Examples:\n"
      "  trialmesh query --study LUNG-7 --members members.toml --identity coord.key \\\n"
      "      'count, mean(bmi), var(bmi) by arm'\n"
      "  trialmesh query --local --store site1 --dataset lung7 'count, mean(bmi) by arm'\n"
      "  trialmesh query --local --store site1 --dataset lung7 --json \\\n"
      "      'count where age >= 65 and sex = \"F\"'\n"
      "  trialmesh query --local --store site1 --dataset lung7 \\\n"
      "      'coxph(time, event ~ age + sex + arm, ties = efron)'\n"
      "  trialmesh query --local --store site1 --dataset lung7 \\\n"
      "      'km(time, event, times = [180, 365], rmean = 365, strata = ecog) by sex'\n"
      "  trialmesh query --study LUNG-7 --members members.toml --identity coord.key \\\n"
      "      --plot km.svg 'km(time, event) by arm'      (or .png; forest plots, hist)\n"
      "Models (lm, glm with family = binomial, coxph) and exact quantiles ('median(age)',\n"
      "'quantile(age, c(0.25, 0.75))') run as rounds of ordinary queries and\n"
      "print in R's layout (--json / --csv for programs). Under secure aggregation (the\n"
      "default) km and coxph count times on the approval's time_bin grid (docs/privacy.md).\n"
      "Outbreak detection on a weekly series: 'surveil(onset_date, method = \"c1\") where\n"
      "disease = \"influenza\"' (docs/surveillance.md).\n"
      "Language: docs/query-language.md (also accepts the JSON form).");
  q->add_option("query", args->text, "The query, e.g. 'count, mean(bmi), var(bmi) by arm'")
      ->required();
  q->add_option("--study", args->federated.study, "Federated: the study to query, e.g. LUNG-7");
  q->add_option("--members", args->federated.members, "Federated: the federation's members file");
  q->add_option("--identity", args->federated.identity, "Federated: the coordinator's key file");
  q->add_option("--passphrase-file", args->federated.passphraseFile,
                "Federated: file holding the key's passphrase (else env TRIALMESH_PASSPHRASE)");
  q->add_option("--deadline-ms", args->federated.deadlineMs,
                "Federated: wait at most this long for the sites")
      ->capture_default_str();
  q->add_flag("--local", args->local, "Run against this site's own store (needs --store)");
  q->add_option("--store", args->store, "Site store directory (with --local)");
  q->add_option("--dataset", args->dataset, "Dataset to query (with --local)");
  auto* json = q->add_flag("--json", args->json, "Print JSON");
  auto* csv = q->add_flag("--csv", args->csv, "Print CSV");
  json->excludes(csv);
  q->add_option("--plot", args->plot,
                "Also draw the result to FILE.svg or FILE.png: km curves (95% band, censoring "
                "marks, numbers at risk), lm/glm/coxph forest plots, hist and 'count by' bars");
  q->add_option("--threads", args->threads, "Scan threads (0 = all cores)")->capture_default_str();
  q->callback([args, &exitCode] {
    // A wrong extension or a query without a plot is refused before anything runs.
    if (!args->plot.empty()) {
      auto format = plot::plotFormatOf(args->plot);
      Status st = format ? plot::checkPlottable(args->text) : format.status();
      if (!st.isOk()) {
        exitCode = fail(st);
        return;
      }
    }
    if (!args->local) {
      args->federated.plot = args->plot;
      args->federated.text = args->text;
      args->federated.json = args->json;
      args->federated.csv = args->csv;
      exitCode = runFederatedQueryCommand(args->federated);
      return;
    }
    if (args->store.empty() || args->dataset.empty()) {
      exitCode = fail(Status::invalidArgument("--local needs --store DIR and --dataset NAME"));
      return;
    }
    exitCode = runLocalQuery(*args);
  });
}

}  // namespace trialmesh::cli
