// Child processes for the federation demo, the end-to-end tests and benchmarks: start a
// program with its output in a file, signal it, wait with a bound, and never leave it behind
// (the destructor kills and reaps a child that is still running).
//
// Thread-safety: a ChildProcess is used from one thread. Move-only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace trialmesh::node {

class ChildProcess {
 public:
  // Starts `program` (a path, or a name looked up in PATH) with `args`; stdout and stderr go
  // to `outputFile` (appended; "" = inherit ours). Errors: NotFound/IOError naming the program.
  static Result<ChildProcess> spawn(const std::string& program,
                                    const std::vector<std::string>& args,
                                    const std::string& outputFile = "");

  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  // Kills (SIGKILL) and reaps the child if it is still running.
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // True until the child has exited and been reaped.
  bool running();
  void signal(int signum);
  // Waits up to `timeout` for the child to exit. Returns its exit status (128 + signal number
  // when killed by a signal), or nullopt if it is still running.
  std::optional<int> waitFor(std::chrono::milliseconds timeout);
  // The exit status once reaped.
  std::optional<int> exitStatus() const { return status_; }
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  bool reap(bool block);
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// The directory of the running executable (/proc/self/exe), e.g. to find trialmesh-node
// next to trialmesh.
std::string executableDirectory();

// A loopback port that is free now, chosen at random outside the kernel's ephemeral range (so
// the source port of some outgoing connection cannot take it before our node binds it).
// Another process may still take it first; callers retry on "address in use".
Result<uint16_t> pickFreeLoopbackPort();

}  // namespace trialmesh::node
