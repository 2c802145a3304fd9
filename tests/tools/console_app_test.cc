// What the console serves once a request passed the access check (tools/console/console_app.h),
// without a federation: its files and nothing else, and the API's refusals.
#include "tools/console/console_app.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace trialmesh::console {
namespace {

class ConsoleAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        std::filesystem::temp_directory_path() / ("console-app-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_ / "assets");
    std::ofstream(dir_ / "assets/index.html") << "<html>index</html>";
    std::ofstream(dir_ / "assets/console.js") << "'use strict';";
    std::ofstream(dir_ / "secret.txt") << "not an asset";
    ConsoleAppOptions options;
    options.assetsDir = (dir_ / "assets").string();
    options.chartJsPath = (dir_ / "no-chart.min.js").string();
    // A board key only: no coordinator session, nothing is dialled by these requests.
    app_ = std::make_unique<ConsoleApp>(nullptr, &board_, node::Members{}, options);
  }
  void TearDown() override {
    app_.reset();
    std::filesystem::remove_all(dir_);
  }
  HttpReply get(const std::string& path) { return app_->handle({"GET", path, path, ""}); }

  std::filesystem::path dir_;
  crypto::Identity board_ = crypto::generateIdentity();
  std::unique_ptr<ConsoleApp> app_;
};

TEST_F(ConsoleAppTest, ServesItsFilesWithTheirTypes) {
  HttpReply index = get("/");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.body, "<html>index</html>");
  EXPECT_EQ(index.contentType, "text/html; charset=utf-8");
  HttpReply js = get("/assets/console.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.contentType, "text/javascript; charset=utf-8");
}

TEST_F(ConsoleAppTest, NothingOutsideTheAssetsDirectory) {
  for (const char* path : {"/assets/../secret.txt", "/assets/..%2fsecret.txt", "/secret.txt",
                           "/assets/", "/assets/.hidden", "/etc/passwd"}) {
    HttpReply r = get(path);
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.body.find("not an asset"), std::string::npos) << path;
  }
}

TEST_F(ConsoleAppTest, MissingChartJsNamesTheDebianPackage) {
  HttpReply r = get("/vendor/chart.js");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("libjs-chart.js"), std::string::npos) << r.body;
}

TEST_F(ConsoleAppTest, ApiRefusals) {
  HttpReply q =
      app_->handle({"POST", "/api/query", "/api/query", R"({"study":"LUNG-7","query":"count"})"});
  EXPECT_EQ(q.status, 403);  // a board key runs no queries
  EXPECT_NE(q.body.find("coordinator"), std::string::npos) << q.body;
  EXPECT_EQ(get("/api/nothing").status, 404);
  EXPECT_EQ(get("/api/results/1.csv").status, 404);
  EXPECT_EQ(app_->handle({"DELETE", "/", "/", ""}).status, 405);
}

}  // namespace
}  // namespace trialmesh::console
