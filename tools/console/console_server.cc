// The only translation unit of the console that includes Boost.Beast (it costs ~20 s to
// compile).
#include "tools/console/console_server.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "tools/console/console_auth.h"

namespace trialmesh::console {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

std::string str(beast::string_view s) { return std::string(s.data(), s.size()); }
beast::string_view bsv(const std::string& s) { return {s.data(), s.size()}; }

}  // namespace

namespace internal {

class Session;

class ConsoleServerCore {
 public:
  ConsoleServerCore(std::string token, HttpHandler handler, const ConsoleServerOptions& options)
      : token(std::move(token)), handler(std::move(handler)), options(options) {}

  void accept();
  void closeAll();  // on an io thread
  void markStopped() {
    std::lock_guard lock(stopMutex);
    stopped = true;
    stopCv.notify_all();
  }

  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  const std::string token;
  const HttpHandler handler;
  const ConsoleServerOptions options;
  uint16_t port = 0;

  std::mutex sessionsMutex;
  bool closing = false;                                           // sessionsMutex
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions;  // sessionsMutex
  uint64_t nextId = 0;                                            // sessionsMutex

  std::mutex stopMutex;
  std::condition_variable stopCv;
  bool stopped = false;  // stopMutex
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, ConsoleServerCore& core, uint64_t id)
      : stream_(std::move(socket)), core_(core), id_(id) {}
  ~Session() {
    std::lock_guard lock(core_.sessionsMutex);
    core_.sessions.erase(id_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start() { read(); }
  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  using Response = http::response<http::string_body>;

  void read() {
    parser_.emplace();
    parser_->body_limit(core_.options.maxBodyBytes);
    stream_.expires_after(core_.options.readTimeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      HttpReply r{
          413,
          "text/plain; charset=utf-8",
          "request body larger than " + std::to_string(core_.options.maxBodyBytes) + " bytes\n",
          {}};
      return write(toResponse(r, 11), false);
    }
    if (ec) return close();  // end of stream, timeout, malformed, or closed by stop()
    const auto& req = parser_->get();
    stream_.expires_never();  // the handler may take as long as a federated query
    Response response = toResponse(handle(req), req.version());
    const bool keepAlive = req.keep_alive();
    response.keep_alive(keepAlive);
    write(std::move(response), keepAlive);
  }

  HttpReply handle(const http::request<http::string_body>& req) {
    RequestFacts facts;
    facts.method = str(req.method_string());
    facts.target = str(req.target());
    facts.host = str(req[http::field::host]);
    facts.origin = str(req[http::field::origin]);
    facts.cookie = str(req[http::field::cookie]);
    facts.authorization = str(req[http::field::authorization]);
    const AccessDecision access = checkAccess(facts, core_.token, core_.port);
    switch (access.kind) {
      case AccessDecision::Kind::kRefuse:
        return HttpReply{access.status, "text/plain; charset=utf-8", access.reason + "\n", {}};
      case AccessDecision::Kind::kRedirectWithCookie:
        return HttpReply{303,
                         "text/plain; charset=utf-8",
                         "see " + access.location + "\n",
                         {{"Location", access.location}, {"Set-Cookie", access.setCookie}}};
      case AccessDecision::Kind::kAllow:
        break;
    }
    HttpRequest request{facts.method, facts.target, facts.target.substr(0, facts.target.find('?')),
                        req.body()};
    try {
      return core_.handler(request);
    } catch (const std::exception& e) {
      // A bug in a handler must not take the console down with the user's session.
      return HttpReply{500,
                       "application/json",
                       std::string("{\"error\":\"internal error: ") + e.what() + "\"}",
                       {}};
    }
  }

  static Response toResponse(const HttpReply& r, unsigned version) {
    Response response{static_cast<http::status>(r.status), version};
    response.set(http::field::server, "trialmesh-console");
    response.set(http::field::content_type, bsv(r.contentType));
    response.set(http::field::cache_control, "no-store");
    // The pages load only their own scripts, and nothing may frame them (clickjacking).
    response.set(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "frame-ancestors 'none'");
    response.set("X-Content-Type-Options", "nosniff");
    response.set("Referrer-Policy", "no-referrer");
    for (const auto& [name, value] : r.headers) response.set(bsv(name), bsv(value));
    response.body() = r.body;
    response.prepare_payload();
    return response;
  }

  void write(Response response, bool keepAlive) {
    response_ = std::move(response);
    if (!keepAlive) response_->keep_alive(false);
    stream_.expires_after(core_.options.readTimeout);
    http::async_write(stream_, *response_,
                      [self = shared_from_this(), keepAlive](beast::error_code ec, size_t) {
                        self->response_.reset();
                        if (ec || !keepAlive) return self->close();
                        self->read();
                      });
  }

  beast::tcp_stream stream_;
  ConsoleServerCore& core_;
  const uint64_t id_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<Response> response_;
};

void ConsoleServerCore::accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      std::shared_ptr<Session> session;
      {
        std::lock_guard lock(sessionsMutex);
        if (closing) return;
        uint64_t id = nextId++;
        session = std::make_shared<Session>(std::move(socket), *this, id);
        sessions.emplace(id, session);
      }
      session->start();
    }
    accept();
  });
}

