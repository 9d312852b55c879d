// ChunkReader: the fetch path from the object store to verified chunk bytes.
//
// Read() returns the uncompressed bytes of a chunk only after they hashed to
// the chunk's address; a chunk that fails is kCorruption and is never served
// or cached. Recently used chunks are kept in a bounded in-memory cache, and
// concurrent reads of one chunk share one store read (single flight).
// Thread-safe. (ferryd's node cache and the fetch engine extend this path.)
#pragma once

#include <atomic>
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

  Result<ChunkData> Read(const ChunkLocation& loc);
  ChunkReaderStats stats() const;

 private:
  struct Flight {
    bool done = false;
    Status status;
    ChunkData data;
  };
  Result<ChunkData> Fetch(const ChunkLocation& loc);
  void Insert(const Digest& d, const ChunkData& data);

  ObjectStore* store_;
  const size_t cache_bytes_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::list<std::pair<Digest, ChunkData>> lru_;  // most recent first
  std::unordered_map<Digest, std::list<std::pair<Digest, ChunkData>>::iterator, DigestHash> map_;
  std::unordered_map<Digest, std::shared_ptr<Flight>, DigestHash> flights_;
  size_t cached_bytes_ = 0;
  ChunkReaderStats stats_;
};

}  // namespace ferry::chunkstore
