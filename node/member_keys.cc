// The members file's key history (issue #13 item 3): which key of a member is accepted when,
// and the RFC 3339 times the file writes them with. Declared in node/config.h.
#include <time.h>

#include <chrono>
#include <cstdio>

#include "node/config.h"

namespace trialmesh::node {

Result<int64_t> parseUtcTime(const std::string& text) {
  const std::string usage = "'" + text +
                            "' is not a UTC time like 2026-11-01T00:00:00Z (RFC 3339, whole "
                            "seconds, ending in Z)";
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  char z = 0;
  int consumed = 0;
  if (text.size() != 20 ||
      std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &year, &month, &day, &hour, &minute,
                  &second, &z, &consumed) != 7 ||
      consumed != 20 || (z != 'Z' && z != 'z') || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':') {
    return Status::invalidArgument(usage);
  }
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 ||
      second > 59) {
    return Status::invalidArgument(usage + ": a field is out of range");
  }
  struct tm tm {};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const time_t secs = timegm(&tm);
  // timegm normalises 2026-02-30 to March 2nd: refuse a day the month does not have.
  if (tm.tm_mday != day || tm.tm_mon != month - 1) {
    return Status::invalidArgument(usage + ": there is no such day");
  }
  return static_cast<int64_t>(secs) * 1000;
}

std::string formatUtcTime(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

int64_t nowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* keyStateName(KeyState state) {
  switch (state) {
    case KeyState::kCurrent:
      return "current";
    case KeyState::kPrevious:
      return "previous";
    case KeyState::kRetired:
      return "retired";
    case KeyState::kRevoked:
      return "revoked";
    case KeyState::kUnknown:
      return "unknown";
  }
  return "?";
}

int64_t PreviousKey::refusedFromMs() const {
  return revokedFromMs && *revokedFromMs < retiredMs ? *revokedFromMs : retiredMs;
}

std::vector<crypto::PublicKey> Member::allKeys() const {
  std::vector<crypto::PublicKey> out{publicKey};
  for (const PreviousKey& p : previousKeys) out.push_back(p.key);
  return out;
}

const PreviousKey* Member::findPrevious(const crypto::PublicKey& key) const {
  for (const PreviousKey& p : previousKeys) {
    if (p.key == key) return &p;
  }
  return nullptr;
}

std::pair<const Member*, KeyState> Members::keyState(const crypto::PublicKey& key,
                                                     int64_t atMs) const {
  for (const Member& m : members) {
    if (m.publicKey == key) return {&m, KeyState::kCurrent};
    if (const PreviousKey* p = m.findPrevious(key)) {
      if (p->revokedFromMs && atMs >= *p->revokedFromMs) return {&m, KeyState::kRevoked};
      if (atMs >= p->retiredMs) return {&m, KeyState::kRetired};
      return {&m, KeyState::kPrevious};
    }
  }
  return {nullptr, KeyState::kUnknown};
}

std::vector<crypto::PublicKey> Member::keysAcceptedAt(int64_t atMs) const {
  std::vector<crypto::PublicKey> out{publicKey};
  for (const PreviousKey& p : previousKeys) {
    if (atMs < p.refusedFromMs()) out.push_back(p.key);
  }
  return out;
}

Status Member::checkKeyAt(const crypto::PublicKey& key, int64_t atMs,
                          const std::string& what) const {
  if (key == publicKey) return Status::ok();
  const PreviousKey* p = findPrevious(key);
  if (p == nullptr) {
    return Status::permissionDenied(what + ": key " + key.toText() + " is not a key of member '" +
                                    name + "' (its key is " + publicKey.toText() + ")");
  }
  const std::string tail =
      " (previous_keys in the members file); '" + name + "' now uses " + publicKey.toText();
  if (p->revokedFromMs && atMs >= *p->revokedFromMs) {
    return Status::permissionDenied(what + ": key " + key.toText() + " of member '" + name +
                                    "' is revoked (suspected compromise) from " +
                                    formatUtcTime(*p->revokedFromMs) + tail);
  }
  if (atMs >= p->retiredMs) {
    return Status::permissionDenied(what + ": key " + key.toText() + " of member '" + name +
                                    "' was retired at " + formatUtcTime(p->retiredMs) + tail);
  }
  return Status::ok();
}

Result<const Member*> Members::checkKey(const crypto::PublicKey& key, int64_t atMs,
                                        const std::string& what) const {
  auto [member, state] = keyState(key, atMs);
  if (member == nullptr) {
    return Status::permissionDenied(what + ": key " + key.toText() +
                                    " is not a key of any member of federation '" + federation +
                                    "'");
  }
  TM_RETURN_IF_ERROR(member->checkKeyAt(key, atMs, what));
  return member;
}

Status checkOwnKey(const Member& self, const crypto::PublicKey& running,
                   const std::string& identityPath, int64_t atMs) {
  if (running == self.publicKey) return Status::ok();
  const std::string lead = "identity " + identityPath + " has public key " + running.toText() +
                           " but the members file lists " + self.publicKey.toText() + " for '" +
                           self.name + "'";
  const PreviousKey* p = self.findPrevious(running);
  if (p == nullptr) return Status::permissionDenied(lead);
  if (p->revokedFromMs && atMs >= *p->revokedFromMs) {
    return Status::permissionDenied(lead + "; this node's key is revoked from " +
                                    formatUtcTime(*p->revokedFromMs) +
                                    ": switch to the new key now (trialmesh rotate-key, "
                                    "docs/keys.md)");
  }
  if (atMs >= p->retiredMs) {
    return Status::permissionDenied(lead + "; this node's key was retired at " +
                                    formatUtcTime(p->retiredMs) +
                                    ": switch to the new key (trialmesh rotate-key, docs/keys.md)");
  }
  return Status::ok();
}

}  // namespace trialmesh::node
