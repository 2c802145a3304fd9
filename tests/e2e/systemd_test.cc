// systemd integration without systemd (CI runs without it as PID 1): the sd_notify protocol on
// a test datagram socket, and a real trialmesh-node reporting READY=1, WATCHDOG=1 from its
// event loop, RELOADING=1/READY=1 around SIGHUP reloads (a good and a broken members file) and
// STOPPING=1 at shutdown.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "node/coordinator.h"
#include "node/local_federation.h"
#include "node/members_signature.h"
#include "node/ops/sd_notify.h"

namespace trialmesh::node {
namespace {

using namespace std::chrono_literals;

// The receiving end systemd would hold: a bound AF_UNIX datagram socket.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    socklen_t len = sizeof(addr);
    if (path_[0] == '@') {
      addr.sun_path[0] = '\0';
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size());
    } else {
      ::unlink(path_.c_str());
    }
    bound_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0;
  }
  ~NotifySocket() {
    ::close(fd_);
    if (path_[0] != '@') ::unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  // The next datagram, or nullopt after `timeout`.
  std::optional<std::string> receive(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }
  // The next datagram containing `needle`, skipping others (watchdog pings interleave).
  std::optional<std::string> receiveContaining(const std::string& needle,
                                               std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      auto m = receive(std::max(left, 1ms));
      if (m && m->find(needle) != std::string::npos) return m;
    }
    return std::nullopt;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
};

