#include "node/ops/ops_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace trialmesh::ops {
namespace {

// Every socket operation of the test client gives up after this long, so a broken server
// fails the test instead of hanging it.
constexpr int kSocketTimeoutSeconds = 10;

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// A deliberately small blocking HTTP/1.1 client over a raw loopback socket, independent of the
// server's Beast code.
class TestConnection {
 public:
  explicit TestConnection(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return;
    timeval tv{kSocketTimeoutSeconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~TestConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  TestConnection(const TestConnection&) = delete;
  TestConnection& operator=(const TestConnection&) = delete;

  bool ok() const { return fd_ >= 0; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads one response framed by Content-Length; nullopt on EOF, timeout or garbage.
  std::optional<HttpResponse> readResponse() {
    std::size_t headerEnd;
    while ((headerEnd = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return std::nullopt;
    }
    std::string head = buffer_.substr(0, headerEnd);
    buffer_.erase(0, headerEnd + 4);
    HttpResponse response;
    std::size_t lineEnd = head.find("\r\n");
    std::string statusLine = head.substr(0, lineEnd);
    if (statusLine.rfind("HTTP/1.", 0) != 0 || statusLine.size() < 12) return std::nullopt;
    response.status = std::stoi(statusLine.substr(9, 3));
    while (lineEnd != std::string::npos) {
      std::size_t start = lineEnd + 2;
      lineEnd = head.find("\r\n", start);
      std::string line =
          head.substr(start, lineEnd == std::string::npos ? std::string::npos : lineEnd - start);
      std::size_t colon = line.find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      response.headers[name] = value;
    }
    auto length = response.headers.find("content-length");
    if (length == response.headers.end()) return std::nullopt;
    std::size_t bodySize = std::stoul(length->second);
    while (buffer_.size() < bodySize) {
      if (!fill()) return std::nullopt;
    }
    response.body = buffer_.substr(0, bodySize);
    buffer_.erase(0, bodySize);
    return response;
  }

  // True when the server closes the connection (EOF or reset) before the socket timeout.
  bool waitClosed() {
    char chunk[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

 private:
  bool fill() {
    char chunk[4096];
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
};

std::string getRequest(std::string_view path, bool close = false) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
         (close ? "Connection: close\r\n" : "") + "\r\n";
}

std::optional<HttpResponse> roundTrip(std::uint16_t port, const std::string& request) {
  TestConnection connection(port);
  if (!connection.ok() || !connection.send(request)) return std::nullopt;
  return connection.readResponse();
}

class OpsServerTest : public ::testing::Test {
 protected:
  std::uint16_t startServer(HealthFn health = {}, const OpsServerOptions& options = {}) {
    auto port = server_.start("127.0.0.1:0", registry_, std::move(health), options);
    if (!port.isOk()) throw std::runtime_error(port.status().toString());
    EXPECT_NE(*port, 0);
    EXPECT_EQ(server_.port(), *port);
    return *port;
  }

  Registry registry_;
  OpsServer server_;
};

TEST_F(OpsServerTest, HealthzReportsOkWithDetails) {
  std::uint16_t port = startServer([] {
    return HealthReport{true, "", {{"peers", 3}, {"site", "site-a"}, {"status", "shadowed"}}};
  });
  auto response = roundTrip(port, getRequest("/healthz"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->headers["content-type"], "application/json");
  auto body = nlohmann::json::parse(response->body);
  EXPECT_EQ(body["status"], "ok");
  EXPECT_EQ(body["peers"], 3);
  EXPECT_EQ(body["site"], "site-a");
  EXPECT_EQ(body["status_"], "shadowed");  // a detail cannot overwrite the status
  EXPECT_FALSE(body.contains("reason"));
}

TEST_F(OpsServerTest, HealthzWithoutCallbackIsOk) {
  std::uint16_t port = startServer();
  auto response = roundTrip(port, getRequest("/healthz"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(nlohmann::json::parse(response->body), nlohmann::json({{"status", "ok"}}));
}

TEST_F(OpsServerTest, HealthzUnhealthyIs503WithReason) {
  std::atomic<bool> healthy{true};
  std::uint16_t port = startServer([&] {
    if (healthy) return HealthReport{};
    return HealthReport{false, "store: RocksDB is closed", {}};
  });
  EXPECT_EQ(roundTrip(port, getRequest("/healthz"))->status, 200);
  healthy = false;
  auto response = roundTrip(port, getRequest("/healthz"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503);
  auto body = nlohmann::json::parse(response->body);
  EXPECT_EQ(body["status"], "unhealthy");
  EXPECT_EQ(body["reason"], "store: RocksDB is closed");
}

TEST_F(OpsServerTest, HealthCallbackThatThrowsGives503) {
  std::uint16_t port = startServer([]() -> HealthReport { throw std::runtime_error("boom"); });
  auto response = roundTrip(port, getRequest("/healthz"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 503);
  EXPECT_EQ(nlohmann::json::parse(response->body)["reason"], "health check failed: boom");
  // The server keeps serving.
  EXPECT_EQ(roundTrip(port, getRequest("/metrics"))->status, 200);
}

TEST_F(OpsServerTest, MetricsServesTheRegistry) {
  NodeMetrics metrics(registry_);
  metrics.queriesServed.inc(3);
  metrics.queriesRefused(RefusalReason::kSignature).inc();
  std::uint16_t port = startServer();
  auto response = roundTrip(port, getRequest("/metrics"));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response->body, registry_.render());
  EXPECT_NE(response->body.find("\ntrialmesh_queries_served_total 3\n"), std::string::npos);
  EXPECT_NE(response->body.find("\ntrialmesh_queries_refused_total{reason=\"signature\"} 1\n"),
            std::string::npos);
  // Updates show on the next scrape; a query string is ignored.
  metrics.queriesServed.inc();
  auto again = roundTrip(port, getRequest("/metrics?name=x"));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_NE(again->body.find("\ntrialmesh_queries_served_total 4\n"), std::string::npos);
}

TEST_F(OpsServerTest, UnknownPathIs404AndOtherMethodsAre405) {
  std::uint16_t port = startServer();
  auto notFound = roundTrip(port, getRequest("/admin"));
  ASSERT_TRUE(notFound);
  EXPECT_EQ(notFound->status, 404);
  EXPECT_NE(notFound->body.find("/healthz and /metrics"), std::string::npos);

  auto post = roundTrip(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->headers["allow"], "GET");
  auto del = roundTrip(port, "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 405);
}

TEST_F(OpsServerTest, OversizedHeaderIs431AndConnectionCloses) {
  OpsServerOptions options;
  options.maxHeaderBytes = 1024;
  std::uint16_t port = startServer({}, options);
  TestConnection connection(port);
  ASSERT_TRUE(connection.ok());
  ASSERT_TRUE(connection.send(
      "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n"));
  auto response = connection.readResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 431);
  EXPECT_NE(response->body.find("larger than 1024 bytes"), std::string::npos);
  EXPECT_TRUE(connection.waitClosed());
}

TEST_F(OpsServerTest, OversizedBodyIs413) {
  OpsServerOptions options;
  options.maxBodyBytes = 16;
  std::uint16_t port = startServer({}, options);
  auto response =
      roundTrip(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" +
                          std::string(100, 'b'));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 413);
}

TEST_F(OpsServerTest, MalformedRequestIs400) {
  std::uint16_t port = startServer();
  auto response = roundTrip(port, "GET /healthz HTTP/9.x\r\n\r\n");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
}

TEST_F(OpsServerTest, KeepAliveServesSeveralRequestsThenHonoursClose) {
  std::uint16_t port = startServer();
  TestConnection connection(port);
  ASSERT_TRUE(connection.ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(connection.send(getRequest(i % 2 == 0 ? "/healthz" : "/metrics")));
    auto response = connection.readResponse();
    ASSERT_TRUE(response) << "request " << i;
    EXPECT_EQ(response->status, 200);
  }
  // Two pipelined requests in one write.
  ASSERT_TRUE(connection.send(getRequest("/healthz") + getRequest("/nope")));
  EXPECT_EQ(connection.readResponse()->status, 200);
  EXPECT_EQ(connection.readResponse()->status, 404);
  ASSERT_TRUE(connection.send(getRequest("/healthz", /*close=*/true)));
  auto last = connection.readResponse();
  ASSERT_TRUE(last);
  EXPECT_EQ(last->headers["connection"], "close");
  EXPECT_TRUE(connection.waitClosed());
}

TEST_F(OpsServerTest, IdleConnectionIsClosedAfterReadTimeout) {
  OpsServerOptions options;
  options.readTimeout = std::chrono::milliseconds(100);
  std::uint16_t port = startServer({}, options);
  TestConnection connection(port);
  ASSERT_TRUE(connection.ok());
  ASSERT_TRUE(connection.send("GET /healthz HTTP/1.1\r\n"));  // never finished
  EXPECT_TRUE(connection.waitClosed());
}

TEST_F(OpsServerTest, ConnectionsBeyondTheLimitAreClosed) {
  OpsServerOptions options;
  options.maxConnections = 1;
  std::uint16_t port = startServer({}, options);
  auto first = std::make_unique<TestConnection>(port);
  ASSERT_TRUE(first->send(getRequest("/healthz")));
  ASSERT_TRUE(first->readResponse());  // accepted and being served
  TestConnection second(port);
  ASSERT_TRUE(second.ok());  // the kernel accepts; the server closes it at once
  EXPECT_TRUE(second.waitClosed());
  ASSERT_TRUE(first->send(getRequest("/metrics")));
  EXPECT_EQ(first->readResponse()->status, 200);
  first.reset();
  // The server notices the close asynchronously; retry for a bounded number of attempts.
  bool servedAgain = false;
  for (int attempt = 0; attempt < 100 && !servedAgain; ++attempt) {
    auto response = roundTrip(port, getRequest("/healthz"));
    servedAgain = response && response->status == 200;
    if (!servedAgain) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(servedAgain);
}

TEST_F(OpsServerTest, StopWithConnectedClientsReturnsPromptly) {
  std::uint16_t port = startServer();
  TestConnection idle(port);
  ASSERT_TRUE(idle.send(getRequest("/healthz")));
  ASSERT_TRUE(idle.readResponse());  // now waiting in keep-alive
  TestConnection partial(port);
  ASSERT_TRUE(partial.send("GET /metrics HTTP/1.1\r\nHost: x\r\n"));  // mid-request

  auto stopped = std::async(std::launch::async, [&] { server_.stop(); });
  // Default read timeout is 10 s; stop() must not wait for it. The bound only keeps a broken
  // stop() from hanging the suite.
  ASSERT_EQ(stopped.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_TRUE(idle.waitClosed());
  EXPECT_TRUE(partial.waitClosed());
  // Nothing listens any more.
  EXPECT_FALSE(TestConnection(port).ok());
  server_.stop();  // idempotent
}

TEST(OpsServer, DestructorStopsARunningServer) {
  Registry registry;
  std::uint16_t port;
  {
    OpsServer server;
    auto started = server.start("127.0.0.1:0", registry, {});
    ASSERT_TRUE(started.isOk()) << started.status().toString();
    port = *started;
    TestConnection connection(port);
    ASSERT_TRUE(connection.ok());
  }
  EXPECT_FALSE(TestConnection(port).ok());
}

TEST(OpsServer, StopWithoutStartIsANoOp) {
  OpsServer server;
  server.stop();
  EXPECT_EQ(server.port(), 0);
}

TEST(OpsServer, AddressInUseIsReported) {
  Registry registry;
  OpsServer first;
  auto port = first.start("127.0.0.1:0", registry, {});
  ASSERT_TRUE(port.isOk());
  OpsServer second;
  std::string address = "127.0.0.1:" + std::to_string(*port);
  auto failed = second.start(address, registry, {});
  ASSERT_FALSE(failed.isOk());
  EXPECT_EQ(failed.status().code(), StatusCode::kIOError);
  EXPECT_EQ(failed.status().message(), "ops_listen " + address + ": address already in use");
  // A failed start leaves the object usable.
  auto retried = second.start("127.0.0.1:0", registry, {});
  EXPECT_TRUE(retried.isOk()) << retried.status().toString();
}

TEST(OpsServer, StartTwiceIsRefused) {
  Registry registry;
  OpsServer server;
  ASSERT_TRUE(server.start("127.0.0.1:0", registry, {}).isOk());
  auto again = server.start("127.0.0.1:0", registry, {});
  ASSERT_FALSE(again.isOk());
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("already started"), std::string::npos);
}

TEST(OpsServer, MalformedAddressesAreInvalidArgument) {
  Registry registry;
  struct Case {
    const char* address;
    const char* fragment;
  };
  for (const Case& c : {
           Case{"127.0.0.1", "missing ':PORT'"},
           Case{"127.0.0.1:", "port '' is not a number from 0 to 65535"},
           Case{"127.0.0.1:70000", "port '70000' is not a number"},
           Case{"127.0.0.1:http", "port 'http' is not a number"},
           Case{":9401", "missing host"},
           Case{"::1:9401", "must be in brackets"},
           Case{"[::1:9401", "missing ']'"},
           Case{"example.org:9401", "host 'example.org' is not an IP address"},
       }) {
    OpsServer server;
    auto result = server.start(c.address, registry, {});
    ASSERT_FALSE(result.isOk()) << c.address;
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << c.address;
    EXPECT_NE(result.status().message().find(c.fragment), std::string::npos)
        << result.status().message();
    EXPECT_NE(result.status().message().find(std::string("ops_listen '") + c.address + "'"),
              std::string::npos)
        << result.status().message();
  }
}

TEST(OpsServer, ServesOnIpv6Loopback) {
  Registry registry;
  registry.counter("x_total", "X.").inc(7);
  OpsServer server;
  auto port = server.start("[::1]:0", registry, {});
  if (!port.isOk()) GTEST_SKIP() << "no IPv6 loopback here: " << port.status().toString();
  int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  timeval tv{kSocketTimeoutSeconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_port = htons(*port);
  addr.sin6_addr = in6addr_loopback;
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  std::string request = getRequest("/metrics", true);
  ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string received;
  char chunk[4096];
  ssize_t n;
  while ((n = ::recv(fd, chunk, sizeof(chunk), 0)) > 0) received.append(chunk, n);
  ::close(fd);
  EXPECT_EQ(received.rfind("HTTP/1.1 200", 0), 0u) << received;
  EXPECT_NE(received.find("\nx_total 7\n"), std::string::npos) << received;
}

}  // namespace
}  // namespace trialmesh::ops
