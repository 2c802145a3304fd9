// Who may use `trialmesh console` (docs/console.md, "Security"): the access rules, as pure
// functions so they are tested without a socket (tests/tools/console_auth_test.cc).
//
// The console holds an unlocked coordinator identity, so every request must prove it comes
// from the person who started it, the way Jupyter does it:
//  * a random access token (32 bytes from libsodium, hex) is made at every start and printed in
//    the URL; opening that URL sets it as a cookie (HttpOnly, SameSite=Strict, named after the
//    port, so two consoles do not overwrite each other's) and redirects to the same page without
//    the token, so it leaves the address bar and the history;
//  * every request needs the token: the cookie, or the header `Authorization: Bearer <token>`
//    (scripts, the R and Python clients), else 401;
//  * the Host header must name this console's loopback address (127.0.0.1, localhost or [::1]
//    with its port), else 403: a web page on another name resolving to 127.0.0.1 (DNS
//    rebinding) cannot talk to it;
//  * a state-changing request (anything but GET and HEAD) that authenticates with the cookie
//    must carry an Origin equal to http://<Host>, else 403: 127.0.0.1 on another port is the
//    same "site" for SameSite cookies, so the cookie alone does not stop a page served by some
//    other local program from posting queries. A request with the token in a header is not
//    forgeable by a page (it cannot read the token) and needs no Origin.
//
// Thread-safety: pure functions. AccessToken is an immutable value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace trialmesh::console {

// 32 random bytes (crypto::randomBytes), as 64 lowercase hex characters.
std::string newAccessToken();

// Constant-time comparison (sodium_memcmp), false when the lengths differ.
bool tokenMatches(std::string_view given, std::string_view token);

// The value of cookie `name` in a Cookie header ("a=1; b=2"), if present.
std::optional<std::string> cookieValue(std::string_view cookieHeader, std::string_view name);

// The value of parameter `name` in a request target's query string ("/?token=abc&x=1"), not
// percent-decoded (the token is hex).
std::optional<std::string> queryParameter(std::string_view target, std::string_view name);

// The target with parameter `name` removed ("/?token=abc" -> "/").
std::string withoutQueryParameter(std::string_view target, std::string_view name);

// --listen HOST:PORT. Only loopback hosts are accepted (127.0.0.0/8, ::1, localhost): this
// version serves plain HTTP, and the token and query results must not cross a network.
// InvalidArgument naming the address and the reason otherwise.
struct ListenAddress {
  std::string host;  // numeric: "127.0.0.1", "::1"
  uint16_t port = 0;
};
Result<ListenAddress> parseListenAddress(std::string_view text);

// The cookie holding the token for the console on `port`.
std::string cookieName(uint16_t port);

// What the request carries, as the server read it from the HTTP message. Empty when absent.
struct RequestFacts {
  std::string method;         // "GET", "POST", ...
  std::string target;         // "/api/query?x=1"
  std::string host;           // Host header
  std::string origin;         // Origin header
  std::string cookie;         // Cookie header
  std::string authorization;  // Authorization header
};

struct AccessDecision {
  enum class Kind {
    kAllow,
    kRedirectWithCookie,  // a valid ?token=: set the cookie, redirect to `location`
    kRefuse,              // `status` (401 or 403) with `reason`
  };
  Kind kind = Kind::kRefuse;
  int status = 0;
  std::string reason;
  std::string location;   // kRedirectWithCookie
  std::string setCookie;  // kRedirectWithCookie: the Set-Cookie header value
};

// Applies the rules above to one request for the console bound to `port` with `token`.
AccessDecision checkAccess(const RequestFacts& request, std::string_view token, uint16_t port);

}  // namespace trialmesh::console
