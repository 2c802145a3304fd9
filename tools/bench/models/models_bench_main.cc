// trialmesh-bench-models: time per federated model fit (issue #6) against real trialmesh-node
// processes on 127.0.0.1 (node/local_federation.h), for N sites x R rows per site of the
// generated LUNG-7 study: Cox (Efron) and logistic fits to convergence, with the rounds and
// iterations, then the site's own work per round (the kernel, timed in-process on one site's
// store after the federation stops). Prints a markdown report for BENCHMARKS.md.
//
//   trialmesh-bench-models                       # 20 unequal sites + 10 x 100k, Cox, 5 covariates
//   trialmesh-bench-models --sites 3,10 --unequal-sites 0 --covariates 8 --logistic  # issue #6
//   trialmesh-bench-models --sites 10 --rows-per-site 1000000 --unequal-sites 0
//       --quantiles --no-models                   # quantiles over 10 x 1M (issue #11)
//   trialmesh-bench-models --sites 150 --rows-per-site 200 --unequal-sites 0 --surveil
//       --no-models --aggregation secure          # 150-site surveillance (issue #15)
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <thread>
#include "common/allocator.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "node/model_runner.h"
#include "query/engine.h"
#include "query/model_runner.h"
#include "query/query.h"
#include "query/surveil.h"
#include "storage/store.h"
#include "tools/bench/machine.h"
#include "tools/bench/models/round_breakdown.h"

