// OpsServer: the node's HTTP/1.1 operations endpoint for monitoring and load balancers.
//
//   GET /healthz  200 {"status":"ok", <details>} when the health callback reports healthy,
//                 503 {"status":"unhealthy","reason":"...", <details>} otherwise.
//   GET /metrics  200, Content-Type "text/plain; version=0.0.4; charset=utf-8", the Registry
//                 rendered in Prometheus text format.
//   other paths   404;  other methods on the two paths: 405 with "Allow: GET".
// Requests whose header exceeds maxHeaderBytes get 431, bodies over maxBodyBytes 413, malformed
// requests 400; each of these closes the connection. Keep-alive is supported. It serves
// plain HTTP on the given address only: bind it to loopback or a management network.
//
// Threading: start() runs the server on its own thread (one Asio io_context); the health
// callback and Registry::render() are called on that thread, so the callback must be
// thread-safe and quick. start(), stop() and the destructor must not be called concurrently.
// Ownership: the Registry and the callback's captures must outlive stop().
// Errors: start() returns a Status naming the address (invalid address, address in use).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "node/ops/field.h"
#include "node/ops/metrics.h"

namespace trialmesh::ops {

struct HealthReport {
  bool healthy = true;
  std::string reason;          // why not healthy; shown as "reason" (omitted when empty)
  std::vector<Field> details;  // extra top-level JSON keys: "peers", "uptime_seconds", ...
};
// Called for every GET /healthz. An empty function means "always healthy". An exception
// thrown by it is reported as 503 with the exception text as reason.
using HealthFn = std::function<HealthReport()>;

struct OpsServerOptions {
  // Default 8 KiB: request line plus headers; beyond it the reply is 431.
  std::size_t maxHeaderBytes = 8 * 1024;
  // Default 1 KiB: GET needs no body; beyond it the reply is 413.
  std::size_t maxBodyBytes = 1024;
  // Default 10 s: time for a client to send one complete request, which is also how long an
  // idle keep-alive connection stays open.
  std::chrono::milliseconds readTimeout{10'000};
  // Default 10 s: time to write one response to a slow reader.
  std::chrono::milliseconds writeTimeout{10'000};
  // Default 32: connections beyond this are closed right after accept.
  std::size_t maxConnections = 32;
};

namespace internal {
class OpsServerCore;
}

class OpsServer {
 public:
  OpsServer();
  ~OpsServer();  // stop()s
  OpsServer(const OpsServer&) = delete;
  OpsServer& operator=(const OpsServer&) = delete;

  // Binds `address` ("127.0.0.1:9401", "0.0.0.0:9401", "[::1]:0"; port 0 picks a free port)
  // and starts serving. Returns the bound port.
  // Errors: InvalidArgument for a malformed address; IOError when the socket cannot be bound,
  // e.g. "ops_listen 127.0.0.1:9401: address already in use"; FailedPrecondition when called
  // twice.
  Result<std::uint16_t> start(std::string_view address, Registry& registry, HealthFn health,
                              const OpsServerOptions& options = {});

  // Closes the listening socket and every open connection, then joins the server thread.
  // Returns promptly even with clients connected. Idempotent; no-op if never started.
  void stop();

  // The bound port, or 0 before start().
  std::uint16_t port() const { return port_; }

 private:
  std::unique_ptr<internal::OpsServerCore> core_;
  std::uint16_t port_ = 0;
};

}  // namespace trialmesh::ops
