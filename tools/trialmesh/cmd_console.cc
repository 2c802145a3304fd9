// `trialmesh console`: the local web application (tools/console, docs/console.md).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "crypto/identity.h"
#include "node/config.h"
#include "node/local_federation.h"
#include "tools/console/console_app.h"
#include "tools/console/console_auth.h"
#include "tools/console/console_server.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/commands.h"
#include "tools/trialmesh/passphrase.h"

namespace trialmesh::cli {
namespace {

namespace fs = std::filesystem;

struct ConsoleArgs {
  std::string members;
  std::string identity;
  std::string boardIdentity;
  std::string passphraseFile;
  std::string listen = "127.0.0.1:8750";
  std::string study;
  std::string assets;
  std::string chartJs = "/usr/share/javascript/chart.js/chart.min.js";
  int64_t deadlineMs = 30000;
  bool demo = false;
  uint64_t demoRows = 3000;
};

// The page's files: --assets, else next to the installed binary (/usr/bin/../share/trialmesh/
// console), else the source tree this binary was built from (a build tree, the tests).
std::string defaultAssets() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = exe.parent_path().parent_path() / "share/trialmesh/console";
    if (fs::exists(installed / "index.html", ec)) return installed.string();
  }
  return TRIALMESH_CONSOLE_SOURCE_ASSETS;
}

// `coordinator` runs queries, `board` reads approvals and audit logs; either may be null.
int serve(const ConsoleArgs& a, const crypto::Identity* coordinator, const crypto::Identity* board,
          const node::Members& members, const std::string& study) {
  const std::string assets = a.assets.empty() ? defaultAssets() : a.assets;
  std::error_code ec;
  if (!fs::exists(fs::path(assets) / "index.html", ec)) {
    return fail(Status::notFound("no index.html in " + assets + " (pass --assets DIR)"));
  }
  if (!fs::exists(a.chartJs, ec)) {
    return fail(Status::notFound(a.chartJs +
                                 " is missing: install Debian's libjs-chart.js (apt-get install "
                                 "libjs-chart.js), or pass --chartjs FILE"));
  }
  console::ConsoleAppOptions options;
  options.assetsDir = assets;
  options.chartJsPath = a.chartJs;
  options.defaultStudy = study;
  options.deadline = std::chrono::milliseconds(a.deadlineMs);
  console::ConsoleApp app(coordinator, board, members, options);
  const std::string token = console::newAccessToken();
  console::ConsoleServer server;
  auto port = server.start(a.listen, token,
                           [&app](const console::HttpRequest& r) { return app.handle(r); });
  if (!port) return fail(port.status());
  auto address = console::parseListenAddress(a.listen);
  const std::string host =
      address->host.find(':') != std::string::npos ? "[" + address->host + "]" : address->host;
  for (const crypto::Identity* id : {coordinator, board}) {
    if (id == nullptr) continue;
    const node::Member* me = members.findByKey(id->pub);
    std::printf("trialmesh console: %s '%s' of federation '%s'\n",
                id == coordinator ? "coordinator" : "ethics board", me ? me->name.c_str() : "?",
                members.federation.c_str());
  }
  std::printf("Open this URL in a browser on this machine (it holds the access token):\n");
  std::printf("    http://%s:%u/?token=%s\n", host.c_str(), static_cast<unsigned>(*port),
              token.c_str());
  std::printf("Stop with Ctrl-C.\n");
  std::fflush(stdout);
  server.wait();
  std::printf("trialmesh console: stopping\n");
  std::fflush(stdout);
  server.stop();
  return 0;
}

