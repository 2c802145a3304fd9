#include "node/config.h"

#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace trialmesh::node {
namespace {

constexpr size_t kMaxMembers = 10'000;

}  // namespace

Result<std::string> readConfigFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::notFound(std::string(what) + " '" + path + "' cannot be opened (" +
                            (std::filesystem::exists(path) ? "permission denied" : "no such file") +
                            ")");
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

Result<toml::table> parseToml(const std::string& text, const std::string& source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Status::invalidArgument(source + ":" + std::to_string(e.source().begin.line) + ":" +
                                   std::to_string(e.source().begin.column) +
                                   ": TOML syntax error: " + std::string(e.description()));
  }
}

std::string lineOf(const toml::node& n) {
  return n.source().begin ? ":" + std::to_string(n.source().begin.line) : std::string();
}

// Refuses keys not in `allowed`.
Status checkKeys(const toml::table& t, const std::set<std::string>& allowed,
                 const std::string& where) {
  for (const auto& [key, value] : t) {
    if (allowed.count(std::string(key.str())) == 0) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return Status::invalidArgument(where + lineOf(value) + ": unknown key '" +
                                     std::string(key.str()) + "' (allowed: " + list + ")");
    }
  }
  return Status::ok();
}

Result<std::string> getString(const toml::table& t, const std::string& key,
                              const std::string& where, bool required) {
  const toml::node* n = t.get(key);
  if (n == nullptr) {
    if (required) return Status::invalidArgument(where + ": missing required key '" + key + "'");
    return std::string();
  }
  if (!n->is_string()) {
    return Status::invalidArgument(where + lineOf(*n) + ": key '" + key + "' must be a string");
  }
  return std::string(*n->value<std::string>());
}

Result<int64_t> getInt(const toml::table& t, const std::string& key, const std::string& where,
                       int64_t def, int64_t min, int64_t max) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return def;
  if (!n->is_integer()) {
    return Status::invalidArgument(where + lineOf(*n) + ": key '" + key + "' must be an integer");
  }
  int64_t v = *n->value<int64_t>();
  if (v < min || v > max) {
    return Status::invalidArgument(where + lineOf(*n) + ": key '" + key +
                                   "' = " + std::to_string(v) + " is outside " +
                                   std::to_string(min) + ".." + std::to_string(max));
  }
  return v;
}

bool validName(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

std::string resolve(const std::string& baseDir, const std::string& p) {
  if (p.empty() || std::filesystem::path(p).is_absolute()) return p;
  return (std::filesystem::path(baseDir) / p).lexically_normal().string();
}

// previous_keys = [{ key = "tmpk1...", retired = "2026-11-01T00:00:00Z",
//                   revoked_from = "2026-10-20T08:00:00Z" }]   (revoked_from optional)
Result<std::vector<PreviousKey>> parsePreviousKeys(const toml::node& node,
                                                   const std::string& where) {
  const toml::array* list = node.as_array();
  const std::string usage =
      ": previous_keys must be a list of tables like { key = \"tmpk1...\", retired = "
      "\"2026-11-01T00:00:00Z\" } (optional revoked_from = \"<time>\")";
  if (list == nullptr) return Status::invalidArgument(where + lineOf(node) + usage);
  std::vector<PreviousKey> out;
  for (size_t i = 0; i < list->size(); ++i) {
    const toml::table* t = (*list)[i].as_table();
    const std::string at = where + ": previous_keys[" + std::to_string(i + 1) + "]";
    if (t == nullptr) return Status::invalidArgument(at + usage);
    TM_RETURN_IF_ERROR(checkKeys(*t, {"key", "retired", "revoked_from"}, at));
    PreviousKey p;
    TM_ASSIGN_OR_RETURN(std::string keyText, getString(*t, "key", at, true));
    auto key = crypto::parsePublicKey(keyText);
    if (!key) return Status::invalidArgument(at + ": key: " + key.status().message());
    p.key = *key;
    TM_ASSIGN_OR_RETURN(std::string retired, getString(*t, "retired", at, true));
    auto retiredMs = parseUtcTime(retired);
    if (!retiredMs) {
      return Status::invalidArgument(at + ": retired " + retiredMs.status().message() +
                                     ": the time from which this key is refused");
    }
    p.retiredMs = *retiredMs;
    TM_ASSIGN_OR_RETURN(std::string revoked, getString(*t, "revoked_from", at, false));
    if (!revoked.empty()) {
      auto revokedMs = parseUtcTime(revoked);
      if (!revokedMs) {
        return Status::invalidArgument(at + ": revoked_from " + revokedMs.status().message() +
                                       ": the time from which the key counts as compromised");
      }
      p.revokedFromMs = *revokedMs;
    }
    out.push_back(p);
  }
  return out;
}

}  // namespace

