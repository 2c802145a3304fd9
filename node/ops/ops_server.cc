// The only translation unit of trialmesh that includes Boost.Beast (it costs ~20 s to compile).
#include "node/ops/ops_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstdint>
#include <limits>
#include <optional>
#include <thread>
#include <unordered_map>

#include "node/ops/field_json.h"

namespace trialmesh::ops {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::string_view kServerName = "trialmesh-ops";
constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kTextContentType = "text/plain; charset=utf-8";
constexpr std::string_view kJsonContentType = "application/json";
// After an error reply the connection is closed; first the rest of the client's request is
// read and discarded (bounded), so the client sees the reply instead of a TCP reset.
constexpr std::size_t kMaxDrainBytes = 1 << 20;
constexpr std::chrono::seconds kMaxDrainTime{2};
// After accept() fails (out of file descriptors, say) wait before retrying, not spin.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

Result<tcp::endpoint> parseListenAddress(std::string_view address) {
  auto bad = [&](const std::string& why) {
    return Status::invalidArgument("ops_listen '" + std::string(address) + "': " + why +
                                   "; expected HOST:PORT such as 127.0.0.1:9401 or [::1]:9401");
  };
  std::string_view host;
  std::string_view port;
  if (!address.empty() && address.front() == '[') {
    std::size_t close = address.find(']');
    if (close == std::string_view::npos) return bad("missing ']' after the IPv6 address");
    host = address.substr(1, close - 1);
    if (close + 1 >= address.size() || address[close + 1] != ':') return bad("missing ':PORT'");
    port = address.substr(close + 2);
  } else {
    std::size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return bad("missing ':PORT'");
    host = address.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      return bad("an IPv6 address must be in brackets, e.g. [::1]:9401");
    }
    port = address.substr(colon + 1);
  }
  if (host.empty()) return bad("missing host");
  bool portOk = !port.empty() && port.size() <= 5 &&
                std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  unsigned long portValue = portOk ? std::stoul(std::string(port)) : 0;
  if (!portOk || portValue > 65535) {
    return bad("port '" + std::string(port) + "' is not a number from 0 to 65535");
  }
  std::string hostText = host == "localhost" ? "127.0.0.1" : std::string(host);
  boost::system::error_code ec;
  asio::ip::address ip = asio::ip::make_address(hostText, ec);
  if (ec) return bad("host '" + std::string(host) + "' is not an IP address");
  return tcp::endpoint(ip, static_cast<std::uint16_t>(portValue));
}

// Beast 1.74 takes boost::string_view, which does not convert from std::string_view.
beast::string_view bsv(std::string_view s) { return {s.data(), s.size()}; }

// "Address already in use" -> "address already in use", to read well after a colon.
std::string lowerFirst(std::string text) {
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

}  // namespace

namespace internal {

class Session;

// Everything the server thread touches. Members marked "io thread" are only used from
// handlers running on `ioc`, so they need no lock.
class OpsServerCore {
 public:
  OpsServerCore(Registry& registry, HealthFn health, const OpsServerOptions& options)
      : registry(registry), health(std::move(health)), options(options) {}

  void accept();
  void closeAll();
  void run();

  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer acceptRetry{ioc};
  std::thread thread;
  Registry& registry;
  HealthFn health;
  const OpsServerOptions options;

