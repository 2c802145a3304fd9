// The site store: a RocksDB database holding a site's datasets as typed column chunks, with
// atomic, versioned CSV import (format in docs/storage-format.md, CSV rules in docs/csv.md).
//
// A dataset is a named table whose columns are the variables of a data dictionary. Importing
// a CSV file creates a new version of the dataset: either the whole file lands (and is durable
// once importCsv returns OK) or nothing changes, even if the process is killed mid-import.
// Readers hold a consistent snapshot of one version; a re-import does not disturb them.
//
// Thread-safety: Store is thread-safe. Imports and drops of one dataset are exclusive (a
// second concurrent one fails with FailedPrecondition); reads never block on them.
// Ownership: a ColumnSource returned by openDataset keeps the database open until released,
// even after the Store is destroyed.
// Errors: every method returns Status/Result; RocksDB errors are converted here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/column.h"
#include "storage/csv_reader.h"
#include "storage/dictionary.h"

namespace rocksdb {
class Env;
}

namespace trialmesh::storage {

struct StoreOptions {
  // Bytes of decoded column chunks kept in memory for repeated scans (default 256 MiB;
  // 0 disables the cache).
  size_t cacheBytes = size_t{256} << 20;
  // Create the store directory (and parents) if it does not exist (default true).
  bool createIfMissing = true;
  // Open without writing anything or taking the RocksDB LOCK (`trialmesh-node --check-config`
  // on a store a node may be serving). Reads see the store as of the open; imports and drops
  // fail. Implies createIfMissing = false.
  bool readOnly = false;
  // The RocksDB environment (file system) under the store; null: the default. Tests pass one
  // that can lose power (tests/common/power_loss_fs.h).
  rocksdb::Env* env = nullptr;
};

struct ImportOptions {
  // Value errors listed before "... and N more errors" (default 20; at least 1 is shown).
  size_t maxErrors = 20;
  // Called from the importing thread every few MiB and once at the end; must be cheap.
  std::function<void(uint64_t bytesDone, uint64_t bytesTotal)> progress;
  // CSV reader settings (delimiter, encoding, block size).
  CsvOptions csv;
  // A subject id (an `identifier` variable) seen twice in the file: an error that stops the
  // import (default), or a warning listed in ImportReport::warnings and imported anyway — for
  // exports with one row per visit, where repeats are expected.
  enum class DuplicateIds { kError, kWarn };
  DuplicateIds duplicateIds = DuplicateIds::kError;
  // When >= 0: read the CSV from this open file descriptor (taken over and closed, also on
  // error) instead of opening csvPath, which still names the file in messages and in
  // DatasetInfo::sourceFile. The node's live import reads a file the CLI opened and passed
  // over the admin socket, so the service user needs no access to the operator's files.
  int inputFd = -1;
};

struct ImportReport {
  uint64_t rows = 0;
  uint64_t version = 0;
  double seconds = 0;
  // Repeated subject ids imported under DuplicateIds::kWarn: how many, and the first
  // ImportOptions::maxErrors of them ("trial.csv:12: column 'USUBJID' (variable usubjid):
  // value 'S01-0007' repeats the subject id of line 3").
  uint64_t duplicateIds = 0;
  std::vector<std::string> warnings;
};

struct DatasetInfo {
  std::string name;
  std::string study;
  std::string dictionaryHash;  // hex SHA-256 of the dictionary's canonical form
  std::string sourceFile;      // the CSV path given to importCsv
  uint64_t version = 0;        // increases with every import; unique within the store
  uint64_t rows = 0;
  int64_t importedAtUnixSeconds = 0;
};

class Store {
 public:
  // Opens (or creates) the store in directory `dir`. Removes leftovers of imports that did
  // not commit (e.g. a killed process). Errors: Unavailable when another process has the
  // store open; IOError; Corruption.
  static Result<std::unique_ptr<Store>> open(const std::string& dir,
                                             const StoreOptions& options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Imports `csvPath` as the next version of `dataset` (created if new), validating every
  // value against `dict`. REQUIRES: dataset matches [A-Za-z0-9_.-]{1,64}.
  // Errors: InvalidArgument listing the file's problems ("trial.csv:12: column 'AGE' (variable
  // age): value '150' is above the allowed maximum 100"), NotFound for a missing file,
  // FailedPrecondition when the dataset is being imported or dropped concurrently, IOError.
  // On any error the store is unchanged.
  Result<ImportReport> importCsv(const std::string& dataset, const Dictionary& dict,
                                 const std::string& csvPath, const ImportOptions& options = {});

  Result<std::vector<DatasetInfo>> listDatasets() const;           // sorted by name
  Result<DatasetInfo> datasetInfo(const std::string& name) const;  // NotFound if absent

  // A consistent snapshot of the dataset's current version; stays readable while later
  // imports commit and after the dataset is dropped.
  Result<std::shared_ptr<const ColumnSource>> openDataset(const std::string& name) const;

  // Removes the dataset and its data. NotFound if absent.
  Status dropDataset(const std::string& name);

  // Writes a consistent, openable copy of the whole store to `targetDir`, which must not
  // exist (hard links where possible).
  Status checkpoint(const std::string& targetDir);

  // The store directory.
  const std::string& directory() const;

  class Impl;

 private:
  explicit Store(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace trialmesh::storage
