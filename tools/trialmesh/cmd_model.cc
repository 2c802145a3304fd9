// Model fits (lm, glm, coxph) from `trialmesh query`.
#include "tools/trialmesh/model_commands.h"

#include <chrono>
#include <cstdio>

#include "node/coordinator.h"
#include "node/model_runner.h"
#include "tools/plot/plot.h"
#include "tools/trialmesh/cli_status.h"

namespace trialmesh::cli {
namespace {

void printModel(const query::ModelResult& fit, bool json, bool csv) {
  if (json) {
    std::printf("%s\n", query::modelJson(fit).c_str());
  } else if (csv) {
    std::fputs(query::modelCsv(fit).c_str(), stdout);
  } else {
    std::fputs(query::formatModel(fit).c_str(), stdout);
  }
}

}  // namespace

int plotModelTo(const query::ModelResult& fit, const std::string& plotPath) {
  if (plotPath.empty()) return 0;
  if (Status st = plot::plotModel(fit, plotPath); !st.isOk()) return fail(st);
  std::fprintf(stderr, "plot written to %s\n", plotPath.c_str());
  return 0;
}

bool isModelQuery(const std::string& text) {
  auto parsed = query::parseQuery(text);
  return parsed && parsed->select.size() == 1 && query::isModel(parsed->select[0].fn);
}

int runLocalModel(const std::string& text, const storage::ColumnSource& source, unsigned threads,
                  bool json, bool csv, const std::string& plotPath) {
  auto parsed = query::parseQuery(text);
  if (!parsed) return fail(parsed.status());
  query::ExecOptions options;
  options.threads = threads;
  const auto start = std::chrono::steady_clock::now();
  auto fit = query::fitModel(*parsed, query::localRoundRunner(source, options));
  if (!fit) return fail(fit.status());
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  printModel(*fit, json, csv);
  if (!json && !csv) std::printf("fitted locally in %.1f ms\n", ms);
  return plotModelTo(*fit, plotPath);
}

namespace {

// A federated statement fitted in rounds over the sites that can take part (`run`: a model fit
// or a quantile select over one coordinator session), printed by `print`; --deadline-ms bounds
// every round and any restart after a dropout.
template <typename Run, typename Print>
int runFederatedRounds(const std::string& text, const crypto::Identity& identity,
                       const node::Members& members, const std::string& study, int64_t deadlineMs,
                       bool json, bool csv, const char* done, Run run, Print print) {
  auto parsed = query::parseQuery(text);
  if (!parsed) return fail(parsed.status());
  node::CoordinatorSession session(identity, members);
  node::FederatedModelOptions options;
  options.deadline = std::chrono::milliseconds(deadlineMs);
  const auto start = std::chrono::steady_clock::now();
  auto result = run(session, *parsed, options);
  session.close();
  if (!result) return fail(result.status());
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  print(*result, json, csv);
  if (!json && !csv)
    std::printf("study %s: %s across the federation in %.1f ms\n", study.c_str(), done, ms);
  return 0;
}

}  // namespace

int runFederatedModel(const std::string& text, const crypto::Identity& identity,
                      const node::Members& members, const std::string& study, int64_t deadlineMs,
                      bool json, bool csv, const std::string& plotPath) {
  int plotted = 0;
  const int status = runFederatedRounds(
      text, identity, members, study, deadlineMs, json, csv, "fitted",
      [&](node::CoordinatorSession& session, const query::Query& q,
          const node::FederatedModelOptions& o) {
        return node::fitFederatedModel(session, study, q, o);
      },
      [&](const query::ModelResult& fit, bool j, bool c) {
        printModel(fit, j, c);
        plotted = plotModelTo(fit, plotPath);
      });
  return status != 0 ? status : plotted;
}

bool isQuantileQueryText(const std::string& text) {
  auto parsed = query::parseQuery(text);
  return parsed && query::isQuantileQuery(*parsed);
}

namespace {

void printQuantile(const query::QuantileQueryResult& r, bool json, bool csv) {
  if (json) {
    std::printf("%s\n", query::quantileQueryJson(r).c_str());
  } else if (csv) {
    std::fputs(query::quantileQueryCsv(r).c_str(), stdout);
  } else {
    std::fputs(query::formatQuantileQuery(r).c_str(), stdout);
  }
}

}  // namespace

int runLocalQuantile(const query::Query& q, const storage::ColumnSource& source, unsigned threads,
                     bool json, bool csv) {
  query::ExecOptions options;
  options.threads = threads;
  auto result = query::runQuantileQuery(q, query::localRoundRunner(source, options));
  if (!result) return fail(result.status());
  printQuantile(*result, json, csv);
  return 0;
}

int runFederatedQuantile(const std::string& text, const crypto::Identity& identity,
                         const node::Members& members, const std::string& study, int64_t deadlineMs,
                         bool json, bool csv) {
  return runFederatedRounds(
      text, identity, members, study, deadlineMs, json, csv, "computed",
      [&](node::CoordinatorSession& session, const query::Query& q,
          const node::FederatedModelOptions& o) {
        return node::federatedQuantileQuery(session, study, q, o);
      },
      printQuantile);
}

}  // namespace trialmesh::cli