namespace {

using namespace trialmesh;
using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string loadAverage() {
  double l[3] = {0, 0, 0};
  if (::getloadavg(l, 3) != 3) return "unknown";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f %.2f %.2f", l[0], l[1], l[2]);
  return buf;
}

// The issue's 5 design columns (issue #11): age and bmi numeric, sex, arm and smoker two-level
// (one column each); and the 8-column model of issue #6 (ecog 0..4 adds four), by --covariates 8.
constexpr const char* kCovariates5 = "age + sex + arm + smoker + bmi";
constexpr const char* kCovariates8 = "age + sex + arm + ecog + smoker";

// One federation the bench runs: equal sites (rowsPerSite each) or explicit sizes.
struct Shape {
  std::string label;
  uint32_t sites = 0;
  uint64_t rowsPerSite = 0;        // equal sites
  std::vector<uint64_t> siteRows;  // unequal sites (largest first)
  uint64_t rows() const {
    uint64_t n = rowsPerSite * sites;
    for (uint64_t r : siteRows) n += r;
    return n;
  }
};

struct Options {
  std::vector<Shape> shapes;
  int repeat = 3;
  std::string workdir;
  std::vector<std::string> modes;
  std::string covariates;
  bool logistic = false;
  bool dropout = true;
  bool rReference = true;
  bool models = true;      // !--no-models
  bool quantiles = false;  // --quantiles
  bool surveil = false;    // --surveil
};

struct Timing {
  std::vector<double> ms;
  double min() const { return *std::min_element(ms.begin(), ms.end()); }
  double median() {
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }
};

std::string join(const std::vector<double>& v) {
  std::string out;
  for (double x : v) out += (out.empty() ? "" : ", ") + std::to_string(std::lround(x));
  return out;
}

// R's coxph on the pooled rows of the federation's site CSVs: the median of 3 fits (seconds of
// system.time, elapsed), the CSV reading excluded. Empty when Rscript is missing or fails.
std::string rCoxReference(const node::LocalFederation& fed) {
  const std::string script = fed.directory() + "/coxph.R";
  {
    std::string csvs;
    for (size_t i = 0; i < fed.siteCount(); ++i)
      csvs += (csvs.empty() ? "\"" : ", \"") + fed.siteCsvPath(i) + "\"";
    FILE* f = std::fopen(script.c_str(), "w");
    if (f == nullptr) return "";
    std::fprintf(f,
                 "suppressMessages(library(survival))\n"
                 "d <- do.call(rbind, lapply(c(%s), read.csv))\n"
                 "t <- sapply(1:3, function(i) system.time(coxph(Surv(AVAL, EVENT) ~ AGE + SEX "
                 "+ ARM + SMOKER + BMI, data = d, ties = \"efron\"))[[\"elapsed\"]])\n"
                 "cat(sprintf(\"%%.0f\", 1000 * median(t)))\n",
                 csvs.c_str());
    std::fclose(f);
  }
  const std::string cmd = "Rscript --vanilla " + script + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  char buf[64] = {0};
  const size_t got = std::fread(buf, 1, sizeof buf - 1, p);
  const int rc = ::pclose(p);
  return rc == 0 && got > 0 ? std::string(buf, got) : "";
}

// One fit as a user runs it: fitFederatedModel over the sites that can take part. `rounds`
// counts every round sent, those of a fit abandoned after a dropout included.
struct FitRun {
  double ms = 0;
  uint32_t rounds = 0;
  uint32_t fits = 0;
  int iterations = 0;
  size_t contributed = 0;
  std::vector<std::string> contributors;
  std::vector<double> roundMs;
};

Result<FitRun> fitOnce(node::CoordinatorSession& session, const query::Query& q,
                       const std::function<void(uint32_t, uint32_t)>& beforeRound = {}) {
  FitRun run;
  node::FederatedModelOptions o;
  o.deadline = std::chrono::seconds(120);
  Clock::time_point roundStart;
  // Time spent in the caller's hook (killing a site and waiting for the kernel to reap it) is
  // the crash, not the fit's work: it is left out of the fit's time.
  double hookMs = 0;
  o.beforeRound = [&](uint32_t fit, uint32_t round) {
    if (run.rounds > 0) run.roundMs.push_back(msSince(roundStart));
    if (beforeRound) {
      const auto h = Clock::now();
      beforeRound(fit, round);
      hookMs += msSince(h);
    }
    ++run.rounds;
    roundStart = Clock::now();
  };
  const auto t0 = Clock::now();
  auto fit = node::fitFederatedModel(session, node::LocalFederation::kStudy, q, o);
  run.ms = msSince(t0) - hookMs;
  if (run.rounds > 0) run.roundMs.push_back(msSince(roundStart));
  if (!fit) return fit.status();
  run.fits = fit->sites ? fit->sites->fits : 1;
  run.iterations = fit->cox ? fit->cox->iterations : fit->logistic->iterations;
  if (fit->sites)
    for (const auto& s : fit->sites->sites)
      if (s.contributed) run.contributors.push_back(s.site);
  run.contributed = run.contributors.size();
  return run;
}

int runShape(const Shape& shape, const std::string& mode, const Options& opt,
             std::vector<std::string>& notes) {
  const std::string dir = opt.workdir + "/models-" + std::to_string(shape.sites) + "-" + mode +
                          (shape.siteRows.empty() ? "" : "-unequal");
  std::filesystem::remove_all(dir);
  node::LocalFederationOptions o;
  o.directory = dir;
  o.sites = shape.sites;
  o.seed = 6;
  o.logFormat = "plain";
  o.aggregation =
      mode == "plain" ? ethics::AggregationMode::kPlain : ethics::AggregationMode::kSecure;
  if (shape.siteRows.empty()) {
    o.rows = shape.rowsPerSite * shape.sites;
  } else {
    // The generator gives site j a share (2 * sites - j) / sum; ask enough rows that every
    // site has at least its size, then LocalFederation keeps the first siteRows[j].
    uint64_t sum = 0;
    for (uint32_t j = 0; j < shape.sites; ++j) sum += 2ULL * shape.sites - j;
    uint64_t rows = 0;
    for (uint32_t j = 0; j < shape.sites; ++j)
      rows = std::max<uint64_t>(
          rows, (shape.siteRows[j] * sum) / (2ULL * shape.sites - j) * 11 / 10 + 100);
    o.rows = rows;
    o.siteRows = shape.siteRows;
  }
  auto fed = node::LocalFederation::create(o);
  if (!fed) {
    std::fprintf(stderr, "error: %s\n", fed.status().toString().c_str());
    return 1;
  }
  if (Status s = (*fed)->start(std::chrono::seconds(120)); !s.isOk()) {
    std::fprintf(stderr, "error: %s\n", s.toString().c_str());
    return 1;
  }
  const std::string prefix = shape.label + ", " + mode;
  std::string lastCoxRound;
  std::vector<std::pair<std::string, std::string>> models = {
      {"Cox (Efron)", "coxph(time, event ~ " + opt.covariates + ")"}};
  if (opt.logistic)
    models.push_back({"logistic", "glm(event ~ " + opt.covariates + ", family = binomial)"});
  {
    node::CoordinatorSession session((*fed)->coordinator(), (*fed)->members());
    (void)session.connect(node::LocalFederation::kStudy, std::chrono::seconds(20));
    auto row = [&](const std::string& label, const FitRun& last, Timing t) {
      std::printf("| %s | %u | %zu | %llu | %s | %s | %u | %u | %d | %.0f | %.0f | %s |\n",
                  shape.label.c_str(), shape.sites, last.contributed,
                  static_cast<unsigned long long>(shape.rows()), mode.c_str(), label.c_str(),
                  last.rounds, last.fits, last.iterations, t.min(), t.median(),
                  loadAverage().c_str());
      std::fflush(stdout);
    };
    Timing coxClean;
    std::vector<std::string> coxContributors;
    if (opt.quantiles) {
      // The floor: one round reading the column at every site (count(age): a scan, no sort).
      {
        Timing t;
        FitRun last;
        for (int r = 0; r < opt.repeat; ++r) {
          node::FederatedQueryOptions o;
          o.deadline = std::chrono::seconds(120);
          const auto t0 = Clock::now();
          auto result = session.query(node::LocalFederation::kStudy, "count(age)", o);
          if (!result) {
            std::fprintf(stderr, "error: count(age): %s\n", result.status().toString().c_str());
            return 1;
          }
          t.ms.push_back(msSince(t0));
          last.rounds = result->rounds;
          last.fits = 1;
          last.contributed = result->answered();
        }
        row("count(age): one scan round, the floor", last, t);
      }
      // Exact quantiles (issue #11): node::federatedQuantileQuery, every round through the
      // sites as a user's `trialmesh query 'median(age)'` runs it.
      for (const char* text : {"median(age)", "quantile(bmi, c(0.25, 0.5, 0.75))"}) {
        auto q = query::parseQuery(text);
        Timing t;
        FitRun last;
        for (int r = 0; r < opt.repeat; ++r) {
          node::FederatedModelOptions o;
          o.deadline = std::chrono::seconds(120);
          const auto t0 = Clock::now();
          auto result = node::federatedQuantileQuery(session, node::LocalFederation::kStudy, *q, o);
          if (!result) {
            std::fprintf(stderr, "error: %s: %s\n", text, result.status().toString().c_str());
            return 1;
          }
          t.ms.push_back(msSince(t0));
          last.rounds = static_cast<uint32_t>(result->roundQueries.size());
          last.fits = result->sites ? result->sites->fits : 1;
          last.contributed = 0;
          if (result->sites)
            for (const auto& site : result->sites->sites) last.contributed += site.contributed;
        }
        row(text, last, t);
      }
    }
    if (opt.surveil) {
      // Region scale (issue #15 item 4): the weekly series and Farrington detection as
      // `trialmesh query` runs them (one-shot: a handshake with every site, the count query,
      // detection at the coordinator), and over the open session (no handshakes).
      // b = 3 years back: the generated randomization dates span 4 years (210 ISO weeks).
      for (const char* text :
           {"count by week(randdt)", "surveil(randdt, method = \"farrington\", b = 3)",
            "surveil(randdt, method = \"farrington_improved\", b = 3)"}) {
        auto request = query::parseSurveil(text);
        if (!request) {
          std::fprintf(stderr, "error: %s: %s\n", text, request.status().toString().c_str());
          return 1;
        }
        const std::string countText = *request ? (*request)->countQuery : std::string(text);
        for (const bool oneShot : {true, false}) {
          Timing t;
          FitRun last;
          for (int r = 0; r < opt.repeat; ++r) {
            node::FederatedQueryOptions o;
            o.deadline = std::chrono::seconds(120);
            const auto t0 = Clock::now();
            auto result = oneShot
                              ? node::runFederatedQuery((*fed)->coordinator(), (*fed)->members(),
                                                        node::LocalFederation::kStudy, countText, o)
                              : session.query(node::LocalFederation::kStudy, countText, o);
            if (!result || !result->table) {
              std::fprintf(stderr, "error: %s: %s\n", text,
                           result ? "no table" : result.status().toString().c_str());
              return 1;
            }
            if (*request) {
              auto detected = query::applySurveil(*result->table, **request);
              if (!detected) {
                std::fprintf(stderr, "error: %s: %s\n", text, detected.status().toString().c_str());
                return 1;
              }
            }
            t.ms.push_back(msSince(t0));
            last.rounds = 1;
            last.fits = 1;
            last.contributed = result->answered();
          }
          row(std::string(text) + (oneShot ? ", one-shot (as `trialmesh query`)" : ", session"),
              last, t);
        }
      }
    }
    if (!opt.models) models.clear();
    for (const auto& [label, text] : models) {
      auto q = query::parseQuery(text);
      Timing t;
      FitRun last;
      for (int r = 0; r < opt.repeat; ++r) {
        auto run = fitOnce(session, *q);
        if (!run) {
          std::fprintf(stderr, "error: %s: %s\n", text.c_str(), run.status().toString().c_str());
          return 1;
        }
        t.ms.push_back(run->ms);
        last = *run;
      }
      if (label == models.front().first) {
        coxClean = t;
        coxContributors = last.contributors;
      }
      notes.push_back("- " + prefix + ", " + label +
                      ": rounds of the last fit (ms): " + join(last.roundMs));
      row(label, last, t);
    }
    if (auto q = query::parseQuery(opt.models ? models.front().second : ""); q)
      if (auto fit = query::fitModel(
              *q, node::federatedRoundRunner(session, node::LocalFederation::kStudy));
          fit && fit->cox)
        lastCoxRound = fit->roundQueries.back();
    if (opt.dropout && opt.models) {
      // A contributing site killed before the first round 3 sent (in plain mode the fit has
      // already restarted once without the sites below the per-site rule), so the fit restarts
      // without it; the site is started again after each fit (the session reconnects to it).
      // The median contributor: a mid-sized site of the unequal federation.
      size_t killed = 0;
      const std::string& victim = coxContributors[coxContributors.size() / 2];
      while (killed + 1 < (*fed)->siteCount() && (*fed)->siteName(killed) != victim) ++killed;
      auto q = query::parseQuery(models.front().second);
      Timing t;
      FitRun last;
      for (int r = 0; r < opt.repeat; ++r) {
        bool stopped = false;
        auto run = fitOnce(session, *q, [&](uint32_t fit, uint32_t round) {
          (void)fit;
          if (round == 3 && !stopped) {
            stopped = true;
            // A crash (SIGKILL), not a graceful stop: the node's orderly shutdown would be
            // counted in the fit's time.
            (*fed)->siteProcess(killed)->signal(SIGKILL);
            (void)(*fed)->siteProcess(killed)->waitFor(std::chrono::seconds(5));
          }
        });
        if (!run) {
          std::fprintf(stderr, "error: dropout fit: %s\n", run.status().toString().c_str());
          return 1;
        }
        t.ms.push_back(run->ms);
        last = *run;
        if (Status s = (*fed)->startSite(killed, std::chrono::seconds(60)); !s.isOk()) {
          std::fprintf(stderr, "error: restarting %s: %s\n", (*fed)->siteName(killed).c_str(),
                       s.toString().c_str());
          return 1;
        }
        // Reconnect now, so the next fit does not pay for it, and warm the restarted site's
        // caches with an untimed fit: every site starts the next dropout fit as warm as in the
        // clean fits it is compared with.
        (void)session.connect(node::LocalFederation::kStudy, std::chrono::seconds(20));
        (void)fitOnce(session, *q);
      }
      const double median = t.median();
      row("Cox, " + (*fed)->siteName(killed) + " killed before round 3", last, t);
      char line[320];
      std::snprintf(line, sizeof line,
                    "- %s: refit after a dropout: median %.0f ms = %.2f clean fits (%.0f ms); "
                    "the fit restarted %u time(s), %u rounds sent in all (the SIGKILL and the "
                    "wait for the kernel to reap the site are not counted)",
                    prefix.c_str(), median, median / coxClean.median(), coxClean.median(),
                    last.fits - 1, last.rounds);
      notes.push_back(line);
      notes.push_back("- " + prefix + ": rounds of the last dropout fit (ms; the round the site " +
                      "was killed in, then the restart's): " + join(last.roundMs));
    }
    session.close();
  }
  (*fed)->stop();
  if (opt.rReference && opt.models) {
    const std::string r = rCoxReference(**fed);
    notes.push_back("- " + prefix + ": R 4.2 coxph (Efron, " + opt.covariates + ") on the pooled " +
                    std::to_string(shape.rows()) + " rows, in memory: " +
                    (r.empty() ? std::string("not run (Rscript missing or failed)")
                               : "median of 3 fits " + r + " ms"));
  }
  // The site's share of a round: one cox_sums round on site 1's store, in-process.
  storage::StoreOptions so;
  so.createIfMissing = false;
  auto store = storage::Store::open((*fed)->siteDirectory(0) + "/store", so);
  if (store && !lastCoxRound.empty()) {
    auto source = (*store)->openDataset(node::LocalFederation::kDataset);
    auto q = query::parseQuery(lastCoxRound);
    if (source && q) {
      auto bound = query::bindQuery(*q, (*source)->dictionary());
      // A Newton round as a site runs it: the design and the row order come from the cache an
      // earlier round of the fit filled (ExecOptions::cacheKey).
      query::ExecOptions cached;
      cached.cacheKey = "bench-models@" + dir;
      std::vector<double> warm;
      for (int r = 0; bound && r < 11; ++r) {
        const auto t0 = Clock::now();
        auto p = query::execute(*bound, **source, cached);
        if (r > 0) warm.push_back(msSince(t0));
        if (!p) break;
      }
      std::sort(warm.begin(), warm.end());
      if (mode == "secure" && shape.siteRows.empty()) {
        std::string lines = bench::secureRoundBreakdown(**source, lastCoxRound, shape.sites, 1.0,
                                                        std::thread::hardware_concurrency());
        lines.pop_back();
        notes.push_back(std::string("- ") + prefix + ":\n  " + lines.substr(2));
      }
      if (!warm.empty()) {
        char line[256];
        std::snprintf(line, sizeof line,
                      "- %s: one cached cox_sums round on the largest site (in-process, as a "
                      "fit's later rounds run): min %.1f ms, median %.1f ms",
                      prefix.c_str(), warm.front(), warm[warm.size() / 2]);
        notes.push_back(line);
      }
    }
  }
  fed->reset();
  std::filesystem::remove_all(dir);
  return 0;
}

int run(const Options& opt) {
  std::printf("## Models (issue #11): trialmesh-bench-models\n\n");
  std::printf("%s", bench::machineDescription(TRIALMESH_BUILD_TYPE).c_str());
  std::printf("- Load average at start: %s (shared machine: other jobs run; numbers are noisy)\n",
              loadAverage().c_str());
  std::printf(
      "- aggregation: secure = masked rounds, cox times on the approval's grid (time_bin 1, "
      "whole days: exact); plain = each site's sums visible to the coordinator\n");
  std::printf(
      "- covariates: %s; fits through node::fitFederatedModel (the sites that can "
      "take part), each repeated %d times (min and median shown)\n",
      opt.covariates.c_str(), opt.repeat);
  for (const Shape& s : opt.shapes) {
    std::string sizes;
    for (uint64_t r : s.siteRows) sizes += (sizes.empty() ? "" : ", ") + std::to_string(r);
    std::printf("- %s: %u sites, %s\n", s.label.c_str(), s.sites,
                sizes.empty() ? (std::to_string(s.rowsPerSite) + " rows each").c_str()
                              : ("rows per site " + sizes).c_str());
  }
  std::printf(
      "\n| federation | sites | contributed | rows | aggregation | model | rounds | fits | "
      "iterations | min ms | median ms | load avg |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<std::string> notes;
  for (const Shape& shape : opt.shapes)
    for (const std::string& mode : opt.modes)
      if (int rc = runShape(shape, mode, opt, notes); rc != 0) return rc;
  std::printf("\n");
  for (const auto& l : notes) std::printf("%s\n", l.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  trialmesh::retainFreedMemoryForReuse();
  CLI::App app{"trialmesh-bench-models: federated Cox (and logistic) fit times (issues #6, #11)"};
  std::vector<uint32_t> sites{10};
  uint64_t rowsPerSite = 100000;
  // 20 sites from 1 to 2,584 rows (Fibonacci-like, as multicenter trials recruit).
  std::vector<uint64_t> unequal{2584, 1597, 1000, 610, 377, 233, 144, 100, 89, 55,
                                34,   21,   13,   10,  8,   5,   4,   3,   2,  1};
  int covariates = 5;
  Options opt;
  opt.workdir = std::filesystem::temp_directory_path().string();
  opt.modes = {"secure", "plain"};
  app.add_option("--sites", sites, "Equal-site federations to run, e.g. 3,10 (none: 0)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--rows-per-site", rowsPerSite, "Rows per site of the equal-site federations")
      ->capture_default_str();
  app.add_option("--unequal-sites", unequal,
                 "Rows of each site of the unequal federation, largest first (none: 0)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--covariates", covariates,
                 "5: age + sex + arm + smoker + bmi (issue #11); 8: age + sex + arm + ecog + "
                 "smoker (issue #6)")
      ->check(CLI::IsMember({5, 8}))
      ->capture_default_str();
  app.add_flag("--logistic", opt.logistic, "Also fit the logistic model on the same covariates");
  app.add_flag("!--no-dropout", opt.dropout, "Skip the refit after a dropout");
  app.add_flag("!--no-r", opt.rReference, "Skip R's coxph reference time");
  app.add_flag("!--no-models", opt.models, "Skip the model fits");
  app.add_flag("--quantiles", opt.quantiles,
               "Also time median(age) and quantile(bmi, c(0.25, 0.5, 0.75)) (issue #11)");
  app.add_flag("--surveil", opt.surveil,
               "Also time count by week(randdt) and Farrington detection, one-shot and in a "
               "session (issue #15: --sites 150 --rows-per-site 200)");
  app.add_option("--repeat", opt.repeat, "Fits per model")->capture_default_str();
  app.add_option("--workdir", opt.workdir, "Scratch directory")->capture_default_str();
  app.add_option("--aggregation", opt.modes, "Approval modes to run: secure, plain")
      ->delimiter(',')
      ->check(CLI::IsMember({"secure", "plain"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  opt.repeat = std::max(1, opt.repeat);
  opt.covariates = covariates == 5 ? kCovariates5 : kCovariates8;
  unequal.erase(std::remove(unequal.begin(), unequal.end(), 0u), unequal.end());
  if (!unequal.empty()) {
    if (unequal.size() < 2 || unequal.size() > 99) {
      std::fprintf(stderr, "error: --unequal-sites needs 2 to 99 sizes, got %zu\n", unequal.size());
      return 2;
    }
    std::sort(unequal.rbegin(), unequal.rend());  // the generator's larger sites come first
    Shape s;
    s.label = "unequal";
    s.sites = static_cast<uint32_t>(unequal.size());
    s.siteRows = unequal;
    opt.shapes.push_back(s);
  }
  for (uint32_t n : sites) {
    if (n == 0) continue;
    Shape s;
    s.label = std::to_string(n) + " x " + std::to_string(rowsPerSite);
    s.sites = n;
    s.rowsPerSite = rowsPerSite;
    opt.shapes.push_back(s);
  }
  return run(opt);
}
