// NewMemoryChunkCache: a least-recently-used ChunkCache in memory. Puts are
// admitted at once (there is no I/O to wait for), so Flush has nothing to do.
#include <list>
#include <mutex>
#include <unordered_map>

#include "chunkstore/node_cache.h"

namespace ferry::chunkstore {
namespace {

class MemoryChunkCache final : public ChunkCache {
 public:
  explicit MemoryChunkCache(uint64_t capacity) { stats_.capacity_bytes = capacity; }

  Result<ChunkData> Get(const Digest& d) override {
    std::lock_guard<std::mutex> l(mu_);
    auto it = map_.find(d);
    if (it == map_.end()) {
      ++stats_.misses;
      return NotFoundError("chunk " + d.Short() + " not in memory cache");
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    ++stats_.hits;
    stats_.hit_bytes += it->second->data->size();
    return it->second->data;
  }

  bool Contains(const Digest& d) override {
    std::lock_guard<std::mutex> l(mu_);
    return map_.contains(d);
  }

  void Put(const Digest& d, ChunkData data) override {
    if (!data) return;
    std::lock_guard<std::mutex> l(mu_);
    if (map_.contains(d)) return;
    if (data->size() > stats_.capacity_bytes) {
      ++stats_.dropped;
      return;
    }
    EvictTo(stats_.capacity_bytes - data->size());
    stats_.used_bytes += data->size();
    ++stats_.admitted;
    stats_.admitted_bytes += data->size();
    lru_.push_front(Entry{d, std::move(data)});
    map_[d] = lru_.begin();
  }

  Status Flush() override { return Status::Ok(); }

  Status Prune(uint64_t bytes) override {
    std::lock_guard<std::mutex> l(mu_);
    EvictTo(bytes);
    return Status::Ok();
  }

  NodeCacheStats Stats() const override {
    std::lock_guard<std::mutex> l(mu_);
    NodeCacheStats s = stats_;
    s.chunks = map_.size();
    return s;
  }

 private:
  struct Entry {
    Digest digest;
    ChunkData data;
  };

  // Drops least recently used entries until at most `bytes` are held.
  void EvictTo(uint64_t bytes) {
    while (stats_.used_bytes > bytes) {
      const Entry& e = lru_.back();
      stats_.used_bytes -= e.data->size();
      ++stats_.evicted;
      stats_.evicted_bytes += e.data->size();
      map_.erase(e.digest);
      lru_.pop_back();
    }
  }

  mutable std::mutex mu_;  // guards everything below
  std::list<Entry> lru_;   // most recently used first
  std::unordered_map<Digest, std::list<Entry>::iterator, DigestHash> map_;
  NodeCacheStats stats_;   // used_bytes: data bytes held
};

}  // namespace

std::unique_ptr<ChunkCache> NewMemoryChunkCache(uint64_t capacity_bytes) {
  return std::make_unique<MemoryChunkCache>(capacity_bytes);
}

}  // namespace ferry::chunkstore
