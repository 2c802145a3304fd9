// A power cut during and after an import (issue #12 item 7): the store runs on a RocksDB file
// system that forgets every write not synced (tests/common/power_loss_fs.h), which kill -9
// (crash_test.cc) cannot show since the page cache survives it. A cut mid-import leaves the
// previous version whole; an import that returned OK survives the cut in full.
#include <gtest/gtest.h>

#include <string>

#include "store_test_util.h"
#include "tests/common/power_loss_fs.h"

namespace trialmesh::storage {
namespace {

using testing::TempDir;

constexpr uint64_t kV1Rows = 20000;
constexpr uint64_t kBigRows = 150000;  // ~9.5 MB: progress at 0, 4 and 8 MiB, then at the end

StoreOptions onDisk(rocksdb::Env* env) {
  StoreOptions o;
  o.cacheBytes = 0;
  o.createIfMissing = false;
  o.env = env;
  return o;
}

// The store as a restart after the cut sees it: `rows` rows of `salt`'s data at `version`, and
// no data of another version.
void expectOnlyVersion(const std::string& dir, uint64_t version, uint64_t rows, uint64_t salt) {
  {
    auto store = Store::open(dir, onDisk(nullptr));
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    auto info = (*store)->datasetInfo("trial");
    ASSERT_TRUE(info.isOk()) << info.status().toString();
    EXPECT_EQ(info->version, version);
    EXPECT_EQ(info->rows, rows);
    auto ds = (*store)->openDataset("trial");
    ASSERT_TRUE(ds.isOk()) << ds.status().toString();
    testing::expectDatasetMatches(**ds, rows, salt);
  }
  auto keys = testing::dataKeyCounts(dir);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys.begin()->first, std::make_pair(std::string("trial"), version));
}

TEST(PowerLossImportTest, ACutMidImportKeepsThePreviousVersionAndAFinishedImportSurvives) {
  TempDir tmp;
  const std::string dir = tmp / "store";
  ASSERT_TRUE(testing::writeTrialCsv(tmp / "v1.csv", kV1Rows, 0));
  ASSERT_TRUE(testing::writeTrialCsv(tmp / "big.csv", kBigRows, 7));
  uint64_t v1 = 0;
  {
    auto store = Store::open(dir);
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    auto r = (*store)->importCsv("trial", testing::trialDictionary(), tmp / "v1.csv");
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    v1 = r->version;
  }

  // The power goes at the first progress report of the next import (nothing written yet) and
  // at the third (8 MiB in, before it commits).
  for (int cutAt : {1, 3}) {
    SCOPED_TRACE("cut at progress report " + std::to_string(cutAt));
    trialmesh::testing::PowerLossFileSystem disk;
    {
      auto store = Store::open(dir, onDisk(disk.env()));
      ASSERT_TRUE(store.isOk()) << store.status().toString();
      ImportOptions io;
      int reports = 0;
      io.progress = [&](uint64_t, uint64_t) {
        if (++reports == cutAt) disk.crash();
      };
      auto r = (*store)->importCsv("trial", testing::trialDictionary(), tmp / "big.csv", io);
      EXPECT_FALSE(r.isOk()) << "the import wrote nothing after the cut, yet it committed";
      EXPECT_TRUE(disk.crashed());
    }
    expectOnlyVersion(dir, v1, kV1Rows, 0);
  }

  // An import that returned OK, then the cut: all of it is there after the restart.
  trialmesh::testing::PowerLossFileSystem disk;
  uint64_t v2 = 0;
  {
    auto store = Store::open(dir, onDisk(disk.env()));
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    auto r = (*store)->importCsv("trial", testing::trialDictionary(), tmp / "big.csv");
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    v2 = r->version;
    disk.crash();
  }
  expectOnlyVersion(dir, v2, kBigRows, 7);
}

}  // namespace
}  // namespace trialmesh::storage
