// LocalFederation::create with explicit site sizes (LocalFederationOptions::siteRows, for the
// benchmark's federation of very unequal sites): each site's CSV and store hold exactly its
// rows, and a wrong list is refused with a message saying what to change. Nothing is started.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "node/local_federation.h"
#include "storage/store.h"

namespace trialmesh::node {
namespace {

namespace fs = std::filesystem;

class LocalFederationSizesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("trialmesh-localfed-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

size_t dataLines(const std::string& csv) {
  std::ifstream in(csv);
  std::string line;
  size_t n = 0;
  while (std::getline(in, line)) ++n;
  return n - 1;  // the header
}

TEST_F(LocalFederationSizesTest, EachSiteHoldsExactlyItsRows) {
  LocalFederationOptions o;
  o.directory = dir_;
  o.sites = 4;
  o.rows = 400;
  o.siteRows = {60, 13, 2, 1};
  auto fed = LocalFederation::create(o);
  ASSERT_TRUE(fed.isOk()) << fed.status().toString();
  for (size_t i = 0; i < o.siteRows.size(); ++i) {
    EXPECT_EQ(dataLines((*fed)->siteCsvPath(i)), o.siteRows[i]) << i;
    storage::StoreOptions so;
    so.createIfMissing = false;
    auto store = storage::Store::open((*fed)->siteDirectory(i) + "/store", so);
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    auto source = (*store)->openDataset(LocalFederation::kDataset);
    ASSERT_TRUE(source.isOk()) << source.status().toString();
    EXPECT_EQ((*source)->rowCount(), o.siteRows[i]) << i;
  }
}

TEST_F(LocalFederationSizesTest, WrongSizesAreRefused) {
  LocalFederationOptions o;
  o.directory = dir_;
  o.sites = 3;
  o.rows = 30;
  o.siteRows = {5, 5};
  auto fed = LocalFederation::create(o);
  ASSERT_FALSE(fed.isOk());
  EXPECT_NE(fed.status().toString().find("siteRows has 2 entries for 3 sites"), std::string::npos)
      << fed.status().toString();

  fs::remove_all(dir_);
  o.siteRows = {5, 5, 1000};
  fed = LocalFederation::create(o);
  ASSERT_FALSE(fed.isOk());
  EXPECT_NE(fed.status().toString().find("siteRows asks 1000 rows"), std::string::npos)
      << fed.status().toString();
  EXPECT_NE(fed.status().toString().find("raise rows"), std::string::npos)
      << fed.status().toString();
}

}  // namespace
}  // namespace trialmesh::node
