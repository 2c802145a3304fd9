#include "storage/store.h"

#include <rocksdb/cache.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_batch.h>

#include <unistd.h>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <system_error>

#include "storage/chunk_codec.h"
#include "storage/store_impl.h"

namespace trialmesh::storage {

namespace {

constexpr std::string_view kDataFamily = "data";
constexpr std::string_view kMetaFamily = "meta";
constexpr std::string_view kRecordMagic = "TMDS";
constexpr uint8_t kRecordFormat = 1;

void putU64(std::string& out, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xFF));
}
void putU32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xFF));
}
void putStr(std::string& out, std::string_view s) {
  putU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

// Bounds-checked reader for the big-endian records written above.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u64(uint64_t& v) {
    if (in_.size() - pos_ < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in_[pos_ + i]);
    pos_ += 8;
    return true;
  }
  bool u32(uint32_t& v) {
    if (in_.size() - pos_ < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in_[pos_ + i]);
    pos_ += 4;
    return true;
  }
  bool str(std::string& s) {
    uint32_t n;
    if (!u32(n) || in_.size() - pos_ < n) return false;
    s.assign(in_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool bytes(size_t n, std::string_view& out) {
    if (in_.size() - pos_ < n) return false;
    out = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

uint64_t readBe64(std::string_view s) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

rocksdb::ColumnFamilyOptions dataFamilyOptions() {
  rocksdb::ColumnFamilyOptions o;
  // Chunks are large values read whole. No compression: LZ4 shrank the generated trial data
  // ~1.6x but cost ~25% of the import's CPU (callgrind), and CPU is what limits import speed
  // on a small site server (docs/storage-format.md, "Measurements"). Files written by older
  // builds with LZ4 stay readable (each block records its compression).
  o.compression = rocksdb::kNoCompression;
  o.write_buffer_size = size_t{16} << 20;
  o.max_write_buffer_number = 4;
  o.target_file_size_base = uint64_t{128} << 20;
  rocksdb::BlockBasedTableOptions t;
  t.checksum = rocksdb::kXXH3;
  t.block_size = size_t{64} << 10;
  // Decoded chunks are cached by the store itself; RocksDB only needs index blocks here.
  t.block_cache = rocksdb::NewLRUCache(size_t{8} << 20);
  t.cache_index_and_filter_blocks = false;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  return o;
}

rocksdb::ColumnFamilyOptions metaFamilyOptions() {
  rocksdb::ColumnFamilyOptions o;
  rocksdb::BlockBasedTableOptions t;
  t.checksum = rocksdb::kXXH3;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  return o;
}

// The read-only view of one dataset version handed to the query engine.
class StoredDataset final : public ColumnSource {
 public:
  StoredDataset(std::shared_ptr<Store::Impl> impl, std::shared_ptr<const rocksdb::Snapshot> snap,
                Dictionary dictionary, internal::DatasetRecord record)
      : impl_(std::move(impl)),
        snapshot_(std::move(snap)),
        dictionary_(std::move(dictionary)),
        record_(std::move(record)) {
    for (const auto& v : dictionary_.variables()) types_.push_back(physicalTypeOf(v));
  }

  const Dictionary& dictionary() const override { return dictionary_; }
  uint64_t rowCount() const override { return record_.info.rows; }

  Result<std::shared_ptr<const ColumnChunk>> column(size_t variable,
                                                    uint32_t chunk) const override {
    const DatasetInfo& info = record_.info;
    if (variable >= dictionary_.size()) {
      return Status::invalidArgument("dataset '" + info.name + "' has " +
                                     std::to_string(dictionary_.size()) + " variables; index " +
                                     std::to_string(variable) + " is out of range");
    }
    if (chunk >= chunkCount()) {
      return Status::notFound("dataset '" + info.name + "' has " + std::to_string(chunkCount()) +
                              " chunks; chunk " + std::to_string(chunk) + " does not exist");
    }
    const std::string key =
        internal::dataKey(info.name, info.version, static_cast<uint32_t>(variable), chunk);
    if (auto hit = impl_->cache_->get(key)) return hit;
    auto context = [&] {
      return "dataset '" + info.name + "' version " + std::to_string(info.version) +
             ": variable '" + dictionary_.variable(variable).name + "' chunk " +
             std::to_string(chunk);
    };
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot_.get();
    ro.verify_checksums = true;
    ro.fill_cache = false;  // the decoded-chunk cache serves repeats
    rocksdb::PinnableSlice value;
    rocksdb::Status s = impl_->db_->Get(ro, impl_->data_, key, &value);
    if (s.IsNotFound()) {
      return Status::corruption(context() + " is missing from store " + impl_->dir_ +
                                "; restore the store from a checkpoint or re-import");
    }
    if (!s.ok()) return fromRocks(s, context());
    const uint64_t first = uint64_t{chunk} * kChunkRows;
    const auto rows = static_cast<uint32_t>(std::min<uint64_t>(kChunkRows, info.rows - first));
    auto decoded = internal::decodeChunk(std::string_view(value.data(), value.size()), key,
                                         types_[variable], rows);
    if (!decoded.isOk()) {
      return Status::corruption(context() + ": " + decoded.status().message() +
                                "; restore the store from a checkpoint or re-import");
    }
    auto shared = std::make_shared<const ColumnChunk>(std::move(decoded).value());
    impl_->cache_->put(key, shared);
    return shared;
  }

 private:
  std::shared_ptr<Store::Impl> impl_;  // keeps the database open
  std::shared_ptr<const rocksdb::Snapshot> snapshot_;
  Dictionary dictionary_;
  internal::DatasetRecord record_;
  std::vector<PhysicalType> types_;
};

}  // namespace

Status fromRocks(const rocksdb::Status& s, const std::string& context) {
  if (s.ok()) return Status::ok();
  const std::string msg = context + ": " + s.ToString();
  if (s.IsCorruption()) {
    return Status::corruption(msg + " (store files are damaged; restore from a checkpoint)");
  }
  if (s.IsNotFound()) return Status::notFound(msg);
  if (s.IsNoSpace()) return Status::resourceExhausted(msg + " (free disk space and retry)");
  if (s.IsInvalidArgument() || s.IsNotSupported()) return Status::invalidArgument(msg);
  if (s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) return Status::unavailable(msg);
  return Status::ioError(msg);
}

namespace internal {

std::string dataKey(std::string_view dataset, uint64_t version, uint32_t variable, uint32_t chunk) {
  std::string key;
  key.reserve(dataset.size() + 17);
  key.append(dataset);
  key.push_back('\0');
  putU64(key, version);
  putU32(key, variable);
  putU32(key, chunk);
  return key;
}

std::string versionBegin(std::string_view dataset, uint64_t version) {
  std::string key(dataset);
  key.push_back('\0');
  putU64(key, version);
  return key;
}

std::string datasetRecordKey(std::string_view dataset) {
  return std::string(kDatasetRecordPrefix) + std::string(dataset);
}

std::string encodeDatasetRecord(const DatasetRecord& record) {
  std::string out(kRecordMagic);
  out.push_back(static_cast<char>(kRecordFormat));
  putU64(out, record.info.version);
  putU64(out, record.info.rows);
  putU64(out, static_cast<uint64_t>(record.info.importedAtUnixSeconds));
  putStr(out, record.info.study);
  putStr(out, record.info.dictionaryHash);
  putStr(out, record.info.sourceFile);
  putStr(out, record.dictionaryToml);
  return out;
}

Result<DatasetRecord> decodeDatasetRecord(std::string_view bytes, std::string_view name) {
  Reader r(bytes);
  std::string_view magic, format;
  DatasetRecord rec;
  rec.info.name = std::string(name);
  uint64_t imported = 0;
  if (!r.bytes(4, magic) || magic != kRecordMagic || !r.bytes(1, format) ||
      static_cast<uint8_t>(format[0]) != kRecordFormat || !r.u64(rec.info.version) ||
      !r.u64(rec.info.rows) || !r.u64(imported) || !r.str(rec.info.study) ||
      !r.str(rec.info.dictionaryHash) || !r.str(rec.info.sourceFile) ||
      !r.str(rec.dictionaryToml) || !r.done()) {
    return Status::corruption("the record of dataset '" + std::string(name) +
                              "' is damaged or has an unknown format");
  }
  rec.info.importedAtUnixSeconds = static_cast<int64_t>(imported);
  return rec;
}

bool isValidDatasetName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace internal

Store::Impl::~Impl() {
  if (!db_) return;
  for (auto* h : {data_, meta_, default_}) {
    if (h) db_->DestroyColumnFamilyHandle(h);
  }
  db_->Close().PermitUncheckedError();
  delete db_;
}

namespace {
class SilentLogger final : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};
}  // namespace

Status Store::Impl::openDb(const StoreOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(dir_, ec)) {
    if (!options.createIfMissing || options.readOnly) {
      return Status::notFound("store directory " + dir_ + " does not exist");
    }
    std::filesystem::create_directories(dir_, ec);
    if (ec) {
      return Status::ioError("cannot create store directory " + dir_ + ": " + ec.message());
    }
    // Patient rows: the store directory is the owner's only (its files then need no
    // protection of their own from other local users).
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
    if (ec) {
      return Status::ioError("cannot make store directory " + dir_ + " private: " + ec.message());
    }
  }
  rocksdb::DBOptions dbo;
  if (options.env != nullptr) dbo.env = options.env;
  dbo.create_if_missing = options.createIfMissing;
  dbo.create_missing_column_families = true;
  dbo.max_background_jobs = 2;
  dbo.keep_log_file_num = 5;
  dbo.paranoid_checks = true;

  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {std::string(kDataFamily), dataFamilyOptions()},
      {std::string(kMetaFamily), metaFamilyOptions()}};
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(dbo, dir_, &existing).ok()) {
    for (const auto& name : existing) {
      if (name != rocksdb::kDefaultColumnFamilyName && name != kDataFamily && name != kMetaFamily) {
        return Status::failedPrecondition("store " + dir_ + " has an unknown column family '" +
                                          name + "'; is this a trialmesh store?");
      }
    }
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s;
  if (options.readOnly) {
    // No info LOG file either: a read-only open must leave the directory byte-for-byte alone.
    dbo.info_log = std::make_shared<SilentLogger>();
    s = rocksdb::DB::OpenForReadOnly(dbo, dir_, families, &handles, &db_);
  } else {
    s = rocksdb::DB::Open(dbo, dir_, families, &handles, &db_);
  }
  if (!s.ok()) {
    db_ = nullptr;
    const std::string text = s.ToString();
    if (s.IsIOError() &&
        (text.find("lock") != std::string::npos || text.find("LOCK") != std::string::npos)) {
      return Status::unavailable("store " + dir_ +
                                 " is in use by another process (RocksDB LOCK held); stop "
                                 "that process or use another store directory");
    }
    if (s.IsInvalidArgument() && text.find("does not exist") != std::string::npos) {
      return Status::notFound("store " + dir_ + " does not exist (" + text + ")");
    }
    return fromRocks(s, "cannot open store " + dir_);
  }
  default_ = handles[0];
  data_ = handles[1];
  meta_ = handles[2];
  return Status::ok();
}

