// A standing surveillance query over a loopback federation (issue #15 item 3): three sites in
// secure mode, a watcher evaluating every 200 ms. While the weekly counts stay below the fixed
// threshold no alert is raised; an outbreak injected at one site (a data refresh) raises exactly
// one alert, recorded as an `alert` entry in every site's audit log, counted by every site's
// trialmesh_surveillance_alerts_total and handed once to the --on-alert command; a restarted
// watcher raises no duplicate. The approval's surveillance_min_interval_ms refuses an
// evaluation that comes too soon, audited with the reason.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "crypto/hash.h"
#include "e2e_federation_fixture.h"
#include "ethics/audit_log.h"
#include "node/coordinator.h"
#include "node/local_federation.h"
#include "node/ops/metrics.h"
#include "node/watcher.h"
#include "storage/store.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

double alertsCounted(uint16_t opsPort) {
  const std::string series = "trialmesh_surveillance_alerts_total ";
  std::istringstream in(httpGet(opsPort, "/metrics"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind(series, 0) == 0) return std::stod(line.substr(series.size()));
  return -1;
}

std::vector<std::string> readLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

// Runs the trialmesh CLI; its exit status and its stdout and stderr together.
std::pair<int, std::string> runCli(const std::filesystem::path& dir,
                                   const std::vector<std::string>& args) {
  const std::string out = (dir / "cli-output.txt").string();
  std::filesystem::remove(out);
  // ChildProcess opens the output file for fd 1 with O_CLOEXEC, so only stderr (its dup)
  // survives exec; a shell sends the CLI's stdout there too.
  std::vector<std::string> shellArgs = {"-c", "exec \"$0\" \"$@\" 1>&2", TRIALMESH_CLI_BINARY};
  shellArgs.insert(shellArgs.end(), args.begin(), args.end());
  auto p = ChildProcess::spawn("/bin/sh", shellArgs, out);
  if (!p) return {-1, p.status().toString()};
  auto status = p->waitFor(60s);
  if (!status) p->stop(1s);
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  return {status.value_or(-1), text.str()};
}

class StandingQueryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("trialmesh-standing-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    fed_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // Appends `rows` cases dated `date` to site `i`'s CSV and imports it as the dataset's next
  // version (the site is stopped: one process per store), as a hospital's data refresh does.
  void injectOutbreak(size_t i, int rows, const std::string& date) {
    const std::string csv = fed_->siteCsvPath(i);
    std::vector<std::string> lines = readLines(csv);
    ASSERT_GE(lines.size(), 2u);
    std::vector<std::string> fields;
    {
      std::stringstream in(lines.back());
      for (std::string f; std::getline(in, f, ',');) fields.push_back(f);
    }
    ASSERT_EQ(fields.size(), 13u) << lines.back();  // ... RANDDT is the 12th column
    std::ofstream out(csv, std::ios::app);
    for (int k = 0; k < rows; ++k) {
      fields[0] = "\"OUTBREAK-" + std::to_string(k) + "\"";
      fields[11] = date;
      std::string line;
      for (size_t f = 0; f < fields.size(); ++f) line += (f ? "," : "") + fields[f];
      out << line << "\n";
    }
    out.close();
    storage::StoreOptions so;
    so.createIfMissing = false;
    auto store = storage::Store::open(fed_->siteDirectory(i) + "/store", so);
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    auto source = (*store)->openDataset(LocalFederation::kDataset);
    ASSERT_TRUE(source.isOk()) << source.status().toString();
    const storage::Dictionary dict = (*source)->dictionary();
    source->reset();
    auto imported = (*store)->importCsv(LocalFederation::kDataset, dict, csv);
    ASSERT_TRUE(imported.isOk()) << imported.status().toString();
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalFederation> fed_;
};

TEST_F(StandingQueryTest, OneSignedAlertPerNewAlarmAtEverySiteAndNoneBelowTheThreshold) {
  LocalFederationOptions o;
  o.sites = 3;
  o.directory = (dir_ / "fed").string();
  o.rows = 600;
  o.seed = 15;
  o.aggregation = ethics::AggregationMode::kSecure;
  o.surveillanceMinIntervalMs = 150;
  o.nodeBinary = TRIALMESH_NODE_BINARY;
  auto fed = LocalFederation::create(o);
  ASSERT_TRUE(fed.isOk()) << fed.status().toString();
  fed_ = std::move(*fed);
  ASSERT_TRUE(fed_->start(30s).isOk());

  // The largest weekly count; then the same series again at once, which the approval refuses.
  FederatedQueryOptions qo;
  qo.deadline = 20s;
  const std::string series = "count by week(randdt)";
  auto counts =
      runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, series, qo);
  ASSERT_TRUE(counts.isOk()) << counts.status().toString();
  ASSERT_TRUE(counts->table.has_value()) << counts->refusal;
  int64_t largest = 0;
  for (const auto& row : counts->table->rows)
    largest = std::max(largest, std::get<int64_t>(row[1]));
  ASSERT_GT(largest, 0);
  auto tooSoon =
      runFederatedQuery(fed_->coordinator(), fed_->members(), LocalFederation::kStudy, series, qo);
  ASSERT_TRUE(tooSoon.isOk());
  EXPECT_FALSE(tooSoon->table.has_value());
  ASSERT_FALSE(tooSoon->sites.empty());
  EXPECT_NE(tooSoon->sites[0].reason.find("surveillance_min_interval_ms"), std::string::npos)
      << tooSoon->sites[0].reason;

  // Alarm on a week with more cases than any week has now.
  const int64_t threshold = largest + 3;
  const std::string text =
      "surveil(randdt, method = \"threshold\", n = " + std::to_string(threshold) + ")";
  const std::string hookOut = (dir_ / "hook.out").string();
  const std::string hook = (dir_ / "hook.sh").string();
  std::ofstream(hook) << "#!/bin/sh\ncat >> '" << hookOut << "'\necho >> '" << hookOut << "'\n";
  std::filesystem::permissions(hook, std::filesystem::perms::owner_all);
  WatchOptions wo;
  wo.every = 200ms;
  wo.pollEvery = 100ms;
  wo.deadline = 10s;
  wo.stateDir = (dir_ / "watch-state").string();
  wo.onAlert = {hook};
  wo.onAlertTimeout = 5s;
  ops::Registry coordinatorMetrics;
  wo.metrics = &coordinatorMetrics;
  std::this_thread::sleep_for(200ms);  // past the interval of the queries above

  auto watcher =
      Watcher::open(fed_->coordinator(), fed_->members(), {LocalFederation::kStudy, text}, wo);
  ASSERT_TRUE(watcher.isOk()) << watcher.status().toString();
  std::atomic<bool> stop{false};
  Status runStatus;
  std::thread runner([&] { runStatus = (*watcher)->run(stop); });

  // Below the threshold: evaluations run (several, 200 ms apart), no alert anywhere.
  std::this_thread::sleep_for(900ms);
  EXPECT_TRUE((*watcher)->alertedPeriods().empty());
  for (size_t i = 0; i < fed_->siteCount(); ++i) EXPECT_EQ(alertsCounted(fed_->siteOpsPort(i)), 0);

  // The outbreak: site 0 gets `threshold` new cases in ISO week 2024-W24 (its data refresh).
  ASSERT_EQ(fed_->siteProcess(0)->stop(5s), 0);
  injectOutbreak(0, static_cast<int>(threshold), "2024-06-12");
  ASSERT_TRUE(fed_->startSite(0, 20s).isOk());

  const auto deadline = std::chrono::steady_clock::now() + 20s;
  auto everySiteCounted = [&] {
    for (size_t i = 0; i < fed_->siteCount(); ++i)
      if (alertsCounted(fed_->siteOpsPort(i)) < 1) return false;
    return true;
  };
  while (std::chrono::steady_clock::now() < deadline && !everySiteCounted())
    std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(everySiteCounted()) << "the alert did not reach every site";
  std::this_thread::sleep_for(600ms);  // more evaluations of the same alarm
  stop = true;
  runner.join();
  EXPECT_TRUE(runStatus.isOk()) << runStatus.toString();
  EXPECT_EQ((*watcher)->alertedPeriods(), std::vector<std::string>{"2024-W24"});
  const std::string counted = coordinatorMetrics.render();
  EXPECT_NE(counted.find("trialmesh_watch_alerts_total 1\n"), std::string::npos) << counted;
  EXPECT_NE(counted.find("trialmesh_watch_on_alert_failures_total 0\n"), std::string::npos);
  EXPECT_EQ(counted.find("trialmesh_watch_evaluations_total{outcome=\"evaluated\"} 0\n"),
            std::string::npos)
      << counted;
  watcher->reset();

  // A restarted watcher remembers the alert: the alarm is still there, no new alert.
  std::this_thread::sleep_for(200ms);
  auto again =
      Watcher::open(fed_->coordinator(), fed_->members(), {LocalFederation::kStudy, text}, wo);
  ASSERT_TRUE(again.isOk()) << again.status().toString();
  auto report = (*again)->evaluate();
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  EXPECT_TRUE(report->evaluated) << report->problem;
  EXPECT_EQ(report->alarms, 1u);
  EXPECT_TRUE(report->newAlerts.empty());
  EXPECT_EQ(report->deliveries, 0u);
  again->reset();
  // So does `trialmesh watch` with that state directory; and it refuses bad input with the fix.
  std::this_thread::sleep_for(200ms);
  const std::vector<std::string> common = {"watch",
                                           "--study",
                                           LocalFederation::kStudy,
                                           "--members",
                                           fed_->membersPath(),
                                           "--identity",
                                           fed_->coordinatorKeyPath(),
                                           "--state",
                                           wo.stateDir};
  auto cli = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return runCli(dir_, args);
  };
  auto [once, onceText] = cli({"--once", text});
  EXPECT_EQ(once, 0) << onceText;
  EXPECT_NE(onceText.find("1 alarm(s), 0 new alert(s)"), std::string::npos) << onceText;
  auto [badEvery, badEveryText] = cli({"--every", "5x", text});
  EXPECT_EQ(badEvery, 1) << badEveryText;
  EXPECT_NE(badEveryText.find("--every '5x' is not a duration"), std::string::npos) << badEveryText;
  auto [notSurveil, notSurveilText] = cli({"--once", "count by arm"});
  EXPECT_EQ(notSurveil, 1) << notSurveilText;
  EXPECT_NE(notSurveilText.find("a standing query is a surveil(...) query"), std::string::npos)
      << notSurveilText;
  for (size_t i = 0; i < fed_->siteCount(); ++i) EXPECT_EQ(alertsCounted(fed_->siteOpsPort(i)), 1);

  // The operator's command got the alert once, as JSON.
  const auto hooked = readLines(hookOut);
  ASSERT_EQ(hooked.size(), 1u);
  auto parsed = parseAlertJson(hooked[0]);
  ASSERT_TRUE(parsed.isOk()) << parsed.status().toString() << ": " << hooked[0];
  EXPECT_EQ(parsed->period, "2024-W24");
  EXPECT_EQ(parsed->method, "threshold");
  EXPECT_GE(parsed->count, threshold);
  EXPECT_EQ(parsed->upperBound, std::optional<double>(static_cast<double>(threshold)));

  // A site takes alerts only from a coordinator of the study, signed by the sender itself.
  SurveillanceAlert fake = *parsed;
  fake.coordinator = fed_->committee().pub;  // the ethics-board member: not a coordinator
  fake.period = "2024-W01";
  auto byBoard = signAlert(fake, fed_->committee());
  ASSERT_TRUE(byBoard.isOk());
  auto refused = deliverAlertToSite(fed_->committee(), fed_->members(), fed_->siteName(1),
                                    byBoard->bytes, byBoard->signature);
  ASSERT_FALSE(refused.isOk());
  EXPECT_NE(refused.status().message().find("is not a member with role coordinator"),
            std::string::npos)
      << refused.status().toString();
  std::string altered = hooked[0];
  altered.replace(altered.find("2024-W24"), 8, "2024-W25");
  auto original = signAlert(*parsed, fed_->coordinator());  // a fresh, valid signature...
  ASSERT_TRUE(original.isOk());
  auto forged = deliverAlertToSite(fed_->coordinator(), fed_->members(), fed_->siteName(2), altered,
                                   original->signature);  // ...over other bytes
  ASSERT_FALSE(forged.isOk());
  EXPECT_NE(forged.status().message().find("does not verify"), std::string::npos)
      << forged.status().toString();
  // The same signed alert sent again (a watcher that restarted before recording a site's
  // receipt does this) is recorded once.
  {
    std::ifstream in(wo.stateDir + "/alerts.json");
    const auto state = nlohmann::json::parse(in);
    ASSERT_EQ(state["alerts"].size(), 1u);
    const std::string bytes = state["alerts"][0]["alert"].get<std::string>();
    auto sig = crypto::fromHex(state["alerts"][0]["signature"].get<std::string>());
    ASSERT_TRUE(sig.isOk());
    crypto::Signature signature{};
    ASSERT_EQ(sig->size(), signature.size());
    std::copy(sig->begin(), sig->end(), signature.begin());
    auto resent = deliverAlertToSite(fed_->coordinator(), fed_->members(), fed_->siteName(0), bytes,
                                     signature);
    ASSERT_TRUE(resent.isOk()) << resent.status().toString();
    EXPECT_NE(resent->find("already recorded"), std::string::npos) << *resent;
  }
  for (size_t i = 0; i < fed_->siteCount(); ++i) EXPECT_EQ(alertsCounted(fed_->siteOpsPort(i)), 1);

  // Every site's audit log: exactly one alert entry, signed-for by the coordinator, readable;
  // and the refused early evaluation with its reason.
  fed_->stop(10s);
  for (size_t i = 0; i < fed_->siteCount(); ++i) {
    auto stored = ethics::AuditLog::readAllUnchecked(fed_->siteAuditDir(i));
    ASSERT_TRUE(stored.isOk()) << stored.status().toString();
    int alerts = 0, paced = 0;
    for (const auto& s : *stored) {
      auto e =
          ethics::decodeEntry({reinterpret_cast<const uint8_t*>(s.bytes.data()), s.bytes.size()});
      ASSERT_TRUE(e.isOk()) << e.status().toString();
      if (e->kind == ethics::EntryKind::kAlert) {
        ++alerts;
        const auto& a = std::get<ethics::AlertEvent>(e->body);
        EXPECT_EQ(a.peer, fed_->coordinator().pub);
        EXPECT_NE(a.message.find("period=2024-W24"), std::string::npos) << a.message;
        EXPECT_NE(ethics::describeEntry(*e).find("alert peer="), std::string::npos);
      }
      if (e->kind == ethics::EntryKind::kQuery) {
        const auto& q = std::get<ethics::QueryEvent>(e->body);
        paced += !q.allowed && q.reason.find("surveillance_min_interval_ms") != std::string::npos;
      }
    }
    EXPECT_EQ(alerts, 1) << fed_->siteName(i);
    EXPECT_GE(paced, 1) << fed_->siteName(i);
  }
}

}  // namespace
}  // namespace trialmesh::node
