// A verifier that remembers (issue #12, docs/ethics.md "Pinned tree heads"): the last signed
// tree head a board verified for each (site, log key), kept in a small state file, and the
// decision whether a newly downloaded log may be accepted given that pin, an expected head
// obtained out of band, and an explicitly accepted new key. Like a Certificate Transparency
// monitor: once a head is pinned, every later head must be a consistent extension of it (RFC
// 6962 consistency proof), so a truncated, rolled-back or rewritten (even consistently
// re-signed) log fails.
//
// State file format (text, one pin per line, '#' comments):
//   <site name> <hex of ethics::encodeTreeHead, 292 characters>
// written through a temporary file, fsync and rename, so a crash leaves the old or the new file.
//
// Thread-safety: pure functions, apart from the file I/O in loadPins/savePins.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "ethics/audit_log.h"
#include "ethics/key_rotation.h"

namespace trialmesh::ethics {

struct PinnedHead {
  std::string site;
  SignedTreeHead head;
};

// $XDG_STATE_HOME/trialmesh/audit-pins, or $HOME/.local/state/trialmesh/audit-pins.
// InvalidArgument when neither variable is set (pass --state).
Result<std::string> defaultPinPath();
// The pins in `path`; empty when the file does not exist. Corruption (with the line number)
// for a malformed line or a pin whose signature does not verify.
Result<std::vector<PinnedHead>> loadPins(const std::string& path);
// Writes atomically, creating the parent directory. IOError on failure.
[[nodiscard]] Status savePins(const std::string& path, const std::vector<PinnedHead>& pins);

// A head known out of band: "<64 hex root>@<tree size>" (as `audit verify` prints it).
struct ExpectedHead {
  uint64_t treeSize = 0;
  Hash root{};
};
Result<ExpectedHead> parseExpectedHead(std::string_view text);
std::string formatExpectedHead(const SignedTreeHead& head);

enum class PinOutcome {
  kFirstUse,     // nothing pinned for this site and key, no expected head: trust on first use
  kExpected,     // matched the expected head given on the command line
  kConsistent,   // a consistent extension of the pinned head
  kKeyAccepted,  // a new key, accepted explicitly with acceptKey (first use of that key)
  // A new key reached from the pinned one through signed key-rotation entries in a log that
  // extends the pinned head (ethics/key_rotation.h).
  kKeyRotated,
};

struct PinCheck {
  const std::vector<PinnedHead>* pins = nullptr;
  std::string site;
  // The downloaded entries [0, head.treeSize) and head; REQUIRES verifyLog to have passed.
  std::span<const StoredEntry> entries;
  SignedTreeHead head;
  // The site's RFC 6962 consistency proof from the pinned head's size to head.treeSize.
  std::span<const Hash> consistencyProof;
  std::optional<ExpectedHead> expected;
  std::optional<crypto::PublicKey> acceptKey;
  // When set, a head by another key than the pinned one is accepted if the log rotates from the
  // pinned key to it (followKeyRotation with this validity, e.g. from the members file).
  // REQUIRES `entries` to start at entry 0.
  KeyValidity keyValidity;
  KeyVouched keyVouched;  // optional, see followKeyRotation
};

// Decides whether the downloaded log may be accepted. Failures name what differs:
// PermissionDenied for a head by another key than the pinned one (unless the log rotates to it,
// see keyValidity, or acceptKey names the new key); Corruption for a truncated log ("rolled back"),
// a different root at the same size or a pinned prefix that no longer hashes to the pinned root
// ("rewritten"), and an expected head the log does not contain; InvalidArgument for an acceptKey
// that is not the head's key.
Result<PinOutcome> checkAgainstPins(const PinCheck& check);

// Returns the pins with `head` recorded for `site` (replacing the pin of the same site and key
// if `head` is not smaller).
std::vector<PinnedHead> withPin(std::vector<PinnedHead> pins, const std::string& site,
                                const SignedTreeHead& head);

// The pin for (site, key), if any.
const PinnedHead* findPin(const std::vector<PinnedHead>& pins, const std::string& site,
                          const crypto::PublicKey& key);

}  // namespace trialmesh::ethics