// Deletes every data version that is not some dataset's committed version: data of imports
// that failed or were killed, versions superseded by a commit whose cleanup did not run, and
// data of dropped datasets. Also restores the version sequence.
Status Store::Impl::removeLeftovers() {
  std::map<std::string, uint64_t, std::less<>> committed;
  uint64_t maxVersion = 0;
  {
    std::string seq;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), meta_, std::string(internal::kSequenceKey), &seq);
    if (s.ok() && seq.size() == 8) maxVersion = readBe64(seq);
  }
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
    for (it->Seek(std::string(internal::kDatasetRecordPrefix)); it->Valid(); it->Next()) {
      std::string_view key(it->key().data(), it->key().size());
      if (!key.starts_with(internal::kDatasetRecordPrefix)) break;
      std::string name(key.substr(internal::kDatasetRecordPrefix.size()));
      TM_ASSIGN_OR_RETURN(auto rec,
                          internal::decodeDatasetRecord(
                              std::string_view(it->value().data(), it->value().size()), name));
      committed[name] = rec.info.version;
      maxVersion = std::max(maxVersion, rec.info.version);
    }
    TM_RETURN_IF_ERROR(fromRocks(it->status(), "store " + dir_ + ": reading dataset records"));
  }
  rocksdb::WriteBatch cleanup;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), data_));
    it->SeekToFirst();
    while (it->Valid()) {
      std::string_view key(it->key().data(), it->key().size());
      const size_t zero = key.find('\0');
      if (zero == std::string_view::npos || key.size() < zero + 9) {
        return Status::corruption("store " + dir_ + ": malformed data key of " +
                                  std::to_string(key.size()) + " bytes");
      }
      const std::string name(key.substr(0, zero));
      const uint64_t version = readBe64(key.substr(zero + 1, 8));
      maxVersion = std::max(maxVersion, version);
      auto found = committed.find(name);
      const std::string next = internal::versionBegin(name, version + 1);
      if (found == committed.end() || found->second != version) {
        TM_RETURN_IF_ERROR(
            fromRocks(cleanup.DeleteRange(data_, internal::versionBegin(name, version), next),
                      "store " + dir_ + ": cleaning leftovers"));
      }
      if (version == UINT64_MAX) break;
      it->Seek(next);
    }
    TM_RETURN_IF_ERROR(fromRocks(it->status(), "store " + dir_ + ": scanning data"));
  }
  nextVersion_ = maxVersion + 1;
  // SST files of imports killed before ingestion (the RocksDB LOCK says no import is running).
  {
    std::error_code ec;
    std::filesystem::remove_all(dir_ + "/" + std::string(internal::kImportTempDir), ec);
    if (ec) {
      return Status::ioError("store " + dir_ + ": cannot remove unfinished import files in " +
                             dir_ + "/" + std::string(internal::kImportTempDir) + ": " +
                             ec.message());
    }
  }
  if (cleanup.Count() > 0) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    TM_RETURN_IF_ERROR(fromRocks(db_->Write(wo, &cleanup),
                                 "store " + dir_ + ": removing leftovers of unfinished imports"));
  }
  return Status::ok();
}

