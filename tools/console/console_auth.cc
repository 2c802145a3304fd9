#include "tools/console/console_auth.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

#include "crypto/hash.h"
#include "crypto/random.h"

namespace trialmesh::console {
namespace {

constexpr size_t kTokenBytes = 32;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The Host header values a browser sends for this console: the loopback names with the port.
bool hostIsThisConsole(std::string_view host, uint16_t port) {
  const std::string p = ":" + std::to_string(port);
  const std::string h = lower(host);
  return h == "127.0.0.1" + p || h == "localhost" + p || h == "[::1]" + p;
}

bool isLoopbackHost(const std::string& host) {
  std::array<unsigned char, 16> buf{};
  if (::inet_pton(AF_INET, host.c_str(), buf.data()) == 1) return buf[0] == 127;
  if (::inet_pton(AF_INET6, host.c_str(), buf.data()) == 1) {
    static constexpr std::array<unsigned char, 16> kLoopback6{0, 0, 0, 0, 0, 0, 0, 0,
                                                              0, 0, 0, 0, 0, 0, 0, 1};
    return buf == kLoopback6;
  }
  return false;
}

AccessDecision refuse(int status, std::string reason) {
  AccessDecision d;
  d.kind = AccessDecision::Kind::kRefuse;
  d.status = status;
  d.reason = std::move(reason);
  return d;
}

}  // namespace

std::string newAccessToken() {
  std::array<uint8_t, kTokenBytes> bytes{};
  crypto::randomBytes(bytes);
  return crypto::toHex(bytes);
}

bool tokenMatches(std::string_view given, std::string_view token) {
  if (given.size() != token.size() || token.empty()) return false;
  return sodium_memcmp(given.data(), token.data(), token.size()) == 0;
}

std::optional<std::string> cookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = trim(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    if (trim(pair.substr(0, eq)) == name) {
      std::string_view value = trim(pair.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
        value = value.substr(1, value.size() - 2);
      return std::string(value);
    }
  }
  return std::nullopt;
}

std::optional<std::string> queryParameter(std::string_view target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return std::string(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
  }
  return std::nullopt;
}

std::string withoutQueryParameter(std::string_view target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, q));
  std::string kept;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.substr(0, pair.find('=')) == name || pair.empty()) continue;
    kept += kept.empty() ? "" : "&";
    kept += pair;
  }
  if (!kept.empty()) out += "?" + kept;
  return out;
}

Result<ListenAddress> parseListenAddress(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Status::invalidArgument("--listen '" + std::string(text) + "': " + why);
  };
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("expected [IPv6]:PORT, e.g. [::1]:8750");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("expected HOST:PORT, e.g. 127.0.0.1:8750");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  const bool digits =
      !port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  const unsigned long portValue = digits ? std::stoul(std::string(port)) : 70000;
  if (portValue > 65535) return bad("the port must be a number from 0 to 65535");
  std::string numeric = lower(host) == "localhost" ? "127.0.0.1" : std::string(host);
  if (!isLoopbackHost(numeric)) {
    return bad(
        "the console listens on loopback only (127.0.0.1, ::1 or localhost): it serves plain "
        "HTTP without TLS in this version, and its token and query results must not cross a "
        "network. To use it from another machine, forward the port over SSH: "
        "ssh -L 8750:127.0.0.1:8750 <host>");
  }
  return ListenAddress{numeric, static_cast<uint16_t>(portValue)};
}

std::string cookieName(uint16_t port) { return "trialmesh_console_" + std::to_string(port); }

AccessDecision checkAccess(const RequestFacts& r, std::string_view token, uint16_t port) {
  if (!hostIsThisConsole(r.host, port)) {
    return refuse(403, "Host '" + r.host +
                           "' is not this console's address (use the URL trialmesh console "
                           "printed, http://127.0.0.1:" +
                           std::to_string(port) + "/)");
  }
  bool headerToken = false;
  if (std::string_view auth = r.authorization;
      auth.size() > 7 && lower(auth.substr(0, 7)) == "bearer ")
    headerToken = tokenMatches(trim(auth.substr(7)), token);
  const auto cookie = cookieValue(r.cookie, cookieName(port));
  const bool cookieToken = cookie && tokenMatches(*cookie, token);
  const bool safeMethod = r.method == "GET" || r.method == "HEAD";
  if (!headerToken && !cookieToken) {
    const auto fromUrl = queryParameter(r.target, "token");
    if (fromUrl && safeMethod && tokenMatches(*fromUrl, token)) {
      AccessDecision d;
      d.kind = AccessDecision::Kind::kRedirectWithCookie;
      d.status = 303;
      d.location = withoutQueryParameter(r.target, "token");
      d.setCookie =
          cookieName(port) + "=" + std::string(token) + "; Path=/; HttpOnly; SameSite=Strict";
      return d;
    }
    return refuse(401,
                  "this console needs its access token: open the URL that `trialmesh console` "
                  "printed (http://127.0.0.1:" +
                      std::to_string(port) +
                      "/?token=...), or send 'Authorization: Bearer <token>'");
  }
  if (!safeMethod && !headerToken && r.origin != "http://" + r.host) {
    return refuse(403, r.origin.empty()
                           ? "cross-site request refused: a " + r.method +
                                 " with the cookie must carry an Origin header naming this console"
                           : "cross-origin request refused: Origin '" + r.origin +
                                 "' is not this console (http://" + r.host + ")");
  }
  AccessDecision d;
  d.kind = AccessDecision::Kind::kAllow;
  d.status = 200;
  return d;
}

}  // namespace trialmesh::console
