// Standing surveillance queries (issue #15 item 3): a coordinator-side scheduler that evaluates
// one `surveil(...)` query of a study on a schedule and whenever a site's data changes, and
// turns every NEW alarm into a signed alert (node/alert.h) delivered to every site of the study.
//
//   Watcher w(identity, members, {"FLU", "surveil(onset_date, method = \"farrington\") ..."},
//             options);                      // options.stateDir remembers what was alerted
//   w.run(stop);                             // `trialmesh watch`; or w.evaluate() once
//
// Every evaluation is an ordinary signed query (each site checks and audits it, and refuses one
// more frequent than the approval's surveillance_min_interval_ms). For each alarm period not
// alerted before, the watcher signs an alert, records it durably in the state directory, then
// delivers it to each site (retrying sites it did not reach at later evaluations), writes one
// log line and runs the operator's --on-alert command with the alert JSON on stdin. Because the
// state is written before anything leaves, a restarted watcher never raises a period twice.
//
// Data refresh: every `pollEvery` the watcher asks each site for the dataset versions it serves
// (Site.info) and evaluates at once when one changed, otherwise on the `every` schedule.
//
// Thread-safety: one thread (run() or evaluate()); stop may be set from any thread or signal
// handler. Ownership: `identity` must outlive the watcher.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "node/alert.h"
#include "node/config.h"

namespace trialmesh::ops {
class Registry;
}

namespace trialmesh::node {

struct StandingQuery {
  std::string study;
  std::string text;  // a surveil(...) query (docs/surveillance.md)
};

struct WatchOptions {
  std::chrono::milliseconds every{std::chrono::hours(24)};        // evaluation schedule
  std::chrono::milliseconds pollEvery{std::chrono::seconds(60)};  // data-refresh check
  std::chrono::milliseconds deadline{std::chrono::seconds(30)};   // per evaluation
  std::string stateDir;  // REQUIRED: created if missing; holds alerts.json
  // The operator's command run for each new alert, argv form (no shell: alert fields are
  // never interpreted); empty = none. It gets the alert JSON on stdin and is killed after
  // `onAlertTimeout`; a failure is logged and does not stop the watcher.
  std::vector<std::string> onAlert;
  std::chrono::milliseconds onAlertTimeout{std::chrono::seconds(10)};
  // Not owned; when set (the CLI's --ops-listen), the watcher counts in it:
  // trialmesh_watch_evaluations_total{outcome="evaluated"|"failed"},
  // trialmesh_watch_alerts_total (new alerts raised) and
  // trialmesh_watch_on_alert_failures_total. Must outlive the watcher.
  ops::Registry* metrics = nullptr;
};

// What one evaluation did.
struct EvaluationReport {
  bool evaluated = false;              // a table came back (false: refused or no site answered)
  std::string problem;                 // why not, or the sites that did not answer
  size_t alarms = 0;                   // alarm periods in the table
  std::vector<std::string> newAlerts;  // periods alerted for the first time now
  size_t deliveries = 0;               // alert deliveries that succeeded in this evaluation
};

class Watcher {
 public:
  // Validates the query (InvalidArgument when it is not a surveil(...) query) and loads the
  // state directory (IOError/Corruption naming the file).
  static Result<std::unique_ptr<Watcher>> open(const crypto::Identity& identity, Members members,
                                               StandingQuery query, WatchOptions options);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Evaluates once (see above). Errors only for a state directory that cannot be written;
  // everything about sites is in the report.
  Result<EvaluationReport> evaluate();
  // Evaluates at start, then on the schedule and on data refresh, until `stop` is true
  // (checked at least every 100 ms). Tells systemd READY=1 after the first evaluation.
  Status run(const std::atomic<bool>& stop);

  // Alerts raised so far for this query (from the state directory), by period.
  std::vector<std::string> alertedPeriods() const;

  class Impl;

 private:
  explicit Watcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trialmesh::node
