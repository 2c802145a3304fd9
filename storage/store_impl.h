// Internal to tm_storage: the shared state behind Store and the datasets it hands out, and the
// key/record encodings of docs/storage-format.md. Not for other modules.
#pragma once

#include <rocksdb/db.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "storage/chunk_cache.h"
#include "storage/store.h"

namespace trialmesh::storage {

// Converts a RocksDB error, prefixing `context` ("store /srv/tm: reading dataset 'x'").
Status fromRocks(const rocksdb::Status& status, const std::string& context);

namespace internal {

// Data key: name, 0x00, u64 BE version, u32 BE variable, u32 BE chunk.
std::string dataKey(std::string_view dataset, uint64_t version, uint32_t variable, uint32_t chunk);
// First key of a version's data, and the first key after it.
std::string versionBegin(std::string_view dataset, uint64_t version);
// Meta keys.
std::string datasetRecordKey(std::string_view dataset);
inline constexpr std::string_view kDatasetRecordPrefix = "dataset/";
inline constexpr std::string_view kSequenceKey = "sequence";
// Subdirectory of the store where an import writes its SST files before ingesting them;
// whatever is in it at open belongs to an import that did not finish.
inline constexpr std::string_view kImportTempDir = "import-tmp";

struct DatasetRecord {
  DatasetInfo info;
  std::string dictionaryToml;
};
std::string encodeDatasetRecord(const DatasetRecord& record);
Result<DatasetRecord> decodeDatasetRecord(std::string_view bytes, std::string_view name);

bool isValidDatasetName(std::string_view name);

}  // namespace internal

class Store::Impl {
 public:
  ~Impl();

  Status openDb(const StoreOptions& options);
  Status removeLeftovers();
  Result<internal::DatasetRecord> readRecord(const std::string& name,
                                             const rocksdb::Snapshot* snapshot) const;
  uint64_t allocateVersion() { return nextVersion_.fetch_add(1); }
  // Marks `name` busy for an import or drop; false if it already is.
  bool acquire(const std::string& name);
  void release(const std::string& name);

  Result<ImportReport> importCsv(const std::string& dataset, const Dictionary& dict,
                                 const std::string& csvPath, const ImportOptions& options);

  std::string dir_;
  rocksdb::DB* db_ = nullptr;
  rocksdb::ColumnFamilyHandle* data_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* default_ = nullptr;
  std::unique_ptr<internal::ChunkCache> cache_;
  std::atomic<uint64_t> nextVersion_{1};

 private:
  std::mutex busyMu_;
  std::set<std::string> busy_;
};

}  // namespace trialmesh::storage
