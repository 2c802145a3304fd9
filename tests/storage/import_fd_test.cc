// Import from an open file descriptor (ImportOptions::inputFd): how the node imports a file the
// CLI opened and passed over the admin socket (node/admin_ops.cc).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "store_test_util.h"

namespace trialmesh::storage::testing {
namespace {

bool fdIsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(ImportFdTest, ReadsTheDescriptorAndNamesTheGivenPath) {
  TempDir dir;
  ASSERT_TRUE(writeTrialCsv(dir / "trial.csv", 1500));
  auto store = Store::open(dir / "store");
  ASSERT_TRUE(store.isOk()) << store.status().toString();
  // Renamed after opening: the import must read the descriptor, not the path.
  int fd = ::open((dir / "trial.csv").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::filesystem::rename(dir / "trial.csv", dir / "moved.csv");
  ImportOptions options;
  options.inputFd = fd;
  auto report = (*store)->importCsv("t", trialDictionary(), "/exports/trial.csv", options);
  ASSERT_TRUE(report.isOk()) << report.status().toString();
  EXPECT_EQ(report->rows, 1500u);
  EXPECT_FALSE(fdIsOpen(fd));  // taken over and closed
  auto info = (*store)->datasetInfo("t");
  ASSERT_TRUE(info.isOk());
  EXPECT_EQ(info->sourceFile, "/exports/trial.csv");
  auto source = (*store)->openDataset("t");
  ASSERT_TRUE(source.isOk());
  expectDatasetMatches(**source, 1500, 0);
}

TEST(ImportFdTest, ErrorsNameTheGivenPathAndCloseTheDescriptor) {
  TempDir dir;
  // Appended rather than `std::string(...) + "..."`: GCC 12 -O2 warns falsely (-Warray-bounds)
  // on the temporary's inlined copy.
  std::string bad(trialCsvHeader());
  bad += "not,enough\n";
  { std::ofstream(dir / "bad.csv") << bad; }
  auto store = Store::open(dir / "store");
  ASSERT_TRUE(store.isOk());
  int fd = ::open((dir / "bad.csv").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ImportOptions options;
  options.inputFd = fd;
  auto report = (*store)->importCsv("t", trialDictionary(), "site7.csv", options);
  ASSERT_FALSE(report.isOk());
  EXPECT_NE(report.status().message().find("site7.csv:2:"), std::string::npos)
      << report.status().message();
  EXPECT_FALSE(fdIsOpen(fd));

  // Refused before reading (bad dataset name): the descriptor is closed all the same.
  fd = ::open((dir / "bad.csv").c_str(), O_RDONLY | O_CLOEXEC);
  options.inputFd = fd;
  EXPECT_FALSE((*store)->importCsv("bad name", trialDictionary(), "site7.csv", options).isOk());
  EXPECT_FALSE(fdIsOpen(fd));
}

}  // namespace
}  // namespace trialmesh::storage::testing
