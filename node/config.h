// Federation membership (the members file) and a site node's configuration (node.toml), both
// TOML, loaded strictly: an unknown key, a missing required key or a bad value is an error
// naming the file, the key and the rule, and the node refuses to start rather than guess.
// Every key and its default: docs/deployment.md.
//
// Thread-safety: plain values; the loaders are pure apart from reading files.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "ethics/head_pin.h"

namespace trialmesh::node {

enum class Role { kSite, kCoordinator, kEthicsBoard };
const char* roleName(Role role);  // "site", "coordinator", "ethics-board"

// A key the member used before its current one (issue #13 item 3, docs/keys.md "Rotation").
// It is accepted, for connections and for signatures dated before `retiredMs`, so members can
// switch one by one during the grace period the organiser chooses; from `retiredMs` on it is
// refused. A key suspected compromised also carries `revokedFromMs`: from then on it is refused
// too, and so is any signature it made dated at or after that time (an old tree head, a
// key-change entry), since whoever holds the key can write any date.
struct PreviousKey {
  crypto::PublicKey key{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  int64_t retiredMs = 0;                 // previous_keys.retired, ms since the Unix epoch
  std::optional<int64_t> revokedFromMs;  // previous_keys.revoked_from
  // The time from which the key is refused: the earlier of retirement and revocation.
  int64_t refusedFromMs() const;
};

struct Member {
  std::string name;  // unique, [A-Za-z0-9_.-]{1,64}
  Role role = Role::kSite;
  crypto::PublicKey publicKey{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  std::string address;                    // sites only: "host:port" the node listens on
  std::vector<std::string> studies;       // sites only, optional: studies it answers (empty: all)
  std::vector<PreviousKey> previousKeys;  // previous_keys, optional, in file order

  // The current key first, then every previous key, valid or not (for a handshake whose
  // result is checked with Members::checkKey, so a refusal can say why).
  std::vector<crypto::PublicKey> allKeys() const;
  const PreviousKey* findPrevious(const crypto::PublicKey& key) const;
  // The current key and the previous keys not yet retired or revoked at `atMs`: the keys a
  // query is addressed to and a connection to this member may present.
  std::vector<crypto::PublicKey> keysAcceptedAt(int64_t atMs) const;
  // OK if `key` is this member's current key or a previous key accepted at `atMs`;
  // PermissionDenied naming the member, the key and its state otherwise (see Members::checkKey).
  [[nodiscard]] Status checkKeyAt(const crypto::PublicKey& key, int64_t atMs,
                                  const std::string& what) const;
};

// What the members file says about a key at a given time.
enum class KeyState {
  kCurrent,   // the member's public_key
  kPrevious,  // in previous_keys, not yet retired or revoked at that time
  kRetired,   // in previous_keys, retired at or before that time
  kRevoked,   // in previous_keys, revoked_from at or before that time
  kUnknown,   // no member lists it
};
const char* keyStateName(KeyState state);  // "current", "previous", "retired", ...

struct Members {
  std::string federation;
  std::vector<Member> members;  // in file order