int runConsole(const ConsoleArgs& a) {
  if (a.deadlineMs <= 0) return fail(Status::invalidArgument("--deadline-ms must be positive"));
  // Refuse a non-loopback --listen before anything else (no TLS in this version).
  if (auto address = console::parseListenAddress(a.listen); !address) return fail(address.status());
  if (a.demo) {
    char tmpl[] = "/tmp/trialmesh-console-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr)
      return fail(Status::ioError("cannot create a directory in /tmp"));
    node::LocalFederationOptions options;
    options.directory = tmpl;
    options.rows = a.demoRows;
    int status = 0;
    {
      auto fed = node::LocalFederation::create(options);
      if (!fed) return fail(fed.status());
      std::printf("demo: a 3-site federation on 127.0.0.1 in %s (study %s)\n", tmpl,
                  node::LocalFederation::kStudy);
      std::fflush(stdout);
      if (Status s = (*fed)->start(); !s.isOk()) return fail(s);
      status = serve(a, &(*fed)->coordinator(), &(*fed)->committee(), (*fed)->members(),
                     node::LocalFederation::kStudy);
      (*fed)->stop();
    }
    std::error_code ec;
    fs::remove_all(tmpl, ec);
    return status;
  }
  if (a.members.empty() || a.identity.empty()) {
    return fail(Status::invalidArgument(
        "trialmesh console needs --members members.toml --identity KEY (or --demo)"));
  }
  auto members = node::loadMembers(a.members);
  if (!members) return fail(members.status());
  // Unlocked once: the console then holds the identities for its lifetime. --identity is a
  // coordinator's key (queries) or an ethics-board member's (the board page).
  auto identity = crypto::loadIdentity(a.identity, passphraseProvider(a.passphraseFile));
  if (!identity) return fail(identity.status().withContext(a.identity));
  const node::Member* me = members->findByKey(identity->pub);
  if (me == nullptr || me->role == node::Role::kSite) {
    return fail(Status::permissionDenied(
        a.identity + " (" + identity->pub.toText() + ") is not a coordinator or ethics-board " +
        "member in " + a.members + "; sites answer queries only from coordinators and show " +
        "approvals and audit logs only to ethics boards"));
  }
  std::optional<crypto::Identity> boardIdentity;
  if (!a.boardIdentity.empty()) {
    auto b = crypto::loadIdentity(a.boardIdentity, passphraseProvider(a.passphraseFile));
    if (!b) return fail(b.status().withContext(a.boardIdentity));
    const node::Member* bm = members->findByKey(b->pub);
    if (bm == nullptr || bm->role != node::Role::kEthicsBoard) {
      return fail(Status::permissionDenied("--board-identity " + a.boardIdentity +
                                           " is not an ethics-board member in " + a.members));
    }
    boardIdentity = std::move(*b);
  }
  const bool coordinator = me->role == node::Role::kCoordinator;
  const crypto::Identity* board = boardIdentity  ? &*boardIdentity
                                  : !coordinator ? &*identity
                                                 : nullptr;
  return serve(a, coordinator ? &*identity : nullptr, board, *members, a.study);
}

}  // namespace

void addConsoleCommand(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<ConsoleArgs>();
  CLI::App* c = app.add_subcommand(
      "console",
      "A local web application for coordinators: pick a study, run queries, see tables,\n"
      "Kaplan-Meier curves and forest plots, download CSV/JSON/PNG; for ethics boards\n"
      "(/board): each site's approvals, verified audit log and query timeline (docs/console.md).\n"
      "Serves plain HTTP on loopback only and prints a URL with a random access token.\n"
      "  trialmesh console --members members.toml --identity coord.key --study LUNG-7\n"
      "  trialmesh console --demo          (a throwaway 3-site federation to try it)");
  c->add_option("--members", args->members, "The federation's members file");
  c->add_option("--identity", args->identity,
                "Your key file: a coordinator's (queries) or an ethics-board member's (the board "
                "page)");
  c->add_option("--board-identity", args->boardIdentity,
                "Also an ethics-board member's key file, for the board page next to queries");
  c->add_option("--passphrase-file", args->passphraseFile,
                "File holding the key's passphrase (else env TRIALMESH_PASSPHRASE, else a "
                "prompt)");
  c->add_option("--listen", args->listen,
                "Loopback address to serve on (127.0.0.1, ::1 or localhost; port 0: any)")
      ->capture_default_str();
  c->add_option("--study", args->study, "Study preselected in the page");
  c->add_option("--assets", args->assets,
                "Directory of the page's files (default: the installed "
                "/usr/share/trialmesh/console)");
  c->add_option("--chartjs", args->chartJs, "Chart.js file (Debian's libjs-chart.js)")
      ->capture_default_str();
  c->add_option("--deadline-ms", args->deadlineMs, "Wait at most this long per query or model fit")
      ->capture_default_str();
  c->add_flag("--demo", args->demo,
              "Start a throwaway 3-site federation on 127.0.0.1 (as trialmesh demo) and serve "
              "the console as its coordinator; removed on exit");
  c->add_option("--demo-rows", args->demoRows, "Subjects in the --demo study")
      ->capture_default_str();
  c->callback([args, &exitCode] { exitCode = runConsole(*args); });
}

}  // namespace trialmesh::cli
