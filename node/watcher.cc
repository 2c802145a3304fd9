#include "node/watcher.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "crypto/hash.h"
#include "node/coordinator.h"
#include "node/ops/metrics.h"
#include "node/ops/sd_notify.h"
#include "query/surveil.h"

extern char** environ;  // the watcher's environment, passed on to the --on-alert command

namespace trialmesh::node {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kStateFile = "alerts.json";

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One alarm period of one standing query, as remembered in the state directory.
struct AlertRecord {
  std::string queryKey;  // hex SHA-256 of study "\n" query text
  std::string period;
  SignedAlert signedAlert;
  std::set<std::string> delivered;  // site names that recorded it
  bool notified = false;            // the --on-alert command ran (or none was configured)
};

Status writeFileDurably(const std::filesystem::path& path, const std::string& text) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::ioError("cannot write " + tmp.string() + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return Status::ioError("cannot write " + tmp.string() + ": " + why);
    }
    done += static_cast<size_t>(n);
  }
  // Durable before the rename, and the rename durable before anything is sent, so a crash
  // leaves either the old or the new state, never a torn one.
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    return Status::ioError("cannot sync " + tmp.string() + ": " + std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::ioError("cannot rename " + tmp.string() + ": " + ec.message());
  const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
  return Status::ok();
}

// Runs `argv` with `input` on stdin, no shell; kills it after `timeout`. OK when it exits 0.
Status runCommand(const std::vector<std::string>& argv, const std::string& input,
                  std::chrono::milliseconds timeout) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return Status::ioError(std::string("cannot create a pipe: ") + std::strerror(errno));
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // posix_spawn, not fork + exec: the watcher has other threads (the session's event loop),
  // and spawn does nothing in the child that is unsafe after a multi-threaded fork.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], STDIN_FILENO);  // dup2 clears CLOEXEC
  // Its own process group, so a timeout kills what it started too (a script's children).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = -1;
  const int spawned = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::notFound("cannot run '" + argv[0] + "': " + std::strerror(spawned));
  }
  ::close(fds[0]);
  // Non-blocking: a command that never reads its stdin must not hang the watcher; the alert is
  // far below a pipe's buffer anyway. SIGPIPE is ignored (Watcher::open), so EPIPE is an error.
  ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  const ssize_t written = ::write(fds[1], input.data(), input.size());
  const int writeErrno = errno;
  ::close(fds[1]);
  const auto until = Clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR)
      return Status::internal(std::string("waitpid failed: ") + std::strerror(errno));
    if (Clock::now() >= until) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return Status::unavailable("'" + argv[0] + "' did not finish within " +
                                 std::to_string(timeout.count()) + " ms; killed");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                              : "signal " + std::to_string(WTERMSIG(status));
    return Status::unavailable("'" + argv[0] + "' failed (" + how + ")");
  }
  if (written != static_cast<ssize_t>(input.size()))
    return Status::ioError("'" + argv[0] +
                           "' exited 0 but did not take the whole alert on stdin (" +
                           std::strerror(writeErrno) + ")");
  return Status::ok();
}

std::string methodLabel(const query::SurveilRequest& r) {
  return r.methodName.empty() ? std::string("surveil") : r.methodName;
}

}  // namespace

class Watcher::Impl {
 public:
  Impl(const crypto::Identity& identity, Members members, StandingQuery query, WatchOptions options,
       query::SurveilRequest request)
      : identity_(identity),
        members_(std::move(members)),
        query_(std::move(query)),
        options_(std::move(options)),
        request_(std::move(request)),
        queryKey_(crypto::toHex(crypto::sha256(query_.study + "\n" + query_.text))),
        session_(identity_, members_) {
    if (options_.metrics != nullptr) {
      ops::Registry& r = *options_.metrics;
      constexpr const char* kEvaluations = "trialmesh_watch_evaluations_total";
      constexpr const char* kEvaluationsHelp =
          "Evaluations of the standing query, by outcome (failed: refused or no table).";
      evaluated_ = &r.counter(kEvaluations, kEvaluationsHelp, {{"outcome", "evaluated"}});
      failed_ = &r.counter(kEvaluations, kEvaluationsHelp, {{"outcome", "failed"}});
      alerts_ = &r.counter("trialmesh_watch_alerts_total",
                           "New surveillance alerts raised (one per alarm period).");
      hookFailures_ = &r.counter("trialmesh_watch_on_alert_failures_total",
                                 "Runs of the --on-alert command that failed or timed out.");
    }
  }

