#include "storage/chunk_cache.h"

namespace trialmesh::storage::internal {

std::shared_ptr<const ColumnChunk> ChunkCache::get(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->chunk;
}

void ChunkCache::put(const std::string& key, std::shared_ptr<const ColumnChunk> chunk) {
  const size_t size = chunk->memoryBytes() + key.size() + sizeof(Entry);
  if (size > capacity_) return;
  std::lock_guard lock(mu_);
  if (auto it = index_.find(key); it != index_.end()) {
    bytes_ -= it->second->bytes;
    lru_.erase(it->second);
    index_.erase(it);
  }
  lru_.push_front(Entry{key, std::move(chunk), size});
  index_.emplace(key, lru_.begin());
  bytes_ += size;
  evictLocked();
}

void ChunkCache::evictLocked() {
  while (bytes_ > capacity_ && !lru_.empty()) {
    Entry& last = lru_.back();
    bytes_ -= last.bytes;
    index_.erase(last.key);
    lru_.pop_back();
  }
}

size_t ChunkCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

size_t ChunkCache::entries() const {
  std::lock_guard lock(mu_);
  return lru_.size();
}

}  // namespace trialmesh::storage::internal
