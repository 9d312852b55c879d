// The node cache: verified chunks on local disk, shared by every mount on a
// host (owned by ferryd), bounded, persistent and crash-safe.
//
// ChunkCache is the interface the read path uses (so tests can wrap it);
// OpenNodeCache() gives the on-disk implementation, whose format is in
// docs/format.md ("Node cache").
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chunkstore/clock.h"
#include "chunkstore/digest.h"
#include "chunkstore/status.h"

namespace ferry::chunkstore {

// The uncompressed bytes of one chunk, shared and immutable.
using ChunkData = std::shared_ptr<const std::vector<uint8_t>>;

struct NodeCacheStats {
  uint64_t hits = 0;            // Get calls that returned bytes
  uint64_t misses = 0;          // Get calls that did not
  uint64_t hit_bytes = 0;       // bytes returned by Get
  uint64_t admitted = 0;        // chunks made durable by Put
  uint64_t admitted_bytes = 0;
  uint64_t dropped = 0;         // Puts not admitted (no space, I/O error, queue full)
  uint64_t evicted = 0;         // chunks removed to make room (or by Prune)
  uint64_t evicted_bytes = 0;
  uint64_t kept = 0;            // chunks in use rewritten forward instead of evicted
  uint64_t corrupt = 0;         // stored copies that failed their checksum, dropped
  uint64_t chunks = 0;          // chunks now indexed
  uint64_t used_bytes = 0;      // bytes of segment files on disk now
  uint64_t capacity_bytes = 0;  // the bound used_bytes never exceeds
};

class ChunkCache {
 public:
  virtual ~ChunkCache() = default;
  // The bytes of chunk `d` if cached. A stored copy that fails its checksum
  // is never returned: it is dropped, counted in `corrupt`, and the call
  // returns NotFound like any miss. Other errors are NotFound too (the
  // caller fetches from the store). Never blocks behind admission or
  // eviction I/O for longer than one read.
  virtual Result<ChunkData> Get(const Digest& d) = 0;
  // Whether `d` is indexed (no I/O, no effect on statistics).
  virtual bool Contains(const Digest& d) = 0;
  // Offers a chunk whose bytes the caller has already verified against `d`.
  // Returns at once; admission happens in the background and may be refused
  // (no space, disk full, too much queued), which only costs a later miss.
  virtual void Put(const Digest& d, ChunkData data) = 0;
  // Waits until every Put made before the call is durable or dropped.
  virtual Status Flush() = 0;
  // Evicts until at most `bytes` of segment files remain.
  virtual Status Prune(uint64_t bytes) = 0;
  virtual NodeCacheStats Stats() const = 0;
};

struct NodeCacheOptions {
  std::string dir;                     // created if missing
  uint64_t capacity_bytes = 10ull << 30;
  uint64_t segment_bytes = 64ull << 20;  // segments are the unit of eviction
  // Admission waits for a quiet moment: queued chunks are written once no
  // Put has come for `admission_quiet`, or once `admission_batch_bytes` are
  // queued, or once the oldest has waited `admission_max_delay` (Flush,
  // Prune and closing write at once). A start-up's misses come in a burst,
  // and writing them during it takes CPU and disk from the start-up itself:
  // python3 imports cold from file:// on 2 vCPUs (bench/run.sh), ferryd
  // used 190 ms of CPU beside python's 135 ms, and the start took 0.251 s
  // when every chunk was written as it came, 0.212 s when admission waited
  // 100 ms of quiet (native 0.167 s; medians of 9 interleaved runs). From
  // a remote store a start-up's fetches come with gaps of a round trip or
  // more, so 100 ms of quiet still fell inside it: bench/coldstart.sh at
  // 20 ms / 100 MB/s, 500 ms instead of 100 ms took (c) 0.514 -> 0.470 s
  // (11 interleaved runs) and (b) 0.866 -> 0.820 s (7 runs); the file://
  // start stayed within noise (0.273 -> 0.280 s, 9 runs). Until written,
  // queued chunks are served from memory.
  std::chrono::milliseconds admission_quiet{500};
  uint64_t admission_batch_bytes = 64ull << 20;
  std::chrono::milliseconds admission_max_delay{5000};
  // Times the waits above and the 5 s pause after a failed write; null:
  // DefaultClock(). Must outlive the cache.
  Clock* clock = nullptr;
};

// Opens (or creates) the node cache in `opt.dir`: the segment files and the
// RocksDB index. After a crash it serves only chunks whose index entry was
// written after their bytes were durable. Fails if another process has the
// cache open.
Result<std::unique_ptr<ChunkCache>> OpenNodeCache(const NodeCacheOptions& opt);

// A bounded in-memory ChunkCache with the same contract (no persistence):
// the reference the contract tests also run against, and a stand-in where a
// disk cache is not wanted.
std::unique_ptr<ChunkCache> NewMemoryChunkCache(uint64_t capacity_bytes);

}  // namespace ferry::chunkstore