Result<internal::DatasetRecord> Store::Impl::readRecord(const std::string& name,
                                                        const rocksdb::Snapshot* snapshot) const {
  if (!internal::isValidDatasetName(name)) {
    return Status::invalidArgument("'" + name +
                                   "' is not a valid dataset name (1-64 characters from "
                                   "A-Z a-z 0-9 _ . -)");
  }
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::string value;
  rocksdb::Status s = db_->Get(ro, meta_, internal::datasetRecordKey(name), &value);
  if (s.IsNotFound()) {
    return Status::notFound("dataset '" + name + "' does not exist in store " + dir_);
  }
  TM_RETURN_IF_ERROR(fromRocks(s, "store " + dir_ + ": reading dataset '" + name + "'"));
  return internal::decodeDatasetRecord(value, name);
}

bool Store::Impl::acquire(const std::string& name) {
  std::lock_guard lock(busyMu_);
  return busy_.insert(name).second;
}

void Store::Impl::release(const std::string& name) {
  std::lock_guard lock(busyMu_);
  busy_.erase(name);
}

Store::Store(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

const std::string& Store::directory() const { return impl_->dir_; }

Result<std::unique_ptr<Store>> Store::open(const std::string& dir, const StoreOptions& options) {
  auto impl = std::make_shared<Impl>();
  impl->dir_ = dir;
  impl->cache_ = std::make_unique<internal::ChunkCache>(options.cacheBytes);
  TM_RETURN_IF_ERROR(impl->openDb(options));
  if (!options.readOnly) TM_RETURN_IF_ERROR(impl->removeLeftovers());
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Result<ImportReport> Store::importCsv(const std::string& dataset, const Dictionary& dict,
                                      const std::string& csvPath, const ImportOptions& options) {
  // options.inputFd is ours from here on: closed on the early returns, by the reader otherwise.
  struct FdGuard {
    int fd;
    ~FdGuard() {
      if (fd >= 0) ::close(fd);
    }
  } guard{options.inputFd};
  if (!internal::isValidDatasetName(dataset)) {
    return Status::invalidArgument("'" + dataset +
                                   "' is not a valid dataset name (1-64 characters from "
                                   "A-Z a-z 0-9 _ . -)");
  }
  if (!impl_->acquire(dataset)) {
    return Status::failedPrecondition("dataset '" + dataset +
                                      "' is already being imported or dropped; wait for that "
                                      "to finish");
  }
  guard.fd = -1;  // the reader takes it over
  auto result = impl_->importCsv(dataset, dict, csvPath, options);
  impl_->release(dataset);
  return result;
}

Result<std::vector<DatasetInfo>> Store::listDatasets() const {
  std::vector<DatasetInfo> out;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db_->NewIterator(rocksdb::ReadOptions(), impl_->meta_));
  for (it->Seek(std::string(internal::kDatasetRecordPrefix)); it->Valid(); it->Next()) {
    std::string_view key(it->key().data(), it->key().size());
    if (!key.starts_with(internal::kDatasetRecordPrefix)) break;
    TM_ASSIGN_OR_RETURN(auto rec, internal::decodeDatasetRecord(
                                      std::string_view(it->value().data(), it->value().size()),
                                      key.substr(internal::kDatasetRecordPrefix.size())));
    out.push_back(std::move(rec.info));
  }
  TM_RETURN_IF_ERROR(fromRocks(it->status(), "store " + impl_->dir_ + ": listing datasets"));
  return out;
}

Result<DatasetInfo> Store::datasetInfo(const std::string& name) const {
  TM_ASSIGN_OR_RETURN(auto rec, impl_->readRecord(name, nullptr));
  return rec.info;
}

Result<std::shared_ptr<const ColumnSource>> Store::openDataset(const std::string& name) const {
  std::shared_ptr<Impl> impl = impl_;
  std::shared_ptr<const rocksdb::Snapshot> snap(
      impl->db_->GetSnapshot(),
      [impl](const rocksdb::Snapshot* s) { impl->db_->ReleaseSnapshot(s); });
  TM_ASSIGN_OR_RETURN(auto rec, impl->readRecord(name, snap.get()));
  auto dict = Dictionary::parseToml(rec.dictionaryToml, "dictionary of dataset '" + name + "'");
  if (!dict.isOk()) {
    return Status::corruption("stored " + dict.status().message());
  }
  if (dict->hashHex() != rec.info.dictionaryHash) {
    return Status::corruption("the stored dictionary of dataset '" + name +
                              "' does not match its recorded hash " + rec.info.dictionaryHash);
  }
  return std::shared_ptr<const ColumnSource>(std::make_shared<StoredDataset>(
      impl, std::move(snap), std::move(dict).value(), std::move(rec)));
}

Status Store::dropDataset(const std::string& name) {
  if (!impl_->acquire(name)) {
    return Status::failedPrecondition("dataset '" + name +
                                      "' is being imported or dropped; wait for that to finish");
  }
  Status status = [&]() -> Status {
    TM_ASSIGN_OR_RETURN(auto rec, impl_->readRecord(name, nullptr));
    (void)rec;
    rocksdb::WriteBatch batch;
    const std::string ctx = "store " + impl_->dir_ + ": dropping dataset '" + name + "'";
    TM_RETURN_IF_ERROR(
        fromRocks(batch.Delete(impl_->meta_, internal::datasetRecordKey(name)), ctx));
    // Every data key of the dataset starts with name + '\0'; '\1' is the next byte.
    TM_RETURN_IF_ERROR(fromRocks(
        batch.DeleteRange(impl_->data_, name + std::string(1, '\0'), name + std::string(1, '\1')),
        ctx));
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return fromRocks(impl_->db_->Write(wo, &batch), ctx);
  }();
  impl_->release(name);
  return status;
}

Status Store::checkpoint(const std::string& targetDir) {
  std::error_code ec;
  if (std::filesystem::exists(targetDir, ec)) {
    return Status::alreadyExists("checkpoint target " + targetDir +
                                 " already exists; choose a new directory");
  }
  rocksdb::Checkpoint* raw = nullptr;
  const std::string ctx = "checkpoint of store " + impl_->dir_ + " to " + targetDir;
  TM_RETURN_IF_ERROR(fromRocks(rocksdb::Checkpoint::Create(impl_->db_, &raw), ctx));
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  return fromRocks(cp->CreateCheckpoint(targetDir), ctx);
}

}  // namespace trialmesh::storage
