// `trialmesh watch`: a standing surveillance query (issue #15 item 3; docs/surveillance.md,
// "Standing queries"). A long-running coordinator process for systemd: SIGTERM/SIGINT stop it
// after the evaluation in progress; READY=1 is sent after the first evaluation.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cctype>
#include <charconv>
#include <memory>
#include <sstream>

#include "crypto/identity.h"
#include "node/config.h"
#include "node/ops/metrics.h"
#include "node/ops/ops_server.h"
#include "node/watcher.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/federation_commands.h"
#include "tools/trialmesh/passphrase.h"

namespace trialmesh::cli {
namespace {

std::atomic<bool> gStop{false};
static_assert(std::atomic<bool>::is_always_lock_free);  // set from a signal handler
extern "C" void onStopSignal(int) { gStop.store(true); }

// "24h", "15m", "30s", "200ms": a positive number and a unit.
Result<std::chrono::milliseconds> parseDuration(const std::string& flag, const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, n);
  const std::string unit = text.substr(digits);
  int64_t scale = 0;
  if (unit == "ms") scale = 1;
  if (unit == "s") scale = 1000;
  if (unit == "m" || unit == "min") scale = 60'000;
  if (unit == "h") scale = 3'600'000;
  if (unit == "d") scale = 86'400'000;
  if (digits == 0 || ec != std::errc() || end != text.data() + digits || scale == 0 || n <= 0 ||
      n > INT64_MAX / scale) {
    return Status::invalidArgument(flag + " '" + text +
                                   "' is not a duration: write a positive whole number and a unit "
                                   "(ms, s, m, h, d), e.g. 24h or 200ms");
  }
  return std::chrono::milliseconds(n * scale);
}

// The --on-alert command in argv form: split on blanks, never given to a shell.
std::vector<std::string> splitCommand(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

struct WatchArgs {
  std::string text;
  std::string study;
  std::string members;
  std::string identity;
  std::string passphraseFile;
  std::string every = "24h";
  std::string poll = "60s";
  std::string deadline = "30s";
  std::string state;
  std::string onAlert;
  std::string onAlertTimeout = "10s";
  std::string opsListen;
  bool once = false;
};

int runWatch(const WatchArgs& a) {
  auto every = parseDuration("--every", a.every);
  if (!every) return fail(every.status());
  auto poll = parseDuration("--poll", a.poll);
  if (!poll) return fail(poll.status());
  auto deadline = parseDuration("--deadline", a.deadline);
  if (!deadline) return fail(deadline.status());
  auto hookTimeout = parseDuration("--on-alert-timeout", a.onAlertTimeout);
  if (!hookTimeout) return fail(hookTimeout.status());
  auto members = node::loadMembers(a.members);
  if (!members) return fail(members.status());
  auto identity = crypto::loadIdentity(a.identity, passphraseProvider(a.passphraseFile));
  if (!identity) return fail(identity.status().withContext(a.identity));
  const node::Member* me = members->findByKey(identity->pub);
  if (me == nullptr || me->role != node::Role::kCoordinator) {
    return fail(Status::permissionDenied(a.identity + " (" + identity->pub.toText() +
                                         ") is not a coordinator in " + a.members +
                                         "; sites refuse queries and alerts from anyone else"));
  }
  node::WatchOptions o;
  o.every = *every;
  o.pollEvery = *poll;
  o.deadline = *deadline;
  o.stateDir = a.state;
  o.onAlert = splitCommand(a.onAlert);
  o.onAlertTimeout = *hookTimeout;
  // Declared before the watcher, so they outlive it.
  ops::Registry registry;
  ops::OpsServer ops;
  if (!a.opsListen.empty()) {
    auto port = ops.start(a.opsListen, registry, {});
    if (!port) return fail(port.status().withContext("--ops-listen"));
    spdlog::info("metrics on http://{}/metrics (port {})", a.opsListen, *port);
    o.metrics = &registry;
  }
  auto watcher = node::Watcher::open(*identity, std::move(*members), {a.study, a.text}, o);
  if (!watcher) return fail(watcher.status());
  if (a.once) {
    auto report = (*watcher)->evaluate();
    if (!report) return fail(report.status());
    std::printf("%zu alarm(s), %zu new alert(s)%s\n", report->alarms, report->newAlerts.size(),
                report->evaluated ? "" : " (not evaluated)");
    for (const auto& p : report->newAlerts) std::printf("  new alert: %s\n", p.c_str());
    if (!report->evaluated) return fail(Status::unavailable(report->problem));
    return 0;
  }
  struct sigaction sa {};
  sa.sa_handler = onStopSignal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  spdlog::info("watching study {} every {} (data refresh checked every {}): {}", a.study, a.every,
               a.poll, a.text);
  Status s = (*watcher)->run(gStop);
  if (!s.isOk()) return fail(s);
  spdlog::info("stopped");
  return 0;
}

}  // namespace

void addWatchCommand(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<WatchArgs>();
  CLI::App* w = app.add_subcommand(
      "watch",
      "Standing surveillance query: evaluate a surveil(...) query on a schedule and on data\n"
      "refresh, and deliver each new alarm as a signed alert to every site of the study\n"
      "(docs/surveillance.md, \"Standing queries\").");
  w->add_option("query", args->text, "The surveil(...) query")->required();
  w->add_option("--study", args->study, "Study")->required();
  w->add_option("--members", args->members, "Members file")->required();
  w->add_option("--identity", args->identity, "Coordinator secret key file")->required();
  w->add_option("--passphrase-file", args->passphraseFile,
                "File holding the key's passphrase (else $TRIALMESH_PASSPHRASE)");
  w->add_option("--state", args->state,
                "State directory: remembers the alerts raised (no duplicate after a restart)")
      ->required();
  w->add_option("--every", args->every, "Evaluation schedule, e.g. 24h, 15m, 200ms (default 24h)");
  w->add_option("--poll", args->poll,
                "How often the sites' dataset versions are checked for new data (default 60s)");
  w->add_option("--deadline", args->deadline, "Deadline of one evaluation (default 30s)");
  w->add_option("--on-alert", args->onAlert,
                "Command run for each new alert with the alert JSON on stdin; split on blanks, "
                "no shell");
  w->add_option("--on-alert-timeout", args->onAlertTimeout,
                "Kill the --on-alert command after this long (default 10s)");
  w->add_option("--ops-listen", args->opsListen,
                "Serve /metrics and /healthz here (e.g. 127.0.0.1:9402): evaluations, alerts "
                "raised, --on-alert failures");
  w->add_flag("--once", args->once, "Evaluate once, deliver new alerts, and exit");
  w->callback([args, &exitCode] { exitCode = runWatch(*args); });
}

}  // namespace trialmesh::cli