  bool stopping = false;                                               // io thread
  std::unordered_map<std::uint64_t, std::weak_ptr<Session>> sessions;  // io thread
  std::uint64_t nextSessionId = 0;                                     // io thread
  bool warnedConnectionLimit = false;                                  // io thread
};

// One client connection: read a request, answer it, repeat while keep-alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, OpsServerCore& core, std::uint64_t id)
      : stream_(std::move(socket)), core_(core), id_(id) {}
  ~Session() { core_.sessions.erase(id_); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() { readRequest(); }

  // Ends the connection; pending reads and writes complete with operation_aborted.
  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  using Response = http::response<http::string_body>;

  void readRequest() {
    if (core_.stopping) return close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
        core_.options.maxHeaderBytes, std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(core_.options.maxBodyBytes);
    stream_.expires_after(core_.options.readTimeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      return sendError(http::status::request_header_fields_too_large,
                       "request header larger than " +
                           std::to_string(core_.options.maxHeaderBytes) + " bytes\n");
    }
    if (ec == http::error::body_limit) {
      return sendError(
          http::status::payload_too_large,
          "request body larger than " + std::to_string(core_.options.maxBodyBytes) + " bytes\n");
    }
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) return close();
    if (ec && ec.category() == beast::http::make_error_code(http::error::bad_method).category()) {
      return sendError(http::status::bad_request, "malformed HTTP request: " + ec.message() + "\n");
    }
    if (ec) return close();  // timeout, reset, or closed by stop()

    const auto& request = parser_->get();
    Response response = respond(request);
    bool keepAlive = request.keep_alive() && !core_.stopping;
    response.keep_alive(keepAlive);
    write(std::move(response), keepAlive ? AfterWrite::kRead : AfterWrite::kClose);
  }

  Response makeResponse(http::status status, unsigned version, std::string_view contentType,
                        std::string body) {
    Response response{status, version};
    response.set(http::field::server, bsv(kServerName));
    response.set(http::field::content_type, bsv(contentType));
    response.set(http::field::cache_control, "no-store");
    response.body() = std::move(body);
    response.prepare_payload();
    return response;
  }

  Response respond(const http::request<http::string_body>& request) {
    std::string_view target(request.target().data(), request.target().size());
    std::string_view path = target.substr(0, target.find('?'));
    if (path != "/healthz" && path != "/metrics") {
      return makeResponse(http::status::not_found, request.version(), kTextContentType,
                          "not found: this endpoint serves /healthz and /metrics\n");
    }
    if (request.method() != http::verb::get) {
      Response response = makeResponse(http::status::method_not_allowed, request.version(),
                                       kTextContentType, "method not allowed: use GET\n");
      response.set(http::field::allow, "GET");
      return response;
    }
    if (path == "/metrics") {
      return makeResponse(http::status::ok, request.version(), kMetricsContentType,
                          core_.registry.render());
    }
    HealthReport report;
    if (core_.health) {
      try {
        report = core_.health();
      } catch (const std::exception& e) {
        // The callback is another module's code; a bug there must not take the ops thread
        // down, and 503 is what a load balancer should see.
        report = HealthReport{false, std::string("health check failed: ") + e.what(), {}};
      }
    }
    nlohmann::ordered_json body;
    body["status"] = report.healthy ? "ok" : "unhealthy";
    if (!report.reason.empty()) body["reason"] = report.reason;
    for (const Field& field : report.details) {
      bool reserved = field.key() == "status" || field.key() == "reason";
      body[reserved ? field.key() + "_" : field.key()] = fieldValueToJson(field.value());
    }
    return makeResponse(report.healthy ? http::status::ok : http::status::service_unavailable,
                        request.version(), kJsonContentType, dumpJsonLine(body) + "\n");
  }

  enum class AfterWrite { kRead, kClose, kDrainAndClose };

  void sendError(http::status status, std::string body) {
    Response response = makeResponse(status, 11, kTextContentType, std::move(body));
    response.keep_alive(false);
    write(std::move(response), AfterWrite::kDrainAndClose);
  }

  void write(Response response, AfterWrite next) {
    response_ = std::move(response);
    stream_.expires_after(core_.options.writeTimeout);
    http::async_write(stream_, *response_,
                      [self = shared_from_this(), next](beast::error_code ec, std::size_t) {
                        self->onWrite(ec, next);
                      });
  }

  void onWrite(beast::error_code ec, AfterWrite next) {
    response_.reset();
    if (ec) return close();
    switch (next) {
      case AfterWrite::kRead:
        return readRequest();
      case AfterWrite::kClose: {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return close();
      }
      case AfterWrite::kDrainAndClose: {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream_.expires_after(kMaxDrainTime);
        return drain();
      }
    }
  }