const char* roleName(Role role) {
  switch (role) {
    case Role::kSite:
      return "site";
    case Role::kCoordinator:
      return "coordinator";
    case Role::kEthicsBoard:
      return "ethics-board";
  }
  return "?";
}

Status checkHostPort(const std::string& address, const std::string& what) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return Status::invalidArgument(what + " '" + address +
                                   "' must be host:port, e.g. 127.0.0.1:7401");
  }
  const std::string port = address.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535) {
    return Status::invalidArgument(what + " '" + address + "': port '" + port +
                                   "' must be a number 0..65535");
  }
  return Status::ok();
}

const Member* Members::findByName(const std::string& name) const {
  for (const auto& m : members) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

const Member* Members::findByKey(const crypto::PublicKey& key) const {
  auto [member, state] = keyState(key, nowUnixMs());
  return state == KeyState::kCurrent || state == KeyState::kPrevious ? member : nullptr;
}

std::vector<crypto::PublicKey> Members::keys() const {
  std::vector<crypto::PublicKey> out;
  for (const auto& m : members) {
    for (const crypto::PublicKey& k : m.allKeys()) out.push_back(k);
  }
  return out;
}

std::vector<const Member*> Members::sitesOf(const std::string& study) const {
  std::vector<const Member*> out;
  for (const auto& m : members) {
    if (m.role != Role::kSite) continue;
    bool serves = m.studies.empty();
    for (const auto& s : m.studies) serves = serves || s == study;
    if (serves) out.push_back(&m);
  }
  return out;
}

Result<Members> parseMembers(const std::string& text, const std::string& source) {
  TM_ASSIGN_OR_RETURN(toml::table root, parseToml(text, source));
  TM_RETURN_IF_ERROR(checkKeys(root, {"federation", "member"}, source));
  Members out;
  TM_ASSIGN_OR_RETURN(out.federation, getString(root, "federation", source, true));
  if (!validName(out.federation)) {
    return Status::invalidArgument(source + ": federation '" + out.federation +
                                   "' must be 1-64 characters of A-Z a-z 0-9 _ . -");
  }
  const toml::node* list = root.get("member");
  if (list == nullptr || !list->is_array_of_tables()) {
    return Status::invalidArgument(source + ": needs [[member]] entries (name, role, public_key)");
  }
  const toml::array& arr = *list->as_array();
  if (arr.size() > kMaxMembers) {
    return Status::invalidArgument(source + ": more than " + std::to_string(kMaxMembers) +
                                   " members");
  }
  std::set<std::string> names;
  std::set<crypto::PublicKey> keys;
  for (size_t i = 0; i < arr.size(); ++i) {
    const toml::table& t = *arr[i].as_table();
    std::string where = source + ": member[" + std::to_string(i + 1) + "]";
    TM_RETURN_IF_ERROR(
        checkKeys(t, {"name", "role", "public_key", "address", "studies", "previous_keys"}, where));
    Member m;
    TM_ASSIGN_OR_RETURN(m.name, getString(t, "name", where, true));
    if (!validName(m.name)) {
      return Status::invalidArgument(where + ": name '" + m.name +
                                     "' must be 1-64 characters of A-Z a-z 0-9 _ . -");
    }
    where += " (name '" + m.name + "')";
    TM_ASSIGN_OR_RETURN(std::string role, getString(t, "role", where, true));
    if (role == "site") {
      m.role = Role::kSite;
    } else if (role == "coordinator") {
      m.role = Role::kCoordinator;
    } else if (role == "ethics-board") {
      m.role = Role::kEthicsBoard;
    } else {
      return Status::invalidArgument(where + ": role '" + role +
                                     "' must be site, coordinator or ethics-board");
    }
    TM_ASSIGN_OR_RETURN(std::string keyText, getString(t, "public_key", where, true));
    auto key = crypto::parsePublicKey(keyText);
    if (!key) return Status::invalidArgument(where + ": public_key: " + key.status().message());
    m.publicKey = *key;
    TM_ASSIGN_OR_RETURN(m.address, getString(t, "address", where, false));
    if (m.role == Role::kSite) {
      if (m.address.empty()) {
        return Status::invalidArgument(where + ": a site needs address = \"host:port\"");
      }
      TM_RETURN_IF_ERROR(checkHostPort(m.address, where + ": address"));
    } else if (!m.address.empty()) {
      return Status::invalidArgument(where + ": address is only for sites (role is " + role + ")");
    }
    if (const toml::node* studies = t.get("studies")) {
      const toml::array* sa = studies->as_array();
      if (sa == nullptr || m.role != Role::kSite) {
        return Status::invalidArgument(where + lineOf(*studies) +
                                       ": studies must be a list of strings, for sites only");
      }
      for (const auto& s : *sa) {
        if (!s.is_string()) {
          return Status::invalidArgument(where + ": studies must be a list of strings");
        }
        m.studies.push_back(*s.value<std::string>());
      }
    }
    if (const toml::node* previous = t.get("previous_keys")) {
      TM_ASSIGN_OR_RETURN(m.previousKeys, parsePreviousKeys(*previous, where));
    }
    if (!names.insert(m.name).second) {
      return Status::invalidArgument(where + ": duplicate member name '" + m.name + "'");
    }
    if (!keys.insert(m.publicKey).second) {
      return Status::invalidArgument(where + ": public_key is already used by another member " +
                                     "(as its public_key or in its previous_keys)");
    }
    for (size_t k = 0; k < m.previousKeys.size(); ++k) {
      if (!keys.insert(m.previousKeys[k].key).second) {
        return Status::invalidArgument(
            where + ": previous_keys[" + std::to_string(k + 1) + "]: key " +
            m.previousKeys[k].key.toText() +
            " is already listed (this member's public_key, another previous key, or another "
            "member's key): a key belongs to one member once");
      }
    }
    out.members.push_back(std::move(m));
  }
  return out;
}

Result<Members> loadMembers(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::string text, readConfigFile(path, "members file"));
  return parseMembers(text, path);
}

