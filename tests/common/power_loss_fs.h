// A RocksDB file system for tests that can lose power (issue #12 item 7).
//
// SIGKILL keeps the OS page cache: whatever a process wrote survives it, synced or not, so a
// kill -9 test cannot tell a durable write from a lucky one. PowerLossFileSystem wraps the
// real file system and remembers, per file, how many bytes were synced (Sync/Fsync) and
// whether the file's creation or rename was made durable by an fsync of its directory.
// crash() then does to the files on disk what a power cut may do to them:
//   - every file is cut back to its last synced size (unsynced appends are lost);
//   - a file created since its directory's last fsync disappears;
//   - a rename not followed by an fsync of the directory is undone (the target's previous
//     content comes back, the source name with it); a hard link likewise disappears.
// After crash() every write, sync, create, rename and delete through this file system fails
// with an IOError, so the database still open on it cannot touch the "disk" again; close it
// and reopen the directory with the default file system to see what a restart would see.
// This is the model of RocksDB's own FaultInjectionTestFS, written for the public API.
//
//   PowerLossFileSystem fs;
//   ... open a database with options.env = fs.env() ...; write ...
//   fs.crash();
//   ... destroy the database object; reopen the directory normally and check ...
//
// Thread-safety: internally synchronised (RocksDB calls from its background threads).
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

namespace trialmesh::testing {

class PowerLossFileSystem : public rocksdb::FileSystemWrapper {
 public:
  PowerLossFileSystem();

  // An Env over this file system, for rocksdb::DBOptions::env (owned by this object).
  rocksdb::Env* env() { return env_.get(); }

  // Applies a power cut to the files on disk (above) and makes this file system refuse every
  // later change. Returns how many bytes of unsynced data were dropped, so a test can assert
  // that the crash did lose something.
  uint64_t crash();
  bool crashed() const;

  const char* Name() const override { return "PowerLossFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& opts,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(const std::string& fname, const rocksdb::FileOptions& opts,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& io_opts,
                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& fname, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& src, const std::string& target,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& src, const std::string& target,
                             const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override;

  // Called by the wrapped files and directories.
  rocksdb::IOStatus checkAlive() const;
  void appended(const std::string& fname, uint64_t size);
  void synced(const std::string& fname);
  void directorySynced(const std::string& dir);

 private:
  struct FileState {
    uint64_t size = 0;         // bytes written through this file system
    uint64_t syncedSize = 0;   // bytes a Sync/Fsync made durable
    bool durableName = false;  // its directory was fsynced since it was created
  };
  struct PendingRename {
    std::string source;
    std::optional<std::string> previousTarget;  // the target's content before, if it existed
  };

  rocksdb::IOStatus wrapWritable(const std::string& fname, rocksdb::IOStatus s,
                                 std::unique_ptr<rocksdb::FSWritableFile>* result, bool fresh);

  mutable std::mutex mu_;
  bool crashed_ = false;
  std::map<std::string, FileState> files_;        // files written since the start
  std::map<std::string, PendingRename> renames_;  // target -> rename not yet durable
  std::unique_ptr<rocksdb::Env> env_;
};

}  // namespace trialmesh::testing
