#include "node/ops/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace trialmesh::ops {

Status sdNotify(const std::string& state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return Status::ok();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if ((path[0] != '/' && path[0] != '@') || len >= sizeof(addr.sun_path)) {
    return Status::invalidArgument(std::string("NOTIFY_SOCKET '") + path +
                                   "' is neither an absolute path nor an @abstract name that "
                                   "fits a unix socket address");
  }
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const auto addrLen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::ioError(std::string("sd_notify socket: ") + std::strerror(errno));
  const ssize_t sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&addr), addrLen);
  const int err = errno;
  ::close(fd);
  if (sent < 0 || static_cast<size_t>(sent) != state.size()) {
    return Status::ioError(std::string("sd_notify to ") + path + ": " +
                           (sent < 0 ? std::strerror(err) : "short write"));
  }
  return Status::ok();
}

std::optional<std::chrono::milliseconds> sdWatchdogInterval() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (usec == nullptr) return std::nullopt;
  if (const char* pid = std::getenv("WATCHDOG_PID")) {
    char* end = nullptr;
    const long long p = std::strtoll(pid, &end, 10);
    if (end == pid || *end != '\0' || p != static_cast<long long>(::getpid())) return std::nullopt;
  }
  char* end = nullptr;
  const unsigned long long us = std::strtoull(usec, &end, 10);
  if (end == usec || *end != '\0' || us == 0) return std::nullopt;
  return std::chrono::milliseconds(std::max<unsigned long long>(1, us / 2000));
}

std::string sdReloadingMessage() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  const unsigned long long us = static_cast<unsigned long long>(ts.tv_sec) * 1'000'000ULL +
                                static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
  return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(us);
}

}  // namespace trialmesh::ops