  Status load() {
    std::error_code ec;
    std::filesystem::create_directories(options_.stateDir, ec);
    if (ec)
      return Status::ioError("cannot create state directory " + options_.stateDir + ": " +
                             ec.message());
    const std::filesystem::path path = statePath();
    if (!std::filesystem::exists(path)) return Status::ok();
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in && !in.eof()) return Status::ioError("cannot read " + path.string());
    auto bad = [&](const std::string& why) {
      return Status::corruption(path.string() + ": " + why +
                                " (the watcher's memory of raised alerts; restore it from a "
                                "backup rather than deleting it, or alerts are raised again)");
    };
    nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("alerts") || !j["alerts"].is_array())
      return bad("not a state file (expected {\"alerts\": [...]})");
    for (const auto& a : j["alerts"]) {
      try {
        AlertRecord r;
        r.queryKey = a.at("query_key").get<std::string>();
        r.period = a.at("period").get<std::string>();
        r.signedAlert.bytes = a.at("alert").get<std::string>();
        auto sig = crypto::fromHex(a.at("signature").get<std::string>());
        if (!sig || sig->size() != crypto::kSignatureBytes) return bad("a signature is malformed");
        std::copy(sig->begin(), sig->end(), r.signedAlert.signature.begin());
        for (const auto& s : a.at("delivered")) r.delivered.insert(s.get<std::string>());
        r.notified = a.at("notified").get<bool>();
        records_.push_back(std::move(r));
      } catch (const nlohmann::json::exception& e) {
        return bad(std::string("malformed alert record: ") + e.what());
      }
    }
    return Status::ok();
  }

  Status save() const {
    nlohmann::ordered_json j;
    j["alerts"] = nlohmann::ordered_json::array();
    for (const AlertRecord& r : records_) {
      nlohmann::ordered_json a;
      a["query_key"] = r.queryKey;
      a["period"] = r.period;
      a["alert"] = r.signedAlert.bytes;
      a["signature"] = crypto::toHex(r.signedAlert.signature);
      a["delivered"] = std::vector<std::string>(r.delivered.begin(), r.delivered.end());
      a["notified"] = r.notified;
      j["alerts"].push_back(std::move(a));
    }
    return writeFileDurably(statePath(), j.dump(1) + "\n");
  }

  Result<EvaluationReport> evaluate() {
    EvaluationReport report;
    FederatedQueryOptions o;
    o.deadline = options_.deadline;
    auto result = session_.query(query_.study, request_.countQuery, o);
    if (!result) {
      report.problem = result.status().toString();
    } else if (!result->table) {
      // The refusal already names the sites and their reasons.
      report.problem = result->refusal;
      if (report.problem.empty()) {
        report.problem = "no site answered";
        for (const SiteOutcome& s : result->sites)
          report.problem += "; " + s.site + ": " + s.reason;
      }
    } else {
      auto detected = query::applySurveil(*result->table, request_);
      if (!detected) {
        report.problem = detected.status().toString();
      } else {
        report.evaluated = true;
        TM_RETURN_IF_ERROR(raiseNew(*detected, report));
        if (result->partial()) {
          for (const SiteOutcome& s : result->sites)
            if (s.outcome != SiteOutcomeKind::kAnswered)
              report.problem += (report.problem.empty() ? "" : "; ") + s.site + ": " + s.reason;
        }
      }
    }
    if (evaluated_ != nullptr) (report.evaluated ? evaluated_ : failed_)->inc();
    if (!report.problem.empty()) {
      spdlog::warn("standing query study={} query='{}': {}", query_.study, query_.text,
                   report.problem);
    }
    // Alerts raised earlier that some site did not record yet, or whose command did not run.
    TM_RETURN_IF_ERROR(deliverPending(report));
    return report;
  }

  std::map<std::string, uint64_t> datasetVersions() {
    std::map<std::string, uint64_t> out;
    for (const Member* site : members_.sitesOf(query_.study)) {
      auto info = session_.siteInfo(site->name, std::chrono::seconds(2));
      if (!info) continue;  // a site that is down changes nothing until it is back
      auto v = info->datasetVersions.find(query_.study);
      if (v != info->datasetVersions.end()) out[site->name] = v->second;
    }
    return out;
  }

  Status run(const std::atomic<bool>& stop) {
    auto versions = datasetVersions();
    auto report = evaluate();
    if (!report) return report.status();
    (void)ops::sdNotify("READY=1\nSTATUS=watching " + query_.study);
    auto nextEvaluation = Clock::now() + options_.every;
    auto nextPoll = Clock::now() + options_.pollEvery;
    while (!stop.load()) {
      const auto now = Clock::now();
      bool due = now >= nextEvaluation;
      if (!due && now >= nextPoll) {
        nextPoll = now + options_.pollEvery;
        auto current = datasetVersions();
        for (const auto& [site, version] : current) {
          auto before = versions.find(site);
          if (before != versions.end() && before->second != version) {
            spdlog::info(
                "standing query study={}: site {} has new data (dataset version {} -> "
                "{}); evaluating now",
                query_.study, site, before->second, version);
            due = true;
          }
        }
        // Remember only what was seen: a site that was down keeps its last known version.
        for (const auto& [site, version] : current) versions[site] = version;
      }
      if (due) {
        auto r = evaluate();
        if (!r) return r.status();
        nextEvaluation = Clock::now() + options_.every;
        continue;
      }
      const auto wake = std::min(nextEvaluation, nextPoll);
      std::this_thread::sleep_for(
          std::min<Clock::duration>(wake - Clock::now(), std::chrono::milliseconds(100)));
    }
    (void)ops::sdNotify("STOPPING=1");
    return Status::ok();
  }

  std::vector<std::string> alertedPeriods() const {
    std::vector<std::string> out;
    for (const AlertRecord& r : records_)
      if (r.queryKey == queryKey_) out.push_back(r.period);
    return out;
  }

  void close() { session_.close(); }

 private:
  std::filesystem::path statePath() const {
    return std::filesystem::path(options_.stateDir) / kStateFile;
  }

  bool alerted(const std::string& period) const {
    for (const AlertRecord& r : records_)
      if (r.queryKey == queryKey_ && r.period == period) return true;
    return false;
  }

  Status raiseNew(const query::ResultTable& table, EvaluationReport& report) {
    bool changed = false;
    for (const auto& row : table.rows) {
      const auto* alarm = std::get_if<std::string>(&row[3]);
      if (alarm == nullptr || *alarm != "true") continue;
      ++report.alarms;
      const auto* period = std::get_if<std::string>(&row[0]);
      const auto* count = std::get_if<int64_t>(&row[1]);
      if (period == nullptr || count == nullptr || alerted(*period)) continue;
      SurveillanceAlert a;
      a.federation = members_.federation;
      a.study = query_.study;
      a.query = query_.text;
      a.method = methodLabel(request_);
      a.period = *period;
      a.count = *count;
      if (const auto* bound = std::get_if<double>(&row[2])) a.upperBound = *bound;
      a.coordinator = identity_.pub;
      a.raisedAtMs = nowMs();
      TM_ASSIGN_OR_RETURN(SignedAlert signedAlert, signAlert(a, identity_));
      AlertRecord r;
      r.queryKey = queryKey_;
      r.period = *period;
      r.signedAlert = std::move(signedAlert);
      r.notified = options_.onAlert.empty();
      records_.push_back(std::move(r));
      report.newAlerts.push_back(*period);
      if (alerts_ != nullptr) alerts_->inc();
      spdlog::warn("surveillance_alert {}", describeAlert(a));
      changed = true;
    }
    // Written before any site or command hears of the new alerts: a crash after this point
    // delivers them on the next start; none is ever raised twice.
    return changed ? save() : Status::ok();
  }

  Status deliverPending(EvaluationReport& report) {
    bool changed = false;
    const auto sites = members_.sitesOf(query_.study);
    for (AlertRecord& r : records_) {
      if (r.queryKey != queryKey_) continue;
      for (const Member* site : sites) {
        if (r.delivered.count(site->name) != 0) continue;
        auto receipt = deliverAlertToSite(identity_, members_, site->name, r.signedAlert.bytes,
                                          r.signedAlert.signature, std::chrono::seconds(5));
        if (receipt) {
          r.delivered.insert(site->name);
          ++report.deliveries;
          changed = true;
        } else {
          spdlog::warn(
              "alert for period {} not delivered to site {} (retried at the next "
              "evaluation): {}",
              r.period, site->name, receipt.status().toString());
        }
      }
      if (!r.notified) {
        Status ran = runCommand(options_.onAlert, r.signedAlert.bytes, options_.onAlertTimeout);
        if (!ran.isOk()) {
          // Not retried: a failing command would otherwise run at every evaluation.
          spdlog::error("--on-alert command for period {} failed: {}", r.period, ran.toString());
          if (hookFailures_ != nullptr) hookFailures_->inc();
        }
        r.notified = true;
        changed = true;
      }
    }
    return changed ? save() : Status::ok();
  }

  const crypto::Identity& identity_;
  Members members_;
  StandingQuery query_;
  WatchOptions options_;
  query::SurveilRequest request_;
  std::string queryKey_;
  CoordinatorSession session_;
  std::vector<AlertRecord> records_;
  // options_.metrics' counters, or null.
  ops::Counter* evaluated_ = nullptr;
  ops::Counter* failed_ = nullptr;
  ops::Counter* alerts_ = nullptr;
  ops::Counter* hookFailures_ = nullptr;
};

