#include "tests/common/power_loss_fs.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

namespace trialmesh::testing {
namespace {

namespace fs = std::filesystem;

std::string normal(const std::string& path) { return fs::path(path).lexically_normal().string(); }

std::string parentOf(const std::string& path) {
  return fs::path(path).lexically_normal().parent_path().string();
}

std::optional<std::string> readWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A writable file that reports its appends and syncs to the file system.
class TrackedWritableFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TrackedWritableFile(std::unique_ptr<rocksdb::FSWritableFile> file, PowerLossFileSystem* owner,
                      std::string name)
      : FSWritableFileOwnerWrapper(std::move(file)), owner_(owner), name_(std::move(name)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (auto s = owner_->checkAlive(); !s.ok()) return s;
    auto s = target()->Append(data, options, dbg);
    if (s.ok()) owner_->appended(name_, data.size());
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    if (auto s = owner_->checkAlive(); !s.ok()) return s;
    auto s = target()->Append(data, options, info, dbg);
    if (s.ok()) owner_->appended(name_, data.size());
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&, uint64_t, const rocksdb::IOOptions&,
                                     rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerLossFileSystem: positioned appends");
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice&, uint64_t, const rocksdb::IOOptions&,
                                     const rocksdb::DataVerificationInfo&,
                                     rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerLossFileSystem: positioned appends");
  }
  bool use_direct_io() const override { return false; }
  rocksdb::IOStatus Truncate(uint64_t, const rocksdb::IOOptions&,
                             rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("PowerLossFileSystem: truncate");
  }
  rocksdb::IOStatus Flush(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (auto s = owner_->checkAlive(); !s.ok()) return s;
    return target()->Flush(options, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (auto s = owner_->checkAlive(); !s.ok()) return s;
    auto s = target()->Sync(options, dbg);
    if (s.ok()) owner_->synced(name_);
    return s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (auto s = owner_->checkAlive(); !s.ok()) return s;
    auto s = target()->Fsync(options, dbg);
    if (s.ok()) owner_->synced(name_);
    return s;
  }
  // A range sync only starts write-back: it promises nothing, so it makes nothing durable.
  rocksdb::IOStatus RangeSync(uint64_t, uint64_t, const rocksdb::IOOptions&,
                              rocksdb::IODebugContext*) override {
    return owner_->checkAlive();
  }

 private:
  PowerLossFileSystem* owner_;
  std::string name_;
};

// A directory whose fsync makes the names in it durable.
class TrackedDirectory : public rocksdb::FSDirectoryWrapper {
 public:
  TrackedDirectory(std::unique_ptr<rocksdb::FSDirectory> dir, PowerLossFileSystem* owner,
                   std::string name)
      : FSDirectoryWrapper(std::move(dir)), owner_(owner), name_(std::move(name)) {}

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (auto s = owner_->checkAlive(); !s.ok()) return s;
    auto s = FSDirectoryWrapper::Fsync(options, dbg);
    if (s.ok()) owner_->directorySynced(name_);
    return s;
  }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions& options,
                                        rocksdb::IODebugContext* dbg,
                                        const rocksdb::DirFsyncOptions& dirOptions) override {
    if (auto s = owner_->checkAlive(); !s.ok()) return s;
    auto s = FSDirectoryWrapper::FsyncWithDirOptions(options, dbg, dirOptions);
    if (s.ok()) owner_->directorySynced(name_);
    return s;
  }

 private:
  PowerLossFileSystem* owner_;
  std::string name_;
};

}  // namespace

PowerLossFileSystem::PowerLossFileSystem() : FileSystemWrapper(rocksdb::FileSystem::Default()) {
  env_ = rocksdb::NewCompositeEnv(std::shared_ptr<rocksdb::FileSystem>(this, [](auto*) {}));
}

rocksdb::IOStatus PowerLossFileSystem::checkAlive() const {
  std::lock_guard lock(mu_);
  if (crashed_) return rocksdb::IOStatus::IOError("PowerLossFileSystem: the power is off");
  return rocksdb::IOStatus::OK();
}

bool PowerLossFileSystem::crashed() const {
  std::lock_guard lock(mu_);
  return crashed_;
}

void PowerLossFileSystem::appended(const std::string& fname, uint64_t size) {
  std::lock_guard lock(mu_);
  files_[fname].size += size;
}

void PowerLossFileSystem::synced(const std::string& fname) {
  std::lock_guard lock(mu_);
  FileState& f = files_[fname];
  f.syncedSize = f.size;
}

void PowerLossFileSystem::directorySynced(const std::string& dir) {
  const std::string d = normal(dir);
  std::lock_guard lock(mu_);
  for (auto& [name, state] : files_)
    if (parentOf(name) == d) state.durableName = true;
  for (auto it = renames_.begin(); it != renames_.end();)
    it = parentOf(it->first) == d ? renames_.erase(it) : std::next(it);
}

rocksdb::IOStatus PowerLossFileSystem::wrapWritable(
    const std::string& fname, rocksdb::IOStatus s, std::unique_ptr<rocksdb::FSWritableFile>* result,
    bool fresh) {
  if (!s.ok()) return s;
  const std::string name = normal(fname);
  {
    std::lock_guard lock(mu_);
    if (fresh) {
      files_[name] = FileState{};
    } else if (files_.count(name) == 0) {
      // Opened to append: what is there already was durable.
      std::error_code ec;
      const uint64_t size = fs::file_size(name, ec);
      files_[name] = FileState{ec ? 0 : size, ec ? 0 : size, true};
    }
  }
  *result = std::make_unique<TrackedWritableFile>(std::move(*result), this, name);
  return s;
}