Result<NodeConfig> parseNodeConfig(const std::string& text, const std::string& source,
                                   const std::string& baseDir) {
  TM_ASSIGN_OR_RETURN(toml::table root, parseToml(text, source));
  TM_RETURN_IF_ERROR(
      checkKeys(root,
                {"name", "identity", "identity_passphrase_file", "listen", "data_dir", "members",
                 "members_signer", "ops_listen", "log_format", "log_file", "log_level", "limits",
                 "dataset", "testing", "ethics", "admin_socket"},
                source));
  NodeConfig c;
  c.path = source;
  TM_ASSIGN_OR_RETURN(c.name, getString(root, "name", source, true));
  TM_ASSIGN_OR_RETURN(std::string identity, getString(root, "identity", source, true));
  c.identityPath = resolve(baseDir, identity);
  TM_ASSIGN_OR_RETURN(std::string pass, getString(root, "identity_passphrase_file", source, false));
  if (!pass.empty()) c.identityPassphraseFile = resolve(baseDir, pass);
  TM_ASSIGN_OR_RETURN(c.listen, getString(root, "listen", source, true));
  TM_RETURN_IF_ERROR(checkHostPort(c.listen, source + ": listen"));
  TM_ASSIGN_OR_RETURN(std::string dataDir, getString(root, "data_dir", source, true));
  c.dataDir = resolve(baseDir, dataDir);
  TM_ASSIGN_OR_RETURN(std::string members, getString(root, "members", source, true));
  c.membersPath = resolve(baseDir, members);
  TM_ASSIGN_OR_RETURN(std::string signer, getString(root, "members_signer", source, false));
  if (!signer.empty()) {
    auto key = crypto::parsePublicKey(signer);
    if (!key) return key.status().withContext(source + ": members_signer");
    c.membersSigner = *key;
  }
  TM_ASSIGN_OR_RETURN(std::string admin, getString(root, "admin_socket", source, false));
  if (admin == "off") {
    c.adminSocket.clear();
  } else {
    c.adminSocket = admin.empty() ? c.dataDir + "/admin.sock" : resolve(baseDir, admin);
    // sockaddr_un holds 107 bytes and a NUL. A path set explicitly is checked (and refused)
    // where the socket is made; the default one is dropped with the reason instead.
    if (admin.empty() && c.adminSocket.size() > 107) {
      c.adminSocketOffReason = "the default admin_socket " + c.adminSocket +
                               " is longer than a Unix socket path may be (107 bytes); set "
                               "admin_socket to a shorter path for live import and backup";
      c.adminSocket.clear();
    }
  }
  TM_ASSIGN_OR_RETURN(c.opsListen, getString(root, "ops_listen", source, false));
  if (!c.opsListen.empty()) TM_RETURN_IF_ERROR(checkHostPort(c.opsListen, source + ": ops_listen"));
  TM_ASSIGN_OR_RETURN(std::string format, getString(root, "log_format", source, false));
  if (!format.empty()) c.logFormat = format;
  if (c.logFormat != "plain" && c.logFormat != "json") {
    return Status::invalidArgument(source + ": log_format '" + c.logFormat +
                                   "' must be \"plain\" or \"json\"");
  }
  TM_ASSIGN_OR_RETURN(std::string logFile, getString(root, "log_file", source, false));
  c.logFile = resolve(baseDir, logFile);
  TM_ASSIGN_OR_RETURN(std::string level, getString(root, "log_level", source, false));
  if (!level.empty()) c.logLevel = level;

  if (const toml::node* ln = root.get("limits")) {
    const toml::table* lt = ln->as_table();
    const std::string where = source + ": [limits]";
    if (lt == nullptr) return Status::invalidArgument(source + ": limits must be a table");
    TM_RETURN_IF_ERROR(
        checkKeys(*lt,
                  {"max_message_bytes", "max_concurrent_queries", "max_connections",
                   "query_timeout_ms", "worker_threads", "scan_threads", "max_query_age_ms",
                   "clock_skew_ms", "handshake_timeout_ms", "max_unauthenticated_connections",
                   "max_unauthenticated_per_address", "audit_refusals_per_minute"},
                  where));
    NodeLimits& l = c.limits;
    TM_ASSIGN_OR_RETURN(
        int64_t v, getInt(*lt, "max_message_bytes", where, static_cast<int64_t>(l.maxMessageBytes),
                          64 << 10, 1 << 30));
    l.maxMessageBytes = static_cast<uint64_t>(v);
    TM_ASSIGN_OR_RETURN(
        v, getInt(*lt, "max_concurrent_queries", where, l.maxConcurrentQueries, 1, 10'000));
    l.maxConcurrentQueries = static_cast<uint32_t>(v);
    TM_ASSIGN_OR_RETURN(v, getInt(*lt, "max_connections", where, l.maxConnections, 1, 100'000));
    l.maxConnections = static_cast<uint32_t>(v);
    TM_ASSIGN_OR_RETURN(v, getInt(*lt, "query_timeout_ms", where, l.queryTimeoutMs, 1, 86'400'000));
    l.queryTimeoutMs = static_cast<uint32_t>(v);
    TM_ASSIGN_OR_RETURN(v, getInt(*lt, "worker_threads", where, l.workerThreads, 0, 1024));
    l.workerThreads = static_cast<uint32_t>(v);
    TM_ASSIGN_OR_RETURN(v, getInt(*lt, "scan_threads", where, l.scanThreads, 1, 1024));
    l.scanThreads = static_cast<uint32_t>(v);
    TM_ASSIGN_OR_RETURN(v,
                        getInt(*lt, "max_query_age_ms", where, l.maxQueryAgeMs, 1'000, 86'400'000));
    l.maxQueryAgeMs = v;
    TM_ASSIGN_OR_RETURN(v, getInt(*lt, "clock_skew_ms", where, l.clockSkewMs, 0, 3'600'000));
    l.clockSkewMs = v;
    TM_ASSIGN_OR_RETURN(
        v, getInt(*lt, "handshake_timeout_ms", where, l.handshakeTimeoutMs, 100, 600'000));
    l.handshakeTimeoutMs = static_cast<uint32_t>(v);
    TM_ASSIGN_OR_RETURN(v, getInt(*lt, "max_unauthenticated_connections", where,
                                  l.maxUnauthenticatedConnections, 1, 100'000));
    l.maxUnauthenticatedConnections = static_cast<uint32_t>(v);
    TM_ASSIGN_OR_RETURN(v, getInt(*lt, "max_unauthenticated_per_address", where,
                                  l.maxUnauthenticatedPerAddress, 1, 100'000));
    l.maxUnauthenticatedPerAddress = static_cast<uint32_t>(v);
    TM_ASSIGN_OR_RETURN(
        v, getInt(*lt, "audit_refusals_per_minute", where, l.auditRefusalsPerMinute, 0, 10'000));
    l.auditRefusalsPerMinute = static_cast<uint32_t>(v);
  }

  c.ethics.auditDir = c.dataDir + "/ethics-audit";
  c.ethics.approvalsDir = c.dataDir + "/ethics-approvals";
  if (const toml::node* en = root.get("ethics")) {
    const toml::table* et = en->as_table();
    const std::string where = source + ": [ethics]";
    if (et == nullptr) return Status::invalidArgument(source + ": ethics must be a table");
    TM_RETURN_IF_ERROR(checkKeys(*et,
                                 {"audit_dir", "approvals_dir", "recognised_committees",
                                  "own_committee", "peer_check_interval_ms", "peer_heads"},
                                 where));
    TM_ASSIGN_OR_RETURN(int64_t peerCheck, getInt(*et, "peer_check_interval_ms", where,
                                                  c.ethics.peerCheckIntervalMs, 0, 86'400'000));
    c.ethics.peerCheckIntervalMs = static_cast<uint32_t>(peerCheck);
    if (const toml::node* ph = et->get("peer_heads")) {
      const toml::table* pt = ph->as_table();
      if (pt == nullptr) {
        return Status::invalidArgument(where + lineOf(*ph) +
                                       ": peer_heads must be a table of peer site name = "
                                       "\"<root hex>@<size>\"");
      }
      for (const auto& [name, value] : *pt) {
        const std::optional<std::string> text = value.value<std::string>();
        if (!text) {
          return Status::invalidArgument(where + lineOf(value) + ": peer_heads." +
                                         std::string(name.str()) +
                                         " must be a string \"<root hex>@<size>\"");
        }
        auto head = ethics::parseExpectedHead(*text);
        if (!head) {
          return head.status().withContext(where + lineOf(value) + ": peer_heads." +
                                           std::string(name.str()));
        }
        c.ethics.peerHeads[std::string(name.str())] = *head;
      }
    }
    TM_ASSIGN_OR_RETURN(std::string audit, getString(*et, "audit_dir", where, false));
    if (!audit.empty()) c.ethics.auditDir = resolve(baseDir, audit);
    TM_ASSIGN_OR_RETURN(std::string approvals, getString(*et, "approvals_dir", where, false));
    if (!approvals.empty()) c.ethics.approvalsDir = resolve(baseDir, approvals);
    if (const toml::node* rc = et->get("recognised_committees")) {
      const toml::array* ra = rc->as_array();
      if (ra == nullptr) {
        return Status::invalidArgument(where + lineOf(*rc) +
                                       ": recognised_committees must be a list of committee "
                                       "public keys (\"tmpk1...\")");
      }
      for (size_t i = 0; i < ra->size(); ++i) {
        auto text = (*ra)[i].value<std::string>();
        if (!text) {
          return Status::invalidArgument(where + lineOf((*ra)[i]) + ": recognised_committees[" +
                                         std::to_string(i + 1) + "] must be a string");
        }
        auto key = crypto::parsePublicKey(*text);
        if (!key) {
          return Status::invalidArgument(where + lineOf((*ra)[i]) + ": recognised_committees[" +
                                         std::to_string(i + 1) + "]: " + key.status().message());
        }
        c.ethics.recognisedCommittees.push_back(*key);
      }
    }
    TM_ASSIGN_OR_RETURN(std::string own, getString(*et, "own_committee", where, false));
    if (!own.empty()) {
      auto key = crypto::parsePublicKey(own);
      if (!key) {
        return Status::invalidArgument(where + ": own_committee: " + key.status().message());
      }
      c.ethics.ownCommittee = *key;
    }
    if (c.ethics.ownCommittee && !c.ethics.recognisedCommittees.empty()) {
      return Status::invalidArgument(
          where +
          ": set either recognised_committees (standing list) or own_committee "
          "(countersignature per approval), not both");
    }
  }

  if (const toml::node* tn = root.get("testing")) {
    const toml::table* tt = tn->as_table();
    const std::string where = source + ": [testing]";
    if (tt == nullptr) return Status::invalidArgument(source + ": testing must be a table");
    TM_RETURN_IF_ERROR(checkKeys(*tt, {"scan_delay_ms"}, where));
    TM_ASSIGN_OR_RETURN(int64_t d, getInt(*tt, "scan_delay_ms", where, 0, 0, 600'000));
    c.testScanDelayMs = static_cast<uint32_t>(d);
  }

  const toml::node* ds = root.get("dataset");
  if (ds == nullptr || !ds->is_array_of_tables()) {
    return Status::invalidArgument(source +
                                   ": needs at least one [[dataset]] with study and name, e.g. "
                                   "study = \"LUNG-7\", name = \"lung7\"");
  }
  std::set<std::string> studies;
  const toml::array& arr = *ds->as_array();
  for (size_t i = 0; i < arr.size(); ++i) {
    const toml::table& t = *arr[i].as_table();
    const std::string where = source + ": dataset[" + std::to_string(i + 1) + "]";
    TM_RETURN_IF_ERROR(checkKeys(t, {"study", "name"}, where));
    DatasetBinding b;
    TM_ASSIGN_OR_RETURN(b.study, getString(t, "study", where, true));
    TM_ASSIGN_OR_RETURN(b.dataset, getString(t, "name", where, true));
    if (b.study.empty() || !validName(b.dataset)) {
      return Status::invalidArgument(where +
                                     ": study must be non-empty and name 1-64 characters "
                                     "of A-Z a-z 0-9 _ . -");
    }
    if (!studies.insert(b.study).second) {
      return Status::invalidArgument(where + ": study '" + b.study + "' is bound twice");
    }
    c.datasets.push_back(std::move(b));
  }
  return c;
}

Result<NodeConfig> loadNodeConfig(const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::string text, readConfigFile(path, "node config"));
  std::string base = std::filesystem::path(path).parent_path().string();
  if (base.empty()) base = ".";
  return parseNodeConfig(text, path, base);
}

}  // namespace trialmesh::node