void ConsoleServerCore::closeAll() {
  beast::error_code ignored;
  acceptor.close(ignored);
  signals.cancel(ignored);
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard lock(sessionsMutex);
    closing = true;
    for (auto& [id, weak] : sessions)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  for (auto& s : open) s->close();
  work.reset();
}

}  // namespace internal

ConsoleServer::ConsoleServer() = default;
ConsoleServer::~ConsoleServer() { stop(); }

Result<uint16_t> ConsoleServer::start(const std::string& listen, std::string token,
                                      HttpHandler handler, const ConsoleServerOptions& options) {
  if (core_) return Status::failedPrecondition("console server already started");
  TM_ASSIGN_OR_RETURN(ListenAddress address, parseListenAddress(listen));
  auto core =
      std::make_unique<internal::ConsoleServerCore>(std::move(token), std::move(handler), options);
  const std::string where = "--listen " + listen + ": ";
  beast::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(address.host, ec), address.port);
  if (ec) return Status::invalidArgument(where + ec.message());
  core->acceptor.open(endpoint.protocol(), ec);
  if (!ec) core->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) core->acceptor.bind(endpoint, ec);
  if (ec == asio::error::address_in_use) {
    return Status::ioError(where + ec.message() +
                           " (another console? pass --listen 127.0.0.1:PORT, or port 0 for "
                           "any free one)");
  }
  if (!ec) core->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::ioError(where + ec.message());
  core->port = core->acceptor.local_endpoint(ec).port();
  if (ec) return Status::ioError(where + ec.message());
  internal::ConsoleServerCore* raw = core.get();
  core->signals.async_wait([raw](beast::error_code waitEc, int) {
    if (!waitEc) raw->markStopped();
  });
  core->work.emplace(core->ioc.get_executor());
  core->accept();
  for (unsigned i = 0; i < std::max(1u, options.threads); ++i) {
    core->threads.emplace_back([raw] {
      for (;;) {
        try {
          raw->ioc.run();
          return;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "console: unexpected error: %s\n", e.what());
        }
      }
    });
  }
  const uint16_t port = core->port;
  core_ = std::move(core);
  return port;
}

void ConsoleServer::wait() {
  if (!core_) return;
  std::unique_lock lock(core_->stopMutex);
  core_->stopCv.wait(lock, [this] { return core_->stopped; });
}

void ConsoleServer::stop() {
  if (!core_) return;
  internal::ConsoleServerCore* raw = core_.get();
  asio::post(core_->ioc, [raw] { raw->closeAll(); });
  for (auto& t : core_->threads)
    if (t.joinable()) t.join();
  core_->markStopped();
  core_.reset();
}

}  // namespace trialmesh::console