rocksdb::IOStatus PowerLossFileSystem::NewWritableFile(
    const std::string& fname, const rocksdb::FileOptions& opts,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  if (auto s = checkAlive(); !s.ok()) return s;
  rocksdb::FileOptions buffered = opts;
  buffered.use_direct_writes = false;
  return wrapWritable(fname, target()->NewWritableFile(fname, buffered, result, dbg), result, true);
}

rocksdb::IOStatus PowerLossFileSystem::ReopenWritableFile(
    const std::string& fname, const rocksdb::FileOptions& opts,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  if (auto s = checkAlive(); !s.ok()) return s;
  return wrapWritable(fname, target()->ReopenWritableFile(fname, opts, result, dbg), result, false);
}

rocksdb::IOStatus PowerLossFileSystem::ReuseWritableFile(
    const std::string& fname, const std::string& old_fname, const rocksdb::FileOptions& opts,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  // A recycled log: written anew under its new name, which is not durable yet.
  if (auto s = checkAlive(); !s.ok()) return s;
  {
    std::lock_guard lock(mu_);
    files_.erase(normal(old_fname));
  }
  return wrapWritable(fname, target()->ReuseWritableFile(fname, old_fname, opts, result, dbg),
                      result, true);
}

rocksdb::IOStatus PowerLossFileSystem::NewRandomRWFile(const std::string&,
                                                       const rocksdb::FileOptions&,
                                                       std::unique_ptr<rocksdb::FSRandomRWFile>*,
                                                       rocksdb::IODebugContext*) {
  return rocksdb::IOStatus::NotSupported("PowerLossFileSystem: random read-write files");
}

rocksdb::IOStatus PowerLossFileSystem::NewDirectory(const std::string& name,
                                                    const rocksdb::IOOptions& io_opts,
                                                    std::unique_ptr<rocksdb::FSDirectory>* result,
                                                    rocksdb::IODebugContext* dbg) {
  auto s = target()->NewDirectory(name, io_opts, result, dbg);
  if (s.ok()) *result = std::make_unique<TrackedDirectory>(std::move(*result), this, name);
  return s;
}

rocksdb::IOStatus PowerLossFileSystem::DeleteFile(const std::string& fname,
                                                  const rocksdb::IOOptions& options,
                                                  rocksdb::IODebugContext* dbg) {
  if (auto s = checkAlive(); !s.ok()) return s;
  auto s = target()->DeleteFile(fname, options, dbg);
  if (s.ok()) {
    std::lock_guard lock(mu_);
    files_.erase(normal(fname));
  }
  return s;
}

rocksdb::IOStatus PowerLossFileSystem::RenameFile(const std::string& src,
                                                  const std::string& target_name,
                                                  const rocksdb::IOOptions& options,
                                                  rocksdb::IODebugContext* dbg) {
  if (auto s = checkAlive(); !s.ok()) return s;
  const std::string from = normal(src), to = normal(target_name);
  std::optional<std::string> previous = readWhole(to);
  auto s = target()->RenameFile(src, target_name, options, dbg);
  if (!s.ok()) return s;
  std::lock_guard lock(mu_);
  // A name made durable before keeps its durable content; a rename over it is pending until
  // the directory is synced.
  if (renames_.count(to) == 0) renames_[to] = PendingRename{from, std::move(previous)};
  if (auto it = files_.find(from); it != files_.end()) {
    FileState state = it->second;
    files_.erase(it);
    state.durableName = false;
    files_[to] = state;
  }
  return s;
}

rocksdb::IOStatus PowerLossFileSystem::LinkFile(const std::string& src,
                                                const std::string& target_name,
                                                const rocksdb::IOOptions& options,
                                                rocksdb::IODebugContext* dbg) {
  // A new name for the same data: its bytes are as durable as the source's, the name only once
  // its directory is synced.
  if (auto s = checkAlive(); !s.ok()) return s;
  auto s = target()->LinkFile(src, target_name, options, dbg);
  if (!s.ok()) return s;
  const std::string from = normal(src), to = normal(target_name);
  std::lock_guard lock(mu_);
  FileState state;
  if (auto it = files_.find(from); it != files_.end()) {
    state = it->second;
  } else {
    std::error_code ec;
    state.size = state.syncedSize = fs::file_size(from, ec);
  }
  state.durableName = false;
  files_[to] = state;
  return s;
}

uint64_t PowerLossFileSystem::crash() {
  std::lock_guard lock(mu_);
  crashed_ = true;
  uint64_t dropped = 0;
  std::error_code ec;
  // Renames not made durable: the file goes back to its old name, the target gets its old
  // content back (or disappears).
  for (const auto& [to, rename] : renames_) {
    auto state = files_.find(to);
    if (state != files_.end()) {
      files_[rename.source] = state->second;
      files_.erase(to);
    }
    fs::rename(to, rename.source, ec);
    if (rename.previousTarget) {
      std::ofstream out(to, std::ios::binary | std::ios::trunc);
      out << *rename.previousTarget;
    }
  }
  renames_.clear();
  for (const auto& [name, state] : files_) {
    if (!fs::exists(name, ec)) continue;
    if (!state.durableName) {
      dropped += state.size;
      fs::remove(name, ec);
      continue;
    }
    const uint64_t onDisk = fs::file_size(name, ec);
    if (!ec && onDisk > state.syncedSize) {
      dropped += onDisk - state.syncedSize;
      fs::resize_file(name, state.syncedSize, ec);
    }
  }
  return dropped;
}

}  // namespace trialmesh::testing