Result<std::unique_ptr<Watcher>> Watcher::open(const crypto::Identity& identity, Members members,
                                               StandingQuery query, WatchOptions options) {
  if (options.stateDir.empty())
    return Status::invalidArgument("a standing query needs a state directory (--state DIR)");
  if (options.every.count() <= 0 || options.pollEvery.count() <= 0)
    return Status::invalidArgument("the schedule and the poll interval must be above 0");
  auto request = query::parseSurveil(query.text);
  if (!request) return request.status();
  if (!request->has_value())
    return Status::invalidArgument(
        "a standing query is a surveil(...) query, e.g. "
        "'surveil(onset_date, method = \"farrington\") where disease "
        "= \"influenza\"'; got '" +
        query.text + "'");
  if (members.sitesOf(query.study).empty())
    return Status::notFound("the members file lists no site for study '" + query.study + "'");
  // The --on-alert command may exit without reading its stdin; its EPIPE must be an error
  // return, not a signal that ends the watcher.
  ::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>(identity, std::move(members), std::move(query),
                                     std::move(options), std::move(**request));
  TM_RETURN_IF_ERROR(impl->load());
  return std::unique_ptr<Watcher>(new Watcher(std::move(impl)));
}

Watcher::Watcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Watcher::~Watcher() {
  if (impl_) impl_->close();
}
Result<EvaluationReport> Watcher::evaluate() { return impl_->evaluate(); }
Status Watcher::run(const std::atomic<bool>& stop) { return impl_->run(stop); }
std::vector<std::string> Watcher::alertedPeriods() const { return impl_->alertedPeriods(); }

}  // namespace trialmesh::node
