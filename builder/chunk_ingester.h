// ChunkIngester: turns file contents into deduplicated chunks in packs.
//
// The caller streams each file's data regions in (BeginRegion, then Write,
// or Reserve and Commit to read straight into the ingester's memory, then
// EndRegion); the ingester cuts chunks (FastCDC), hashes and compresses them
// on worker threads, drops chunks the store or this build already holds,
// appends the rest to packs in the order they arrived (so files read
// together sit together), and uploads each full pack in the background.
// Every chunk lands in `locations()`; a file's extents refer to indexes in
// that table. Nothing an image could refer to is visible before the pack
// holding it is uploaded.
// Not thread-safe (one feeding thread).
#pragma once

#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "builder/chunker.h"
#include "chunkstore/object_store.h"
#include "chunkstore/pack.h"

namespace ferry::builder {

struct IngestOptions {
  ChunkerParams chunker;
  int zstd_level = 1;  // level 3 is 3% smaller on a Debian tree, and slower
  uint64_t pack_target_bytes = 32ull << 20;
  unsigned threads = 0;  // 0: one per core
};

struct IngestStats {
  uint64_t bytes_in = 0;          // file bytes seen (holes excluded)
  uint64_t chunks = 0;            // chunks cut
  uint64_t new_chunks = 0;        // chunks written to new packs
  uint64_t new_bytes = 0;         // uncompressed bytes of new chunks
  uint64_t written_bytes = 0;     // compressed bytes written to the store
  uint64_t dedup_store_bytes = 0; // bytes found already in the store
  uint64_t dedup_build_bytes = 0; // bytes repeated within this build
  uint64_t packs = 0;             // packs written
};

// A file extent as the ingester reports it.
struct PendingExtent {
  uint64_t file_offset;
  uint32_t location;  // index into ChunkIngester::locations()
};

class ChunkIngester {
 public:
  ChunkIngester(chunkstore::ObjectStore* store, std::string temp_dir, IngestOptions opt);
  ~ChunkIngester();

  // Reads the index of every pack in the store, for deduplication.
  Status LoadStoreIndex();

  // Feeds one contiguous data region of a file starting at `file_offset`;
  // its chunks are appended to *extents as they are resolved (in order).
  void BeginRegion(std::vector<PendingExtent>* extents, uint64_t file_offset);
  // Room for the next `n` bytes of the region. The caller fills some of it
  // and passes it on with Commit before anything else; chunks are hashed,
  // compressed and written from this memory, not from a copy.
  std::span<uint8_t> Reserve(size_t n);
  // The first `n` bytes of the room Reserve gave are the region's next bytes.
  Status Commit(size_t n);
  // Reserve, copy, Commit.
  Status Write(std::span<const uint8_t> data);
  Status EndRegion();

  // Adds a chunk that is already stored at `loc` (a base image's chunk,
  // builder/image_builder.h AddImage) to locations() without reading or
  // writing any byte of it, and returns its index there; later content
  // with the same digest deduplicates to it. Counted in no statistic.
  uint32_t AddStoredChunk(const chunkstore::ChunkLocation& loc);

  // Places everything pending and starts the last pack's upload. After
  // this, locations() is complete, but the last packs may still be
  // uploading (the caller can go on with what needs only their ids).
  Status FinishPlacing();
  // Waits until every pack is in the store; the first failure, if any.
  Status AwaitUploads();

  const std::vector<chunkstore::ChunkLocation>& locations() const { return locations_; }
  const IngestStats& stats() const { return stats_; }

 private:
  struct Block;
  struct Job;
  class Workers;
  void Submit(std::span<const uint8_t> chunk);
  // Hands the chunks collected so far to a worker as one batch.
  void PostBatch();
  Status Drain(size_t max_pending_bytes);
  Status Resolve(Job& job);
  Status FlushPack();

  chunkstore::ObjectStore* store_;
  std::string temp_dir_;
  IngestOptions opt_;
  Chunker chunker_;
  std::unique_ptr<Workers> workers_;
  std::unordered_map<Digest, chunkstore::ChunkLocation, DigestHash> store_index_;
  std::unordered_map<Digest, uint32_t, DigestHash> build_index_;  // digest -> location
  std::vector<chunkstore::ChunkLocation> locations_;
  std::vector<uint32_t> open_pack_locations_;  // locations waiting for the pack id
  // Full packs are uploaded in the background, at most kMaxUploads at once,
  // while the next ones fill: a file:// store spends that time in fsync, a
  // remote one sending the pack.
  static constexpr size_t kMaxUploads = 2;
  // Bytes of chunks cut but not yet placed in a pack, at most (beyond
  // that, feeding waits for the workers).
  static constexpr size_t kMaxPendingBytes = 64u << 20;
  std::deque<std::future<Status>> uploads_;
  std::unique_ptr<chunkstore::PackWriter> pack_;
  std::string pack_path_;
  std::deque<std::shared_ptr<Job>> pending_;
  std::vector<std::shared_ptr<Job>> batch_;  // submitted, not yet posted
  size_t batch_bytes_ = 0;
  size_t pending_bytes_ = 0;
  std::vector<PendingExtent>* region_extents_ = nullptr;
  uint64_t region_offset_ = 0;
  // The memory the caller reads into (Reserve): blocks of kBlockBytes (or
  // more, for a bigger Reserve), filled one after the other. The region's
  // bytes not cut into chunks yet, carry_, end where block_'s filled part
  // ends; when a block is full they are copied to the front of the next, so
  // a chunk's bytes are always contiguous.
  static constexpr size_t kBlockBytes = 4u << 20;
  std::shared_ptr<Block> block_;
  std::span<const uint8_t> carry_;
  size_t reserved_ = 0;
  IngestStats stats_;
};

}  // namespace ferry::builder
