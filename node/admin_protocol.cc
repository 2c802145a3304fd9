#include "node/admin_protocol.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <vector>

namespace trialmesh::node {
namespace {

std::string errnoText(int err) { return std::strerror(err); }

// Reads exactly `n` bytes; false with got == 0 at a clean end of stream.
Status readExactly(int fd, char* out, size_t n, size_t& got, int* passedFd) {
  got = 0;
  while (got < n) {
    struct iovec iov {
      out + got, n - got
    };
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (passedFd != nullptr) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
    }
    ssize_t r = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::ioError("admin socket: read failed: " + errnoText(errno));
    }
    if (passedFd != nullptr) {
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len >= CMSG_LEN(sizeof(int))) {
          int received = -1;
          std::memcpy(&received, CMSG_DATA(c), sizeof(int));
          if (*passedFd >= 0) ::close(*passedFd);  // only one descriptor per message
          *passedFd = received;
        }
      }
    }
    if (r == 0) {
      if (got == 0) return Status::notFound("admin socket: connection closed");
      return Status::ioError("admin socket: connection closed mid-message");
    }
    got += static_cast<size_t>(r);
  }
  return Status::ok();
}

}  // namespace

Status sendAdminMessage(int socketFd, const nlohmann::json& message, int passFd) {
  const std::string body = message.dump();
  if (body.size() > kMaxAdminMessageBytes) {
    return Status::invalidArgument("admin message of " + std::to_string(body.size()) +
                                   " bytes is over the limit of " +
                                   std::to_string(kMaxAdminMessageBytes));
  }
  std::string frame(4, '\0');
  const uint32_t n = static_cast<uint32_t>(body.size());
  for (int i = 0; i < 4; ++i) frame[i] = static_cast<char>((n >> (24 - 8 * i)) & 0xFF);
  frame += body;
  size_t sent = 0;
  bool fdSent = passFd < 0;
  while (sent < frame.size()) {
    struct iovec iov {
      frame.data() + sent, frame.size() - sent
    };
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fdSent) {
      std::memset(control, 0, sizeof(control));
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &passFd, sizeof(int));
    }
    ssize_t r = ::sendmsg(socketFd, &msg, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::ioError("admin socket: write failed: " + errnoText(errno));
    }
    fdSent = true;
    sent += static_cast<size_t>(r);
  }
  return Status::ok();
}

Result<AdminMessage> receiveAdminMessage(int socketFd) {
  AdminMessage out;
  char header[4];
  size_t got = 0;
  Status s = readExactly(socketFd, header, 4, got, &out.fd);
  auto closeFd = [&out] {
    if (out.fd >= 0) ::close(out.fd);
    out.fd = -1;
  };
  if (!s.isOk()) {
    closeFd();
    return s;
  }
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<uint8_t>(header[i]);
  if (n > kMaxAdminMessageBytes) {
    closeFd();
    return Status::invalidArgument("admin socket: message of " + std::to_string(n) +
                                   " bytes is over the limit of " +
                                   std::to_string(kMaxAdminMessageBytes));
  }
  std::string body(n, '\0');
  s = readExactly(socketFd, body.data(), n, got, &out.fd);
  if (!s.isOk()) {
    closeFd();
    return s.code() == StatusCode::kNotFound && n > 0
               ? Status::ioError("admin socket: connection closed mid-message")
               : s;
  }
  out.body = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (out.body.is_discarded() || !out.body.is_object()) {
    closeFd();
    return Status::invalidArgument("admin socket: a message is not a JSON object");
  }
  return out;
}

Result<int> connectAdminSocket(const std::string& path) {
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Status::invalidArgument("admin socket path '" + path + "' is empty or longer than " +
                                   std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::ioError("cannot create a Unix socket: " + errnoText(errno));
  if (::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(fd);
    std::string hint = err == EACCES ? " (only the node's service user and its group may connect: "
                                       "run as them, or add yourself to the group)"
                                     : " (is trialmesh-node running with this admin_socket?)";
    return Status::unavailable("cannot connect to the node's admin socket " + path + ": " +
                               errnoText(err) + hint);
  }
  return fd;
}

Result<nlohmann::json> callAdmin(const std::string& socketPath, const nlohmann::json& request,
                                 int passFd,
                                 const std::function<void(uint64_t, uint64_t)>& onProgress) {
  TM_ASSIGN_OR_RETURN(int fd, connectAdminSocket(socketPath));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  TM_RETURN_IF_ERROR(sendAdminMessage(fd, request, passFd));
  for (;;) {
    auto msg = receiveAdminMessage(fd);
    if (!msg) {
      if (msg.status().code() == StatusCode::kNotFound) {
        return Status::unavailable("the node closed the admin connection " + socketPath +
                                   " before answering (did it stop or crash? see its log)");
      }
      return msg.status();
    }
    if (msg->fd >= 0) ::close(msg->fd);
    const nlohmann::json& m = msg->body;
    if (m.contains("progress")) {
      const auto& p = m["progress"];
      if (onProgress && p.is_array() && p.size() == 2 && p[0].is_number_unsigned() &&
          p[1].is_number_unsigned()) {
        onProgress(p[0].get<uint64_t>(), p[1].get<uint64_t>());
      }
      continue;
    }
    if (!m.contains("ok") || !m["ok"].is_boolean()) {
      return Status::invalidArgument("admin socket " + socketPath + ": malformed answer " +
                                     m.dump());
    }
    if (m["ok"].get<bool>()) return m.value("result", nlohmann::json::object());
    return statusFromWire(m.value("code", "Internal"), m.value("message", "(no message)"));
  }
}

std::string statusCodeWireName(StatusCode code) { return statusCodeName(code); }

Status statusFromWire(const std::string& codeName, const std::string& message) {
  for (int c = 1; c <= static_cast<int>(StatusCode::kInternal); ++c) {
    if (codeName == statusCodeName(static_cast<StatusCode>(c))) {
      return Status(static_cast<StatusCode>(c), message);
    }
  }
  return Status::internal(message);
}

std::optional<std::string> adminSocketOfStore(const std::string& storeDir) {
  std::ifstream in(storeDir + "/" + kAdminSocketPointerFile);
  if (!in) return std::nullopt;
  std::string path;
  std::getline(in, path);
  if (path.empty()) return std::nullopt;
  return path;
}

}  // namespace trialmesh::node