std::string scratchDir(const std::string& what) {
  auto dir = std::filesystem::temp_directory_path() /
             ("trialmesh-systemd-" + std::to_string(::getpid()) + "-" + what);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

TEST(SdNotify, NoSocketIsANoOp) {
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_TRUE(ops::sdNotify("READY=1").isOk());
}

TEST(SdNotify, SendsToAPathSocket) {
  const std::string dir = scratchDir("path");
  NotifySocket sock(dir + "/notify");
  ASSERT_TRUE(sock.bound());
  ::setenv("NOTIFY_SOCKET", (dir + "/notify").c_str(), 1);
  ASSERT_TRUE(ops::sdNotify("READY=1\nSTATUS=serving").isOk());
  EXPECT_EQ(sock.receive(2s), "READY=1\nSTATUS=serving");
  ::unsetenv("NOTIFY_SOCKET");
  std::filesystem::remove_all(dir);
}

TEST(SdNotify, SendsToAnAbstractSocket) {
  const std::string name = "@trialmesh-notify-test-" + std::to_string(::getpid());
  NotifySocket sock(name);
  ASSERT_TRUE(sock.bound());
  ::setenv("NOTIFY_SOCKET", name.c_str(), 1);
  ASSERT_TRUE(ops::sdNotify("WATCHDOG=1").isOk());
  EXPECT_EQ(sock.receive(2s), "WATCHDOG=1");
  ::unsetenv("NOTIFY_SOCKET");
}

TEST(SdNotify, ReportsAMissingOrInvalidSocket) {
  ::setenv("NOTIFY_SOCKET", "/nonexistent/trialmesh/notify", 1);
  Status s = ops::sdNotify("READY=1");
  EXPECT_FALSE(s.isOk());
  EXPECT_NE(s.message().find("/nonexistent/trialmesh/notify"), std::string::npos) << s.toString();
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  EXPECT_FALSE(ops::sdNotify("READY=1").isOk());
  ::unsetenv("NOTIFY_SOCKET");
}

TEST(SdNotify, ReloadingCarriesTheMonotonicTime) {
  const std::string m = ops::sdReloadingMessage();
  EXPECT_EQ(m.rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u) << m;
  EXPECT_GT(std::stoull(m.substr(m.find('=', 12) + 1)), 0u);
}

TEST(SdNotify, WatchdogIntervalIsHalfOfWatchdogUsec) {
  ::unsetenv("WATCHDOG_PID");
  ::unsetenv("WATCHDOG_USEC");
  EXPECT_FALSE(ops::sdWatchdogInterval().has_value());
  ::setenv("WATCHDOG_USEC", "30000000", 1);
  EXPECT_EQ(ops::sdWatchdogInterval(), std::chrono::milliseconds(15000));
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  EXPECT_EQ(ops::sdWatchdogInterval(), std::chrono::milliseconds(15000));
  ::setenv("WATCHDOG_PID", "1", 1);  // the watchdog is meant for another process
  EXPECT_FALSE(ops::sdWatchdogInterval().has_value());
  ::unsetenv("WATCHDOG_PID");
  ::setenv("WATCHDOG_USEC", "soon", 1);
  EXPECT_FALSE(ops::sdWatchdogInterval().has_value());
  ::unsetenv("WATCHDOG_USEC");
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

// Polls the node's log for `needle` (the log is flushed after every reload).
bool logContains(const std::string& path, const std::string& needle,
                 std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (readFile(path).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

// A one-site federation of the real trialmesh-node binary, created but not started.
Result<std::unique_ptr<LocalFederation>> createOneSiteFederation(const std::string& directory) {
  LocalFederationOptions o;
  o.directory = directory;
  o.sites = 1;
  o.rows = 100;
  o.nodeBinary = TRIALMESH_NODE_BINARY;
  return LocalFederation::create(o);
}

TEST(SystemdNode, NotifiesReadyWatchdogReloadAndStop) {
  const std::string dir = scratchDir("node");
  NotifySocket sock(dir + "/notify");
  ASSERT_TRUE(sock.bound());
  // Inherited by the node process, as systemd would pass them.
  ::setenv("NOTIFY_SOCKET", (dir + "/notify").c_str(), 1);
  ::setenv("WATCHDOG_USEC", "200000", 1);  // a ping every 100 ms
  ::unsetenv("WATCHDOG_PID");

  auto fed = createOneSiteFederation(dir + "/fed");
  ASSERT_TRUE(fed.isOk()) << fed.status().toString();
  Status started = (*fed)->start(30s);
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ASSERT_TRUE(started.isOk()) << started.toString();
  ChildProcess* node = (*fed)->siteProcess(0);
  ASSERT_NE(node, nullptr);
  const std::string log = (*fed)->siteLogPath(0);

  auto ready = sock.receiveContaining("READY=1", 10s);
  ASSERT_TRUE(ready) << "no READY=1";
  EXPECT_NE(ready->find("MAINPID=" + std::to_string(node->pid())), std::string::npos) << *ready;
  // Several watchdog pings within a second: they come from the running event loop.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(sock.receiveContaining("WATCHDOG=1", 2s)) << i;

  // A good members file (the same content, rewritten): RELOADING=1, READY=1, reload_done.
  const std::string members = (*fed)->membersPath();
  const std::string good = readFile(members);
  writeFile(members, good + "\n# reloaded\n");
  node->signal(SIGHUP);
  ASSERT_TRUE(sock.receiveContaining("RELOADING=1\nMONOTONIC_USEC=", 5s));
  auto after = sock.receiveContaining("READY=1", 5s);
  ASSERT_TRUE(after);
  EXPECT_NE(after->find("(reloaded)"), std::string::npos) << *after;
  EXPECT_TRUE(logContains(log, "reload_done", 5s)) << readFile(log);

  // A broken file: refused with the reason, the node keeps its members and keeps serving.
  writeFile(members, "federation = \"x\"\n[[member]\nname = ");
  node->signal(SIGHUP);
  ASSERT_TRUE(sock.receiveContaining("RELOADING=1", 5s));
  auto refused = sock.receiveContaining("READY=1", 5s);
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->find("reload refused"), std::string::npos) << *refused;
  EXPECT_TRUE(logContains(log, "reload_refused", 5s)) << readFile(log);
  EXPECT_TRUE(node->running());
  EXPECT_TRUE(sock.receiveContaining("WATCHDOG=1", 2s)) << "event loop stalled after reload";

  // A file that no longer lists this site's key: refused too (a rotation needs a restart).
  std::string otherKey = good;
  const auto at =
      otherKey.find((*fed)->members().findByName((*fed)->siteName(0))->publicKey.toText());
  ASSERT_NE(at, std::string::npos);
  const std::string coordinatorKey = (*fed)->coordinator().pub.toText();
  otherKey.replace(at, coordinatorKey.size(), coordinatorKey);
  writeFile(members, otherKey);
  node->signal(SIGHUP);
  ASSERT_TRUE(sock.receiveContaining("RELOADING=1", 5s));
  ASSERT_TRUE(sock.receiveContaining("reload refused", 5s));
  EXPECT_TRUE(node->running());

  // Restored: accepted again, then a clean stop reports STOPPING=1.
  writeFile(members, good);
  node->signal(SIGHUP);
  ASSERT_TRUE(sock.receiveContaining("(reloaded)", 5s));
  node->signal(SIGTERM);
  EXPECT_TRUE(sock.receiveContaining("STOPPING=1", 10s));
  EXPECT_EQ(node->waitFor(20s), 0);
  (*fed)->stop(5s);
  fed->reset();
  std::filesystem::remove_all(dir);
}

// members_signer (issue #13 item 4): a node that trusts the organiser's key starts on the signed
// members file; at reload a copy changed after signing is refused (the node keeps serving with
// the old members), and the re-signed file is taken.
TEST(SignedMembers, TamperedCopyIsRefusedAtReloadAndTheResignedOneTaken) {
  const std::string dir = scratchDir("signed");
  auto fed = createOneSiteFederation(dir + "/fed");
  ASSERT_TRUE(fed.isOk()) << fed.status().toString();
  const crypto::Identity organiser = crypto::generateIdentity();
  const std::string config = (*fed)->siteConfigPath(0);
  writeFile(config, "members_signer = \"" + organiser.pub.toText() + "\"\n" + readFile(config));
  const std::string members = (*fed)->membersPath();
  const std::string good = readFile(members);
  writeFile(membersSignaturePath(members), signMembersFile(organiser, good));
  Status started = (*fed)->start(30s);
  ASSERT_TRUE(started.isOk()) << started.toString();
  ChildProcess* node = (*fed)->siteProcess(0);
  ASSERT_NE(node, nullptr);
  const std::string log = (*fed)->siteLogPath(0);

  // An intruder adds a coordinator of their own, without the organiser's key.
  const std::string intruder =
      "\n[[member]]\nname = \"intruder\"\nrole = \"coordinator\"\n"
      "public_key = \"" +
      crypto::generateIdentity().pub.toText() + "\"\n";
  writeFile(members, good + intruder);
  node->signal(SIGHUP);
  ASSERT_TRUE(logContains(log, "reload_refused", 5s)) << readFile(log);
  EXPECT_NE(readFile(log).find("changed after it was signed"), std::string::npos) << readFile(log);
  EXPECT_TRUE(node->running());
  auto r = runFederatedQuery((*fed)->coordinator(), (*fed)->members(), LocalFederation::kStudy,
                             "count", {});
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->answered(), 1u);

  // The organiser signs the new list: taken at the next reload.
  writeFile(membersSignaturePath(members), signMembersFile(organiser, good + intruder));
  node->signal(SIGHUP);
  EXPECT_TRUE(logContains(log, "reload_done", 5s)) << readFile(log);
  (*fed)->stop(10s);
  fed->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace trialmesh::node
