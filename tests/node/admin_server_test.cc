// The admin socket (node/admin_server.h, node/admin_protocol.h) without a node: file mode,
// directory checks, stale and busy sockets, protocol versions, progress and a passed file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "node/admin_protocol.h"
#include "node/admin_server.h"

namespace trialmesh::node {
namespace {

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tm-admin-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    ::chmod(dir_.c_str(), 0700);
    path_ = (dir_ / "admin.sock").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Echoes the op; reads a passed file; reports two progress steps.
  static AdminHandler handler() {
    return [](const nlohmann::json& request, int fd, AdminReply& reply) -> Result<nlohmann::json> {
      if (request.value("op", "") == "fail") return Status::failedPrecondition("as asked");
      std::string content;
      if (fd >= 0) {
        char buf[64];
        ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n > 0) content.assign(buf, static_cast<size_t>(n));
        ::close(fd);
      }
      reply.progress(1, 2);
      reply.progress(2, 2);
      return nlohmann::json{{"op", request.value("op", "")}, {"content", content}};
    };
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(AdminServerTest, ServesRequestsWithProgressAndAPassedFile) {
  AdminServer server;
  ASSERT_TRUE(server.start(path_, handler()).isOk());
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  const std::string file = (dir_ / "data.csv").string();
  std::ofstream(file) << "a,b\n";
  int fd = ::open(file.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::vector<std::pair<uint64_t, uint64_t>> steps;
  auto r = callAdmin(path_, {{"v", kAdminProtocolVersion}, {"op", "import"}}, fd,
                     [&steps](uint64_t d, uint64_t t) { steps.emplace_back(d, t); });
  ::close(fd);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ((*r)["op"], "import");
  EXPECT_EQ((*r)["content"], "a,b\n");
  EXPECT_EQ(steps.size(), 2u);

  auto failed = callAdmin(path_, {{"v", kAdminProtocolVersion}, {"op", "fail"}});
  ASSERT_FALSE(failed.isOk());
  EXPECT_EQ(failed.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(failed.status().message(), "as asked");

  auto wrongVersion = callAdmin(path_, {{"v", 99}, {"op", "status"}});
  ASSERT_FALSE(wrongVersion.isOk());
  EXPECT_NE(wrongVersion.status().message().find("version 99 is not supported"), std::string::npos);

  // A second server on the same path is refused while the first listens.
  AdminServer second;
  Status busy = second.start(path_, handler());
  EXPECT_EQ(busy.code(), StatusCode::kUnavailable) << busy.toString();
  server.stop();
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(AdminServerTest, ReplacesAStaleSocketAndRefusesUnsafePaths) {
  {
    // What a killed node leaves: a bound socket file nobody listens on.
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
    ASSERT_TRUE(std::filesystem::is_socket(path_));
  }
  AdminServer again;
  ASSERT_TRUE(again.start(path_, handler()).isOk());
  again.stop();

  std::ofstream(path_) << "not a socket";
  AdminServer notSocket;
  EXPECT_EQ(notSocket.start(path_, handler()).code(), StatusCode::kAlreadyExists);

  const auto open = dir_ / "open";
  std::filesystem::create_directories(open);
  ::chmod(open.c_str(), 0777);
  AdminServer unsafe;
  Status s = unsafe.start((open / "admin.sock").string(), handler());
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.toString();
  EXPECT_NE(s.message().find("writable by other users"), std::string::npos);

  AdminServer tooLong;
  EXPECT_EQ(tooLong.start("/" + std::string(200, 'x'), handler()).code(),
            StatusCode::kInvalidArgument);

  EXPECT_EQ(callAdmin((dir_ / "nobody.sock").string(), {{"v", 1}}).status().code(),
            StatusCode::kUnavailable);
}

}  // namespace
}  // namespace trialmesh::node
