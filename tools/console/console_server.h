// ConsoleServer: the HTTP/1.1 transport of `trialmesh console` (Boost.Beast, as the node's ops
// endpoint node/ops/ops_server.h). Every request first passes console_auth.h's checkAccess
// (token, Host, Origin); only allowed requests reach the handler.
//
// Threading: start() runs `threads` Asio threads. The handler is called on them, concurrently
// and may block (a federated query takes seconds): it must be thread-safe. Requests on one
// connection are answered in order. wait() blocks until SIGINT/SIGTERM or stop().
// Ownership: the handler's captures must outlive stop().
// Errors: start() returns a Status naming the address (non-loopback, in use).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace trialmesh::console {

struct HttpRequest {
  std::string method;  // "GET", "POST"
  std::string target;  // as sent: "/api/result/3.csv?x=1"
  std::string path;    // target without the query string
  std::string body;
};

struct HttpReply {
  int status = 200;
  std::string contentType = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

using HttpHandler = std::function<HttpReply(const HttpRequest&)>;

struct ConsoleServerOptions {
  unsigned threads = 4;                  // concurrent requests being handled
  size_t maxBodyBytes = 1 << 20;         // a query is small; beyond this: 413
  std::chrono::seconds readTimeout{60};  // one request, or an idle keep-alive connection
};

namespace internal {
class ConsoleServerCore;
}

class ConsoleServer {
 public:
  ConsoleServer();
  ~ConsoleServer();  // stop()
  ConsoleServer(const ConsoleServer&) = delete;
  ConsoleServer& operator=(const ConsoleServer&) = delete;

  // Binds `listen` (console_auth.h parseListenAddress: loopback only; port 0 picks one) and
  // serves, requiring `token`. Returns the bound port.
  Result<uint16_t> start(const std::string& listen, std::string token, HttpHandler handler,
                         const ConsoleServerOptions& options = {});
  // Blocks until SIGINT or SIGTERM arrives or stop() is called from another thread.
  void wait();
  // Closes the listener and every connection, joins the threads. Idempotent.
  void stop();

 private:
  std::unique_ptr<internal::ConsoleServerCore> core_;
};

}  // namespace trialmesh::console
