// The console's access rules (tools/console/console_auth.h): token, Host, Origin, loopback.
#include "tools/console/console_auth.h"

#include <gtest/gtest.h>

namespace trialmesh::console {
namespace {

constexpr uint16_t kPort = 8750;

RequestFacts request(std::string method, std::string target) {
  RequestFacts r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.host = "127.0.0.1:8750";
  return r;
}

TEST(ConsoleAuth, TokenIs32RandomBytesInHex) {
  const std::string a = newAccessToken();
  const std::string b = newAccessToken();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, b);
  EXPECT_TRUE(tokenMatches(a, a));
  EXPECT_FALSE(tokenMatches(a, b));
  EXPECT_FALSE(tokenMatches(a.substr(1), a));
  EXPECT_FALSE(tokenMatches("", ""));
}

TEST(ConsoleAuth, ParsesCookiesAndQueryParameters) {
  EXPECT_EQ(cookieValue("a=1; trialmesh_console_8750=abc ; b=2", "trialmesh_console_8750"), "abc");
  EXPECT_EQ(cookieValue("trialmesh_console_8751=abc", "trialmesh_console_8750"), std::nullopt);
  EXPECT_EQ(queryParameter("/?x=1&token=ff", "token"), "ff");
  EXPECT_EQ(queryParameter("/path", "token"), std::nullopt);
  EXPECT_EQ(withoutQueryParameter("/?token=ff", "token"), "/");
  EXPECT_EQ(withoutQueryParameter("/p?a=1&token=ff&b=2", "token"), "/p?a=1&b=2");
}

TEST(ConsoleAuth, RequestWithoutTokenIsRefused) {
  const std::string token = newAccessToken();
  auto d = checkAccess(request("GET", "/"), token, kPort);
  EXPECT_EQ(d.kind, AccessDecision::Kind::kRefuse);
  EXPECT_EQ(d.status, 401);
  EXPECT_NE(d.reason.find("access token"), std::string::npos) << d.reason;
  RequestFacts wrong = request("GET", "/api/info");
  wrong.cookie = cookieName(kPort) + "=" + newAccessToken();
  EXPECT_EQ(checkAccess(wrong, token, kPort).status, 401);
  wrong.cookie.clear();
  std::string oneOff = token;
  oneOff.back() = oneOff.back() == '0' ? '1' : '0';
  wrong.authorization = "Bearer " + oneOff;
  EXPECT_EQ(checkAccess(wrong, token, kPort).status, 401);
}

TEST(ConsoleAuth, UrlTokenSetsAStrictHttpOnlyCookieAndLeavesTheUrl) {
  const std::string token = newAccessToken();
  auto d = checkAccess(request("GET", "/?token=" + token), token, kPort);
  ASSERT_EQ(d.kind, AccessDecision::Kind::kRedirectWithCookie);
  EXPECT_EQ(d.location, "/");
  EXPECT_EQ(d.setCookie, "trialmesh_console_8750=" + token + "; Path=/; HttpOnly; SameSite=Strict");
  // Not on a POST: a URL token never authorises a state change.
  EXPECT_EQ(checkAccess(request("POST", "/api/query?token=" + token), token, kPort).status, 401);
}

TEST(ConsoleAuth, CookiePostNeedsThisConsolesOrigin) {
  const std::string token = newAccessToken();
  RequestFacts r = request("POST", "/api/query");
  r.cookie = cookieName(kPort) + "=" + token;
  EXPECT_EQ(checkAccess(r, token, kPort).status, 403);  // no Origin
  r.origin = "http://127.0.0.1:9999";                   // another local program's page
  auto d = checkAccess(r, token, kPort);
  EXPECT_EQ(d.status, 403);
  EXPECT_NE(d.reason.find("cross-origin"), std::string::npos) << d.reason;
  r.origin = "http://127.0.0.1:8750";
  EXPECT_EQ(checkAccess(r, token, kPort).kind, AccessDecision::Kind::kAllow);
  // A GET with the cookie needs no Origin.
  RequestFacts get = request("GET", "/api/info");
  get.cookie = r.cookie;
  EXPECT_EQ(checkAccess(get, token, kPort).kind, AccessDecision::Kind::kAllow);
}

TEST(ConsoleAuth, BearerTokenNeedsNoOrigin) {
  const std::string token = newAccessToken();
  RequestFacts r = request("POST", "/api/query");
  r.authorization = "Bearer " + token;
  EXPECT_EQ(checkAccess(r, token, kPort).kind, AccessDecision::Kind::kAllow);
}

TEST(ConsoleAuth, ForeignHostIsRefusedEvenWithTheToken) {
  // DNS rebinding: evil.example resolving to 127.0.0.1 still sends its own name as Host.
  const std::string token = newAccessToken();
  RequestFacts r = request("GET", "/api/info");
  r.authorization = "Bearer " + token;
  r.host = "evil.example:8750";
  EXPECT_EQ(checkAccess(r, token, kPort).status, 403);
  r.host = "127.0.0.1:8751";
  EXPECT_EQ(checkAccess(r, token, kPort).status, 403);
  for (const char* ok : {"localhost:8750", "[::1]:8750", "LOCALHOST:8750"}) {
    r.host = ok;
    EXPECT_EQ(checkAccess(r, token, kPort).kind, AccessDecision::Kind::kAllow) << ok;
  }
}

TEST(ConsoleAuth, ListensOnLoopbackOnly) {
  auto a = parseListenAddress("127.0.0.1:8750");
  ASSERT_TRUE(a.isOk());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8750);
  EXPECT_EQ(parseListenAddress("localhost:0")->host, "127.0.0.1");
  EXPECT_EQ(parseListenAddress("[::1]:8750")->host, "::1");
  EXPECT_TRUE(parseListenAddress("127.0.0.2:1").isOk());
  for (const char* remote : {"0.0.0.0:8750", "192.168.1.5:8750", "[::]:8750", "example.org:80"}) {
    auto r = parseListenAddress(remote);
    ASSERT_FALSE(r.isOk()) << remote;
    EXPECT_NE(r.status().message().find("TLS"), std::string::npos) << r.status().message();
  }
  EXPECT_FALSE(parseListenAddress("127.0.0.1").isOk());
  EXPECT_FALSE(parseListenAddress("127.0.0.1:70000").isOk());
}

}  // namespace
}  // namespace trialmesh::console
