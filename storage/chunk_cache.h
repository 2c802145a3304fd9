// Internal to tm_storage: a bytes-bounded LRU cache of decoded column chunks, keyed by the
// chunk's data key (dataset, version, variable, chunk). Versions are never reused within a
// store, so a cached chunk can never be stale.
//
// Thread-safety: all methods are safe to call concurrently (one mutex; lookups are short).
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "storage/column.h"

namespace trialmesh::storage::internal {

class ChunkCache {
 public:
  // capacityBytes == 0 disables caching.
  explicit ChunkCache(size_t capacityBytes) : capacity_(capacityBytes) {}

  std::shared_ptr<const ColumnChunk> get(const std::string& key);
  // Inserts (or replaces) and evicts least recently used entries beyond capacity. A chunk
  // larger than the whole capacity is not kept.
  void put(const std::string& key, std::shared_ptr<const ColumnChunk> chunk);

  size_t bytes() const;
  size_t entries() const;

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const ColumnChunk> chunk;
    size_t bytes;
  };
  void evictLocked();

  const size_t capacity_;
  mutable std::mutex mu_;
  size_t bytes_ = 0;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace trialmesh::storage::internal