  const Member* findByName(const std::string& name) const;
  // The member whose current key is `key`, or whose previous key it is and still accepted now
  // (system clock); nullptr otherwise.
  const Member* findByKey(const crypto::PublicKey& key) const;
  // Every key of every member (current and previous), for the handshake; check the result
  // with checkKey.
  std::vector<crypto::PublicKey> keys() const;
  // The member listing `key` (current or previous, whatever its state) and the key's state at
  // `atMs`; {nullptr, kUnknown} if no member lists it.
  std::pair<const Member*, KeyState> keyState(const crypto::PublicKey& key, int64_t atMs) const;
  // The member if `key` is accepted at `atMs` (current, or previous not yet retired or
  // revoked); PermissionDenied naming the member, the key and its state otherwise ("key tmpk1...
  // of member 'west' was retired at 2026-11-01T00:00:00Z (previous_keys in the members file)").
  // `what` starts the message ("connection", "query signer", "tree head").
  Result<const Member*> checkKey(const crypto::PublicKey& key, int64_t atMs,
                                 const std::string& what) const;
  // Sites that answer `study`, in file order.
  std::vector<const Member*> sitesOf(const std::string& study) const;
};

// Parses a members file. `sourceName` prefixes errors ("members.toml: member[2] (name
// 'west-china'): public_key: checksum mismatch ..."). Names and keys must be unique; sites
// need an address; at most 10,000 members.
Result<Members> parseMembers(const std::string& text, const std::string& sourceName);
// Reads without checking a signature; a site node uses loadNodeMembers (node/members_signature.h).
Result<Members> loadMembers(const std::string& path);

// A site node's own identity against its entry in the members file: OK for the member's
// current key, and for a previous key still accepted at `atMs` (the node keeps running on the
// old key until `trialmesh rotate-key` switches it, docs/keys.md). PermissionDenied otherwise,
// naming the identity file, both keys and the old key's state.
Status checkOwnKey(const Member& self, const crypto::PublicKey& running,
                   const std::string& identityPath, int64_t atMs);

// "2026-11-01T00:00:00Z" (RFC 3339, UTC, whole seconds) <-> ms since the Unix epoch.
Result<int64_t> parseUtcTime(const std::string& text);
std::string formatUtcTime(int64_t ms);
int64_t nowUnixMs();

// A whole file as text; NotFound naming `what` and the path when it cannot be opened.
Result<std::string> readConfigFile(const std::string& path, const char* what);

struct NodeLimits {
  uint64_t maxMessageBytes = 16ull << 20;  // largest RPC message from a peer (64 KiB..1 GiB)
  uint32_t maxConcurrentQueries = 8;       // queries scanning at once; more are refused
  uint32_t maxConnections = 64;      // authenticated peer connections; more are closed after the
                                     // handshake (unauthenticated ones have their own budget below)
  uint32_t queryTimeoutMs = 60'000;  // a scan running longer is answered with an error
  uint32_t workerThreads = 0;        // scan thread pool size; 0 = hardware threads
  uint32_t scanThreads = 1;          // threads one query's scan may use
  int64_t maxQueryAgeMs = 300'000;   // longest query validity (expires - issued)
  int64_t clockSkewMs = 30'000;      // tolerated coordinator/site clock difference
  uint32_t handshakeTimeoutMs = 3'000;  // time a new connection has to authenticate
  // Connections still in the handshake (node/handshake_budget.h): in total (when full, a new
  // one evicts the oldest) and per source address (when full, more are refused).
  uint32_t maxUnauthenticatedConnections = 128;
  uint32_t maxUnauthenticatedPerAddress = 16;
  // Refusals before the ethics check written to the audit log one by one, per reason class and
  // minute; the rest are counted in one summary entry (node/refusal_audit.h). 0..10000.
  uint32_t auditRefusalsPerMinute = 20;
};

struct DatasetBinding {
  std::string study;    // e.g. "LUNG-7"
  std::string dataset;  // store dataset name answering it, e.g. "lung7"
};

// [ethics]: how this site recognises ethics approvals and where it keeps them and its audit log
// (docs/ethics.md). There is deliberately no switch to turn enforcement off: a site answers a
// query only under a valid approval, so a node without recognised committees refuses every
// query with the reason.
struct EthicsConfig {
  std::string auditDir;      // audit log RocksDB; default <data_dir>/ethics-audit
  std::string approvalsDir;  // approvals/statements RocksDB; default <data_dir>/ethics-approvals
  // Standing list: approvals signed by one of these committees are recognised.
  std::vector<crypto::PublicKey> recognisedCommittees;
  // Countersignature: each approval needs a recognition statement signed by this committee.
  // Exclusive with recognisedCommittees.
  std::optional<crypto::PublicKey> ownCommittee;
  // peer_check_interval_ms: how often this site fetches every peer site's signed tree head and
  // a consistency proof from the head it verified last (fork detection, node/peer_audit.h).
  // Default 60000; 0 turns the checks off. The first check runs one interval after start.
  uint32_t peerCheckIntervalMs = 60'000;
  // [ethics.peer_heads]: per peer site name, a head "<root hex>@<size>" known out of band (e.g.
  // from an ethics board's `audit verify` report). At first contact the peer must prove its log
  // extends it, instead of being trusted on first use (node/peer_audit.h).
  std::map<std::string, ethics::ExpectedHead> peerHeads;
};

struct NodeConfig {
  std::string path;  // the config file itself
  std::string name;  // this node's member name (role site)
  std::string identityPath;
  std::optional<std::string> identityPassphraseFile;
  std::string listen;  // "host:port"
  std::string dataDir;
  std::string membersPath;
  // members_signer: the federation organiser's public key. When set, the members file must
  // carry a valid "<members>.sig" by this key, checked at start and at every reload
  // (node/members_signature.h).
  std::optional<crypto::PublicKey> membersSigner;
  std::string opsListen;  // "" = no ops endpoint
  // admin_socket: the local admin channel (node/admin_server.h) for live import, datasets and
  // backup. Default <data_dir>/admin.sock; "off" (stored as "") turns it off.
  std::string adminSocket;
  // Why the default admin socket is off (its path is too long for a Unix socket): the node
  // starts without it and logs this, rather than refusing to start over a setting nobody made.
  std::string adminSocketOffReason;
  std::string logFormat = "plain";
  std::string logFile;  // "" = stderr
  std::string logLevel = "info";
  NodeLimits limits;
  std::vector<DatasetBinding> datasets;
  EthicsConfig ethics;
  // [testing] scan_delay_ms: fault injection for the end-to-end tests: every scan waits this
  // long before it starts (interrupted by shutdown), so a test can act while a query is in
  // flight. Default 0; never set it in production.
  uint32_t testScanDelayMs = 0;
};

// Parses node.toml; relative paths are resolved against `baseDir` (the file's directory).
Result<NodeConfig> parseNodeConfig(const std::string& text, const std::string& sourceName,
                                   const std::string& baseDir);
Result<NodeConfig> loadNodeConfig(const std::string& path);

// Checks "host:port" (port 0..65535, host non-empty); `what` names the key in errors.
Status checkHostPort(const std::string& address, const std::string& what);

}  // namespace trialmesh::node
