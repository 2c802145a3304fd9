#include "node/child_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <utility>

extern char** environ;

namespace trialmesh::node {

Result<ChildProcess> ChildProcess::spawn(const std::string& program,
                                         const std::vector<std::string>& args,
                                         const std::string& outputFile) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(program.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!outputFile.empty()) {
    // No O_CLOEXEC: this descriptor becomes the child's stdout and must survive the exec.
    posix_spawn_file_actions_addopen(&actions, 1, outputFile.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  }
  // The child must not inherit signals blocked by our event loop (kj captureSignal).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  int rc = program.find('/') != std::string::npos
               ? posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(), environ)
               : posix_spawnp(&pid, program.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return (rc == ENOENT ? Status::notFound("cannot start '" + program + "': no such program")
                         : Status::ioError("cannot start '" + program + "': " + std::strerror(rc)));
  }
  return ChildProcess(pid);
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(other.pid_), status_(other.status_) {
  other.pid_ = -1;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      reap(true);
    }
    pid_ = other.pid_;
    status_ = other.status_;
    other.pid_ = -1;
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    reap(true);
  }
}

bool ChildProcess::reap(bool block) {
  if (pid_ <= 0 || status_) return true;
  int wstatus = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &wstatus, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    status_ = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus)
                                 : (WIFSIGNALED(wstatus) ? 128 + WTERMSIG(wstatus) : 255);
    return true;
  }
  if (r < 0) {
    status_ = 255;  // not our child any more (ECHILD); nothing left to reap
    return true;
  }
  return false;
}

bool ChildProcess::running() { return !reap(false); }

void ChildProcess::signal(int signum) {
  if (pid_ > 0 && !status_) ::kill(pid_, signum);
}

std::optional<int> ChildProcess::waitFor(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!reap(false)) {
    if (std::chrono::steady_clock::now() >= end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return status_;
}

int ChildProcess::stop(std::chrono::milliseconds grace) {
  signal(SIGTERM);
  if (auto s = waitFor(grace)) return *s;
  signal(SIGKILL);
  reap(true);
  return status_.value_or(255);
}

std::string executableDirectory() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

namespace {

// The kernel's ephemeral range, from which it takes the source port of every outgoing
// connection (and the port for bind(0)). A port picked there can be taken by any client socket
// on the machine before our node binds it; that is the race CI hit. Defaults to Linux's.
std::pair<uint32_t, uint32_t> ephemeralPortRange() {
  uint32_t low = 32768, high = 60999;
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  uint32_t l = 0, h = 0;
  if (in >> l >> h && l > 0 && l <= h && h <= 65535) {
    low = l;
    high = h;
  }
  return {low, high};
}

// True when 127.0.0.1:port can be bound right now (no listener, no connection using it).
bool loopbackPortBindable(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

Result<uint16_t> pickFreeLoopbackPort() {
  // Pick at random from the largest span outside the ephemeral range (above 10000, away from
  // well-known services), so neither outgoing connections nor another test's bind(0) collide
  // with it; concurrent pickers collide only by chance, and callers retry on "address in use".
  auto [low, high] = ephemeralPortRange();
  constexpr uint32_t kFloor = 10000;
  uint32_t spanLow = 0, spanHigh = 0;
  if (low > kFloor + 1000) {
    spanLow = kFloor;
    spanHigh = low - 1;
  }
  if (high < 65535 && 65535 - high > spanHigh - spanLow) {
    spanLow = high + 1;
    spanHigh = 65535;
  }
  if (spanHigh > spanLow) {
    std::random_device rd;
    std::uniform_int_distribution<uint32_t> pick(spanLow, spanHigh);
    for (int attempt = 0; attempt < 256; ++attempt) {
      auto port = static_cast<uint16_t>(pick(rd));
      if (loopbackPortBindable(port)) return port;
    }
  }
  // No room outside the ephemeral range (or every try was taken): let the kernel choose.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::ioError(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int e = errno;
    ::close(fd);
    return Status::ioError(std::string("bind 127.0.0.1:0: ") + std::strerror(e));
  }
  ::close(fd);
  return static_cast<uint16_t>(ntohs(addr.sin_port));
}

}  // namespace trialmesh::node
