// ChunkReader: the fetch path from the object store to verified chunk bytes.
//
// Read() returns the uncompressed bytes of a chunk only after they hashed to
// the chunk's address; a chunk that fails is kCorruption and is never served
// or cached. Recently used chunks are kept in a bounded in-memory cache, and
// concurrent reads of one chunk share one store read (single flight).
// Thread-safe. (ferryd's node cache and the fetch engine extend this path.)
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

#include "chunkstore/object_store.h"
#include "chunkstore/pack.h"

namespace ferry::chunkstore {

using ChunkData = std::shared_ptr<const std::vector<uint8_t>>;

struct ChunkReaderStats {
  uint64_t fetches = 0;         // store reads
  uint64_t fetched_bytes = 0;   // compressed bytes read from the store
  uint64_t memory_hits = 0;
  uint64_t corrupt = 0;         // chunks that failed verification
};

class ChunkReader {
 public:
  // `store` must outlive the reader. `cache_bytes` bounds the memory cache.
  ChunkReader(ObjectStore* store, size_t cache_bytes);

  ~ChunkReader();

  Result<ChunkData> Read(const ChunkLocation& loc);
  // Like Read, but on a miss fetches `loc` together with `neighbours` (the
  // chunks that follow it in its pack, ascending) in the calling thread, with
  // one range read and one batched verification; the neighbours are cached.
  Result<ChunkData> ReadWithNeighbours(const ChunkLocation& loc,
                                       const std::vector<ChunkLocation>& neighbours);
  // Starts fetching `run` in the background: chunks of one pack in
  // ascending offset order. Chunks cached or already in flight are skipped;
  // failures are dropped (a later Read reports them). Background threads
  // start on first use (so a reader may be created before a fork).
  void Prefetch(std::vector<ChunkLocation> run);
  // True if the chunk is in memory or being fetched.
  bool Present(const Digest& d) const;
  ChunkReaderStats stats() const;

 private:
  struct Flight {
    bool done = false;
    Status status;
    ChunkData data;
  };
  Result<ChunkData> Fetch(const ChunkLocation& loc);
  void Insert(const Digest& d, const ChunkData& data);
  void Complete(const ChunkLocation& loc, const std::shared_ptr<Flight>& flight,
                const Result<ChunkData>& res);
  void FetchRun(const std::vector<ChunkLocation>& run);
  void PrefetchLoop();

  ObjectStore* store_;
  const size_t cache_bytes_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::list<std::pair<Digest, ChunkData>> lru_;  // most recent first
  std::unordered_map<Digest, std::list<std::pair<Digest, ChunkData>>::iterator, DigestHash> map_;
  std::unordered_map<Digest, std::shared_ptr<Flight>, DigestHash> flights_;
  size_t cached_bytes_ = 0;
  ChunkReaderStats stats_;
  std::deque<std::vector<ChunkLocation>> prefetch_queue_;
  std::vector<std::thread> prefetch_threads_;
  std::condition_variable prefetch_cv_;
  bool stopping_ = false;
};

}  // namespace ferry::chunkstore
