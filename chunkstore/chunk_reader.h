// ChunkReader: the fetch path, from memory to the node cache to the object
// store, ending in verified chunk bytes.
//
// Read() returns the uncompressed bytes of a chunk only after they hashed to
// the chunk's address; a chunk that fails is kCorruption and is never served
// or cached. Recently used chunks are kept in a bounded in-memory cache; with
// a node cache (ferryd), a memory miss looks there before the store, and
// every chunk verified from the store is offered to it. Concurrent reads of
// one chunk share one lookup and one store read (single flight), whichever
// caller asked. Thread-safe; one reader may serve many images of one store.
#pragma once

#include <atomic>
#include <deque>
#include <thread>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "chunkstore/node_cache.h"
#include "chunkstore/object_store.h"
#include "chunkstore/pack.h"

namespace ferry::chunkstore {

// What one caller's reads cost, for per-image statistics. A chunk is
// counted against the caller that caused its lookup or fetch.
struct FetchCounters {
  std::atomic<uint64_t> memory_hits{0};      // found in memory (or in flight)
  std::atomic<uint64_t> cache_hits{0};       // read from the node cache
  std::atomic<uint64_t> cache_hit_bytes{0};
  std::atomic<uint64_t> cache_misses{0};     // had to come from the store
  std::atomic<uint64_t> store_fetches{0};    // range reads sent to the store
  std::atomic<uint64_t> store_bytes{0};      // compressed bytes read from it
  std::atomic<uint64_t> corrupt{0};          // store chunks that failed verification
};
using CountersPtr = std::shared_ptr<FetchCounters>;

struct ChunkReaderStats {
  uint64_t fetches = 0;         // store reads
  uint64_t fetched_bytes = 0;   // compressed bytes read from the store
  uint64_t memory_hits = 0;
  uint64_t cache_hits = 0;      // chunks read from the node cache
  uint64_t corrupt = 0;         // chunks that failed verification
};

class ChunkReader {
 public:
  // `store` (and `node_cache`, optional) must outlive the reader.
  // `cache_bytes` bounds the memory cache.
  ChunkReader(ObjectStore* store, size_t cache_bytes, ChunkCache* node_cache = nullptr);

  ~ChunkReader();

  // `counters` (optional) are charged with what this call costs.
  Result<ChunkData> Read(const ChunkLocation& loc, const CountersPtr& counters = nullptr);
  // Like Read, but on a miss fetches `loc` together with `neighbours` (the
  // chunks that follow it in its pack, ascending) in the calling thread, with
  // one range read and one batched verification; the neighbours are cached.
  // Chunks the node cache holds are read from it, not the store.
  Result<ChunkData> ReadWithNeighbours(const ChunkLocation& loc,
                                       const std::vector<ChunkLocation>& neighbours,
                                       const CountersPtr& counters = nullptr);
  // Starts fetching `run` in the background: chunks of one pack in
  // ascending offset order. Chunks cached or already in flight are skipped;
  // failures are dropped (a later Read reports them). Background threads
  // start on first use (so a reader may be created before a fork).
  // Chunks the node cache holds are read from it, the rest from the store.
  void Prefetch(std::vector<ChunkLocation> run, CountersPtr counters = nullptr);
  // True if the chunk is in memory or being fetched.
  bool Present(const Digest& d) const;
  ChunkReaderStats stats() const;

 private:
  struct Flight {
    bool done = false;
    Status status;
    ChunkData data;
  };
  Result<ChunkData> FetchFromStore(const ChunkLocation& loc, FetchCounters* c);
  // The node cache's copy, or null (counted as a hit or a miss).
  ChunkData FromNodeCache(const ChunkLocation& loc, FetchCounters* c);
  void Insert(const Digest& d, const ChunkData& data);
  // Publishes a flight's result; `from_store` results go to the node cache.
  void Complete(const ChunkLocation& loc, const std::shared_ptr<Flight>& flight,
                const Result<ChunkData>& res, bool from_store, FetchCounters* c);
  void FetchRun(const std::vector<ChunkLocation>& run, FetchCounters* c);
  void PrefetchLoop();

  ObjectStore* store_;
  ChunkCache* node_cache_;
  const size_t cache_bytes_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::list<std::pair<Digest, ChunkData>> lru_;  // most recent first
  std::unordered_map<Digest, std::list<std::pair<Digest, ChunkData>>::iterator, DigestHash> map_;
  std::unordered_map<Digest, std::shared_ptr<Flight>, DigestHash> flights_;
  size_t cached_bytes_ = 0;
  ChunkReaderStats stats_;
  std::deque<std::pair<std::vector<ChunkLocation>, CountersPtr>> prefetch_queue_;
  std::vector<std::thread> prefetch_threads_;
  std::condition_variable prefetch_cv_;
  bool stopping_ = false;
};

}  // namespace ferry::chunkstore
