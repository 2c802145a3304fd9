// ConsoleApp: what `trialmesh console` answers once a request passed the access check
// (console_server.h). The pages and their scripts come from the assets directory, Chart.js
// from Debian's libjs-chart.js, and /api/* is a thin JSON API over the same coordinator calls
// the CLI makes, over one CoordinatorSession held for the console's lifetime
// (docs/console.md lists every route).
//
// Who it acts as: a coordinator's identity runs queries (the coordinator page), an ethics-board
// member's reads approvals and audit logs (the board page, console_board.h); either may be
// null, not both (`trialmesh console --demo` holds both).
//
// Thread-safety: handle() may be called concurrently.
// Ownership: the identities are not copied and must outlive the app.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "crypto/identity.h"
#include "node/config.h"
#include "node/coordinator.h"
#include "tools/console/console_server.h"

namespace trialmesh::console {

struct ConsoleAppOptions {
  std::string assetsDir;     // index.html, console.js, console.css
  std::string chartJsPath;   // chart.min.js (Debian: /usr/share/javascript/chart.js/)
  std::string defaultStudy;  // preselected in the page; may be empty
  std::chrono::milliseconds deadline{30000};  // per query (models: the whole fit)
  size_t keptResults = 32;                    // results kept for download, newest first
};

class ConsoleApp {
 public:
  ConsoleApp(const crypto::Identity* coordinator, const crypto::Identity* board,
             node::Members members, ConsoleAppOptions options);
  ~ConsoleApp();

  HttpReply handle(const HttpRequest& request);

 private:
  HttpReply info();
  HttpReply runQuery(const HttpRequest& request);
  HttpReply result(const std::string& name);
  HttpReply board();
  HttpReply asset(const std::string& path) const;

  const crypto::Identity* coordinator_;
  const crypto::Identity* board_;
  const node::Members members_;
  const ConsoleAppOptions options_;
  std::unique_ptr<node::CoordinatorSession> session_;  // with a coordinator identity

  struct Kept {
    uint64_t id = 0;
    std::string json;
    std::string csv;
  };
  std::mutex resultsMutex_;
  std::deque<Kept> results_;  // resultsMutex_
  uint64_t nextResult_ = 1;   // resultsMutex_
};

}  // namespace trialmesh::console
