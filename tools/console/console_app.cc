#include "tools/console/console_app.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tools/console/console_board.h"
#include "tools/console/console_query.h"

namespace trialmesh::console {
namespace {

HttpReply jsonReply(int status, const nlohmann::ordered_json& body) {
  return HttpReply{status, "application/json", body.dump(), {}};
}

HttpReply errorReply(int status, const std::string& message) {
  return jsonReply(status, {{"error", message}});
}

int httpStatusOf(const Status& s) {
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kFailedPrecondition:
    case StatusCode::kResourceExhausted:
      return 409;
    case StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

std::string contentTypeOf(const std::string& name) {
  auto ends = [&](const char* ext) {
    const std::string e(ext);
    return name.size() >= e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".png")) return "image/png";
  if (ends(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

std::optional<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Asset names are plain file names: no directories, so no path can leave the assets directory.
bool plainName(const std::string& name) {
  return !name.empty() && name[0] != '.' && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
  });
}

}  // namespace

ConsoleApp::ConsoleApp(const crypto::Identity* coordinator, const crypto::Identity* board,
                       node::Members members, ConsoleAppOptions options)
    : coordinator_(coordinator),
      board_(board),
      members_(std::move(members)),
      options_(std::move(options)) {
  if (coordinator_ != nullptr)
    session_ = std::make_unique<node::CoordinatorSession>(*coordinator_, members_);
}

ConsoleApp::~ConsoleApp() {
  if (session_) session_->close();
}

HttpReply ConsoleApp::handle(const HttpRequest& request) {
  const std::string& path = request.path;
  if (path.rfind("/api/", 0) == 0) {
    if (path == "/api/info" && request.method == "GET") return info();
    if (path == "/api/query" && request.method == "POST") return runQuery(request);
    if (path == "/api/board" && request.method == "GET") return board();
    if (path.rfind("/api/results/", 0) == 0 && request.method == "GET")
      return result(path.substr(std::string("/api/results/").size()));
    return errorReply(404, "no such API call: " + request.method + " " + path);
  }
  if (request.method != "GET" && request.method != "HEAD") {
    HttpReply r{405, "text/plain; charset=utf-8", "method not allowed: use GET\n", {}};
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  return asset(path);
}

HttpReply ConsoleApp::asset(const std::string& path) const {
  std::string file;
  if (path == "/" || path == "/index.html") {
    file = options_.assetsDir + "/index.html";
  } else if (path == "/board") {
    file = options_.assetsDir + "/board.html";
  } else if (path == "/vendor/chart.js") {
    file = options_.chartJsPath;
  } else if (path.rfind("/assets/", 0) == 0 && plainName(path.substr(8))) {
    file = options_.assetsDir + "/" + path.substr(8);
  } else {
    return HttpReply{404, "text/plain; charset=utf-8", "not found: " + path + "\n", {}};
  }
  auto body = readFile(file);
  if (!body) {
    const bool chart = path == "/vendor/chart.js";
    return HttpReply{404,
                     "text/plain; charset=utf-8",
                     "cannot read " + file +
                         (chart ? " (install Debian's libjs-chart.js, or pass --chartjs)\n"
                                : " (pass --assets DIR)\n"),
                     {}};
  }
  return HttpReply{200, contentTypeOf(file), std::move(*body), {}};
}

HttpReply ConsoleApp::info() {
  const crypto::Identity& identity = coordinator_ != nullptr ? *coordinator_ : *board_;
  nlohmann::ordered_json sites = nlohmann::ordered_json::array();
  std::set<std::string> studies;
  std::vector<std::future<Result<node::SiteInfo>>> infos;
  std::vector<const node::Member*> siteMembers;
  for (const auto& m : members_.members) {
    if (m.role != node::Role::kSite) continue;
    siteMembers.push_back(&m);
    for (const auto& s : m.studies) studies.insert(s);
    // Asked in parallel: a site that is down costs its deadline once, not once per site.
    infos.push_back(std::async(std::launch::async, [this, &identity, name = m.name] {
      return session_ ? session_->siteInfo(name, std::chrono::seconds(2))
                      : node::fetchSiteInfo(identity, members_, name, std::chrono::seconds(2));
    }));
  }
  for (size_t i = 0; i < siteMembers.size(); ++i) {
    auto siteInfo = infos[i].get();
    nlohmann::ordered_json site{
        {"site", siteMembers[i]->name},
        {"address", siteMembers[i]->address},
        {"reachable", siteInfo.isOk()},
        {"reason", siteInfo ? "" : siteInfo.status().message()},
        {"studies", siteInfo ? siteInfo->studies : siteMembers[i]->studies}};
    if (siteInfo) {
      for (const auto& s : siteInfo->studies) studies.insert(s);
      nlohmann::ordered_json policies = nlohmann::ordered_json::array();
      for (const auto& p : siteInfo->policies) {
        policies.push_back({{"study", p.study},
                            {"approval", p.approval},
                            {"aggregation", ethics::aggregationModeName(p.aggregation)},
                            {"min_sites", p.minSites},
                            {"min_cell_size", p.minCellSize}});
      }
      site["policies"] = policies;
    }
    sites.push_back(site);
  }
  if (!options_.defaultStudy.empty()) studies.insert(options_.defaultStudy);
  nlohmann::ordered_json out;
  out["federation"] = members_.federation;
  auto name = [this](const crypto::Identity* id) {
    if (id == nullptr) return std::string();
    const node::Member* m = members_.findByKey(id->pub);
    return m != nullptr ? m->name : id->pub.toText();
  };
  out["coordinator"] = name(coordinator_);
  out["board"] = name(board_);
  out["default_study"] = options_.defaultStudy;
  out["studies"] = std::vector<std::string>(studies.begin(), studies.end());
  out["sites"] = sites;
  return jsonReply(200, out);
}

HttpReply ConsoleApp::runQuery(const HttpRequest& request) {
  auto body = nlohmann::json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("study") ||
      !body["study"].is_string() || !body.contains("query") || !body["query"].is_string()) {
    return errorReply(400, "expected a JSON object {\"study\": \"LUNG-7\", \"query\": \"...\"}");
  }
  if (!session_) {
    return errorReply(403,
                      "this console holds an ethics-board key, not a coordinator's: restart it "
                      "with --identity <coordinator key> to run queries");
  }
  const std::string study = body["study"];
  const std::string text = body["query"];
  if (study.empty()) return errorReply(400, "pick a study");
  if (members_.sitesOf(study).empty())
    return errorReply(404, "no site in the members file serves study '" + study + "'");
  auto r = runConsoleQuery(*session_, study, text, options_.deadline);
  if (!r) return errorReply(httpStatusOf(r.status()), r.status().message());
  uint64_t id = 0;
  {
    std::lock_guard lock(resultsMutex_);
    id = nextResult_++;
    results_.push_front(Kept{id, r->json, r->csv});
    if (results_.size() > options_.keptResults) results_.pop_back();
  }
  // The body is exactly `trialmesh query --json`; where to download it again is a header.
  HttpReply reply{200, "application/json", std::move(r->json), {}};
  reply.headers.emplace_back("X-Trialmesh-Result", std::to_string(id));
  return reply;
}

HttpReply ConsoleApp::board() {
  if (board_ == nullptr) {
    return errorReply(403,
                      "sites show approvals and audit logs only to ethics-board members: start "
                      "the console with --board-identity <board key> (or an ethics-board "
                      "--identity)");
  }
  return HttpReply{200, "application/json", boardJson(*board_, members_), {}};
}

HttpReply ConsoleApp::result(const std::string& name) {
  const size_t dot = name.find('.');
  const std::string ext = dot == std::string::npos ? "" : name.substr(dot + 1);
  uint64_t id = 0;
  try {
    id = std::stoull(name.substr(0, dot));
  } catch (const std::exception&) {
    return errorReply(404, "no such result: " + name);
  }
  std::lock_guard lock(resultsMutex_);
  for (const auto& kept : results_) {
    if (kept.id != id) continue;
    const bool csv = ext == "csv";
    if (!csv && ext != "json") return errorReply(404, "results come as .csv or .json");
    HttpReply reply{
        200, csv ? "text/csv; charset=utf-8" : "application/json", csv ? kept.csv : kept.json, {}};
    reply.headers.emplace_back("Content-Disposition", "attachment; filename=\"trialmesh-result-" +
                                                          std::to_string(id) + "." + ext + "\"");
    return reply;
  }
  return errorReply(404, "result " + std::to_string(id) +
                             " is no longer kept (the console keeps the last " +
                             std::to_string(options_.keptResults) + ")");
}

}  // namespace trialmesh::console