  void drain() {
    if (core_.stopping || drained_ > kMaxDrainBytes) return close();
    stream_.async_read_some(asio::buffer(drainBuffer_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              if (ec) return self->close();
                              self->drained_ += n;
                              self->drain();
                            });
  }

  beast::tcp_stream stream_;
  OpsServerCore& core_;
  const std::uint64_t id_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<Response> response_;
  std::array<char, 4096> drainBuffer_{};
  std::size_t drained_ = 0;
};

void OpsServerCore::accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (stopping || ec == asio::error::operation_aborted) return;
    if (ec) {
      spdlog::warn("ops endpoint: accept failed: {} (retrying)", ec.message());
      acceptRetry.expires_after(kAcceptRetryDelay);
      acceptRetry.async_wait([this](beast::error_code waitEc) {
        if (!waitEc && !stopping) accept();
      });
      return;
    }
    if (sessions.size() >= options.maxConnections) {
      if (!warnedConnectionLimit) {
        spdlog::warn(
            "ops endpoint: {} connections open, closing new ones until some end (limit "
            "max_connections={})",
            sessions.size(), options.maxConnections);
        warnedConnectionLimit = true;
      }
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      warnedConnectionLimit = false;
      std::uint64_t id = nextSessionId++;
      auto session = std::make_shared<Session>(std::move(socket), *this, id);
      sessions.emplace(id, session);
      session->start();
    }
    accept();
  });
}

void OpsServerCore::closeAll() {
  stopping = true;
  beast::error_code ignored;
  acceptor.close(ignored);
  acceptRetry.cancel();
  // Collect first: a session can be destroyed when its last reference goes, which erases it
  // from `sessions`.
  std::vector<std::shared_ptr<Session>> open;
  for (auto& [id, weak] : sessions) {
    if (auto session = weak.lock()) open.push_back(std::move(session));
  }
  for (auto& session : open) session->close();
}

void OpsServerCore::run() {
  for (;;) {
    try {
      ioc.run();  // returns once stop() has closed everything and all handlers finished
      return;
    } catch (const std::exception& e) {
      spdlog::error("ops endpoint: unexpected error in a request handler: {}", e.what());
    }
  }
}

}  // namespace internal

OpsServer::OpsServer() = default;

OpsServer::~OpsServer() { stop(); }

Result<std::uint16_t> OpsServer::start(std::string_view address, Registry& registry,
                                       HealthFn health, const OpsServerOptions& options) {
  if (core_) {
    return Status::failedPrecondition("ops endpoint already started on port " +
                                      std::to_string(port_));
  }
  TM_ASSIGN_OR_RETURN(tcp::endpoint endpoint, parseListenAddress(address));
  auto core = std::make_unique<internal::OpsServerCore>(registry, std::move(health), options);
  const std::string where = "ops_listen " + std::string(address) + ": ";
  beast::error_code ec;
  core->acceptor.open(endpoint.protocol(), ec);
  if (ec) return Status::ioError(where + "cannot open socket: " + lowerFirst(ec.message()));
  // Lets a restarted node rebind while old connections sit in TIME_WAIT; a live listener on
  // the port still makes bind() fail.
  core->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) return Status::ioError(where + "cannot set SO_REUSEADDR: " + lowerFirst(ec.message()));
  core->acceptor.bind(endpoint, ec);
  if (ec) return Status::ioError(where + lowerFirst(ec.message()));
  core->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::ioError(where + "cannot listen: " + lowerFirst(ec.message()));
  std::uint16_t port = core->acceptor.local_endpoint(ec).port();
  if (ec) return Status::ioError(where + "cannot read bound port: " + lowerFirst(ec.message()));

  core->accept();
  internal::OpsServerCore* raw = core.get();
  core->thread = std::thread([raw] { raw->run(); });
  core_ = std::move(core);
  port_ = port;
  return port;
}

void OpsServer::stop() {
  if (!core_ || !core_->thread.joinable()) return;
  internal::OpsServerCore* raw = core_.get();
  asio::post(core_->ioc, [raw] { raw->closeAll(); });
  core_->thread.join();
}

}  // namespace trialmesh::ops
