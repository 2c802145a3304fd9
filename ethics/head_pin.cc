#include "ethics/head_pin.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "crypto/hash.h"

namespace trialmesh::ethics {
namespace {

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::optional<std::string> fromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]);
    const int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

std::string headText(const SignedTreeHead& h) {
  return std::to_string(h.treeSize) + " entries, root " + hashHex(h.root) + ", signed " +
         std::to_string(h.timestampMs / 1000) + " s after the epoch";
}

// Root of the first `size` downloaded entries. REQUIRES size <= entries.size().
Hash prefixRoot(std::span<const StoredEntry> entries, uint64_t size) {
  CompactRange range;
  for (uint64_t i = 0; i < size; ++i) range.append(leafHash(bytesOf(entries[i].bytes)));
  return range.root();
}

Status checkExpected(const PinCheck& c, const ExpectedHead& want) {
  if (want.treeSize > c.head.treeSize) {
    return Status::corruption("the log was truncated or rolled back: the expected head covers " +
                              std::to_string(want.treeSize) + " entries but the site's log has " +
                              std::to_string(c.head.treeSize));
  }
  const Hash got = prefixRoot(c.entries, want.treeSize);
  if (got != want.root) {
    return Status::corruption("the log was rewritten: its first " + std::to_string(want.treeSize) +
                              " entries hash to root " + hashHex(got) + " but the expected head " +
                              "says " + hashHex(want.root));
  }
  return Status::ok();
}

Status checkPinned(const PinCheck& c, const SignedTreeHead& pin) {
  const std::string pinned = "the pinned head (" + headText(pin) + ")";
  if (c.head.treeSize < pin.treeSize) {
    return Status::corruption("the log was truncated or rolled back: " + pinned +
                              " is larger than the site's log now (" +
                              std::to_string(c.head.treeSize) + " entries)");
  }
  if (c.head.treeSize == pin.treeSize && c.head.root != pin.root) {
    return Status::corruption("the log was rewritten: same size " + std::to_string(pin.treeSize) +
                              " as " + pinned + " but a different root " + hashHex(c.head.root));
  }
  // The site must prove that its new head extends the pinned one ...
  Status proof =
      verifyConsistency(pin.treeSize, c.head.treeSize, pin.root, c.head.root, c.consistencyProof);
  if (!proof.isOk()) {
    return Status::corruption("the log was rewritten: the site cannot prove that its head (" +
                              headText(c.head) + ") extends " + pinned + ": " + proof.message());
  }
  // ... and the entries we downloaded must be that extension (checked independently of the
  // proof, so the report names the rewritten prefix even if the proof were the only lie).
  const Hash got = prefixRoot(c.entries, pin.treeSize);
  if (got != pin.root) {
    return Status::corruption("the log was rewritten: its first " + std::to_string(pin.treeSize) +
                              " entries hash to root " + hashHex(got) + ", not to the root of " +
                              pinned);
  }
  return Status::ok();
}

}  // namespace

Result<std::string> defaultPinPath() {
  const char* state = std::getenv("XDG_STATE_HOME");
  if (state != nullptr && *state == '/') return std::string(state) + "/trialmesh/audit-pins";
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home == '/') {
    return std::string(home) + "/.local/state/trialmesh/audit-pins";
  }
  return Status::invalidArgument(
      "neither XDG_STATE_HOME nor HOME is set: pass --state FILE to say where verified tree "
      "heads are remembered");
}

Result<std::vector<PinnedHead>> loadPins(const std::string& path) {
  std::vector<PinnedHead> pins;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return pins;
  std::ifstream in(path);
  if (!in) return Status::ioError(path + ": cannot be read");
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty() || line[0] == '#') continue;
    const std::string at = path + ":" + std::to_string(number) + ": ";
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0) {
      return Status::corruption(at + "expected '<site> <hex tree head>'");
    }
    auto bytes = fromHex(std::string_view(line).substr(space + 1));
    if (!bytes) return Status::corruption(at + "the tree head is not hexadecimal");
    auto head = decodeTreeHead(bytesOf(*bytes));
    if (!head) return head.status().withContext(at.substr(0, at.size() - 2));
    Status signature = verifyTreeHeadSignature(*head);
    if (!signature.isOk()) {
      return Status::corruption(
          at + "pinned head does not verify (file edited?): " + signature.message());
    }
    pins.push_back({line.substr(0, space), *head});
  }
  return pins;
}

