#include "node/check_config.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "crypto/identity.h"
#include "node/admin_server.h"
#include "node/members_signature.h"
#include "node/ops/logging.h"
#include "storage/store.h"

namespace trialmesh::node {
namespace {

// Binds `address` ("host:port", "*:port", "[v6]:port") and closes the socket at once.
Status checkBindable(const std::string& address, const std::string& what) {
  const auto colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host == "*" ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return Status::invalidArgument(what + " " + address + ": cannot resolve: " + gai_strerror(rc));
  }
  std::string lastError = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      lastError = std::strerror(errno);
      continue;
    }
    // As the node's listener does: a port in TIME_WAIT is usable, one held by a listener is not.
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const bool bound = ::bind(fd, a->ai_addr, a->ai_addrlen) == 0;
    const int err = errno;
    ::close(fd);
    if (bound) {
      ::freeaddrinfo(found);
      return Status::ok();
    }
    lastError = err == EADDRINUSE
                    ? "address already in use (another process holds this port: stop it, or "
                      "change the address)"
                    : std::strerror(err);
  }
  ::freeaddrinfo(found);
  return Status::ioError(what + " " + address + ": " + lastError);
}

}  // namespace

Status checkDataDirPrivate(const std::string& dataDir, const std::string& configPath) {
  struct stat st {};
  if (::stat(dataDir.c_str(), &st) != 0) return Status::ok();  // "does not exist" comes later
  if ((st.st_mode & S_IRWXO) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::permissionDenied(
        configPath + ": data_dir " + dataDir + " is accessible to every local user (mode " + mode +
        ") and holds patient data; fix it with: chmod -R o-rwx " + dataDir);
  }
  return Status::ok();
}

Result<std::string> readIdentityPassphrase(const NodeConfig& config) {
  if (config.identityPassphraseFile) {
    std::ifstream in(*config.identityPassphraseFile);
    if (!in) {
      return Status::notFound(config.path + ": identity_passphrase_file '" +
                              *config.identityPassphraseFile + "' cannot be read");
    }
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
  }
  if (const char* env = std::getenv("TRIALMESH_PASSPHRASE")) return std::string(env);
  return Status::failedPrecondition(
      "the identity key file is passphrase-protected: set identity_passphrase_file in " +
      config.path + " or the environment variable TRIALMESH_PASSPHRASE");
}

Result<std::vector<std::string>> checkNodeConfig(const NodeConfig& config) {
  std::vector<std::string> passed;
  auto level = ops::parseLogLevel(config.logLevel);
  if (!level) return level.status().withContext(config.path + ": log_level");
  if (!config.logFile.empty()) {
    const auto dir = std::filesystem::path(config.logFile).parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::is_directory(dir, ec)) {
      return Status::notFound(config.path + ": log_file " + config.logFile + ": directory " +
                              dir.string() + " does not exist");
    }
  }
  passed.push_back("log_level " + config.logLevel);

  auto members = loadNodeMembers(config);
  if (!members) return members.status();
  const Member* self = members->findByName(config.name);
  if (self == nullptr || self->role != Role::kSite) {
    return Status::invalidArgument(config.path + ": name '" + config.name +
                                   "' is not a member with role site in " + config.membersPath);
  }
  passed.push_back("members " + config.membersPath + ": federation '" + members->federation +
                   "', '" + config.name + "' is a site" +
                   (config.membersSigner
                        ? ", signed by members_signer " + config.membersSigner->toText()
                        : std::string()));

  auto identity = crypto::loadIdentity(config.identityPath,
                                       [&config]() { return readIdentityPassphrase(config); });
  if (!identity) return identity.status().withContext(config.identityPath);
  TM_RETURN_IF_ERROR(checkOwnKey(*self, identity->pub, config.identityPath, nowUnixMs()));
  if (identity->pub == self->publicKey) {
    passed.push_back("identity " + config.identityPath + " matches the members file");
  } else {
    passed.push_back("identity " + config.identityPath + " is a previous key of '" + config.name +
                     "', accepted until " +
                     formatUtcTime(self->findPrevious(identity->pub)->refusedFromMs()) +
                     ": switch with trialmesh rotate-key before then");
  }

  std::error_code ec;
  if (!std::filesystem::is_directory(config.dataDir, ec)) {
    return Status::notFound(config.path + ": data_dir " + config.dataDir +
                            " does not exist (create it with `trialmesh import --store " +
                            config.dataDir + " ...`)");
  }
  Status isPrivate = checkDataDirPrivate(config.dataDir, config.path);
  if (!isPrivate.isOk()) return isPrivate;
  // The node creates its ethics stores under data_dir and the store writes there.
  if (::access(config.dataDir.c_str(), R_OK | W_OK | X_OK) != 0) {
    return Status::permissionDenied(config.path + ": data_dir " + config.dataDir +
                                    " is not writable by this user: " + std::strerror(errno) +
                                    " (run as the service user, e.g. sudo -u trialmesh)");
  }
  storage::StoreOptions storeOptions;
  storeOptions.readOnly = true;
  storeOptions.cacheBytes = 0;
  auto store = storage::Store::open(config.dataDir, storeOptions);
  if (!store) return store.status().withContext(config.path + ": data_dir");
  for (const auto& b : config.datasets) {
    auto source = (*store)->openDataset(b.dataset);
    if (!source) {
      return source.status().withContext(config.path + ": dataset '" + b.dataset + "' for study '" +
                                         b.study + "'");
    }
    passed.push_back("dataset '" + b.dataset + "' answers study '" + b.study + "'");
  }

  Status listen = checkBindable(config.listen, config.path + ": listen");
  if (!listen.isOk()) return listen;
  passed.push_back("listen " + config.listen + " can be bound");
  if (!config.opsListen.empty()) {
    Status ops = checkBindable(config.opsListen, config.path + ": ops_listen");
    if (!ops.isOk()) return ops;
    passed.push_back("ops_listen " + config.opsListen + " can be bound");
  }
  if (!config.adminSocket.empty()) {
    Status admin = checkAdminSocketPath(config.adminSocket);
    if (!admin.isOk()) return admin.withContext(config.path);
    passed.push_back("admin_socket " + config.adminSocket + ": directory is private");
  }
  return passed;
}

}  // namespace trialmesh::node