Status savePins(const std::string& path, const std::vector<PinnedHead>& pins) {
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) return Status::ioError("cannot create " + parent.string() + ": " + ec.message());
  std::ostringstream text;
  text << "# trialmesh audit verify: last verified signed tree head per site and log key\n";
  for (const PinnedHead& p : pins) {
    text << p.site << ' ' << crypto::toHex(bytesOf(encodeTreeHead(p.head))) << '\n';
  }
  const std::string tmp = path + ".tmp";
  const std::string data = text.str();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::ioError(tmp + ": cannot be written");
  const bool written = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
                       ::fsync(fd) == 0;
  ::close(fd);
  if (!written) return Status::ioError(tmp + ": cannot be written");
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::ioError("cannot rename " + tmp + " to " + path + ": " + ec.message());
  return Status::ok();
}

Result<ExpectedHead> parseExpectedHead(std::string_view text) {
  const std::string usage = "--expect-head '" + std::string(text) +
                            "': expected <64 hex characters of the root>@<tree size>, as "
                            "`trialmesh audit verify` prints it";
  const size_t at = text.find('@');
  if (at == std::string_view::npos) return Status::invalidArgument(usage);
  auto root = fromHex(text.substr(0, at));
  if (!root || root->size() != sizeof(Hash)) return Status::invalidArgument(usage);
  ExpectedHead e;
  std::copy(root->begin(), root->end(), e.root.begin());
  const std::string_view size = text.substr(at + 1);
  auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), e.treeSize);
  if (ec != std::errc() || end != size.data() + size.size() || size.empty()) {
    return Status::invalidArgument(usage);
  }
  return e;
}

std::string formatExpectedHead(const SignedTreeHead& head) {
  return hashHex(head.root) + "@" + std::to_string(head.treeSize);
}

const PinnedHead* findPin(const std::vector<PinnedHead>& pins, const std::string& site,
                          const crypto::PublicKey& key) {
  for (const PinnedHead& p : pins) {
    if (p.site == site && p.head.logKey == key) return &p;
  }
  return nullptr;
}

Result<PinOutcome> checkAgainstPins(const PinCheck& c) {
  static const std::vector<PinnedHead> kNone;
  const std::vector<PinnedHead>& pins = c.pins != nullptr ? *c.pins : kNone;
  if (c.acceptKey && *c.acceptKey != c.head.logKey) {
    return Status::invalidArgument("--accept-key " + c.acceptKey->toText() +
                                   " is not the key that signed the site's head (" +
                                   c.head.logKey.toText() + ")");
  }
  if (c.expected) TM_RETURN_IF_ERROR(checkExpected(c, *c.expected));
  if (const PinnedHead* pin = findPin(pins, c.site, c.head.logKey)) {
    TM_RETURN_IF_ERROR(checkPinned(c, pin->head));
    return PinOutcome::kConsistent;
  }
  // Pinned under another key: the latest such pin is what the log must extend.
  const PinnedHead* other = nullptr;
  for (const PinnedHead& p : pins) {
    if (p.site != c.site) continue;
    if (other == nullptr || p.head.treeSize > other->head.treeSize ||
        (p.head.treeSize == other->head.treeSize && p.head.timestampMs > other->head.timestampMs)) {
      other = &p;
    }
  }
  if (other != nullptr) {
    Status rotated = Status::ok();
    if (c.keyValidity) {
      auto chain = followKeyRotation(other->head, c.head, c.entries, c.keyValidity, c.keyVouched);
      if (chain) return PinOutcome::kKeyRotated;
      rotated = chain.status();
      // A rewritten or rolled-back log fails whatever key signs it.
      if (rotated.code() == StatusCode::kCorruption) return rotated;
    }
    if (c.acceptKey) return PinOutcome::kKeyAccepted;
    return Status::permissionDenied(
        "the log of " + c.site + " was pinned under key " + other->head.logKey.toText() + " (" +
        headText(other->head) + ") but its head is now signed by " + c.head.logKey.toText() +
        (rotated.isOk() ? std::string() : " (" + rotated.message() + ")") +
        ": if the site's key was rotated without a key-rotation entry (confirm with the site "
        "out of band), re-run with --accept-key " +
        c.head.logKey.toText());
  }
  return c.expected ? PinOutcome::kExpected : PinOutcome::kFirstUse;
}

std::vector<PinnedHead> withPin(std::vector<PinnedHead> pins, const std::string& site,
                                const SignedTreeHead& head) {
  for (PinnedHead& p : pins) {
    if (p.site == site && p.head.logKey == head.logKey) {
      if (head.treeSize >= p.head.treeSize) p.head = head;
      return pins;
    }
  }
  pins.push_back({site, head});
  return pins;
}

}  // namespace trialmesh::ethics
