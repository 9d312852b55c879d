// DiskNodeCache: the on-disk ChunkCache behind OpenNodeCache(). Internal to
// chunkstore; users see only node_cache.h.
//
// Chunks are appended to segment files (segment.h) by one writer thread
// through io_uring; an index entry (RocksDB, mirrored in memory) is written
// only after the bytes it points to were fdatasync'ed. Segments are the unit
// of eviction: the oldest goes first, but chunks read since they were last
// written are copied forward instead of dropped. Get reads with preadv from a
// shared, reference-counted fd, so a segment unlinked mid-read still reads.
// A failed write turns admission off for 5 s (Puts are dropped, reads go
// on); a full disk also makes the cache give back one segment and stay below
// that size until reopened. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chunkstore/node_cache.h"
#include "chunkstore/segment.h"
#include "chunkstore/uring_file.h"

namespace rocksdb {
class DB;
class Status;
class WriteBatch;
}

namespace ferry::chunkstore {

class DiskNodeCache final : public ChunkCache {
 public:
  static Result<std::unique_ptr<ChunkCache>> Open(const NodeCacheOptions& opt);
  // Writes what is still queued, then closes the index.
  ~DiskNodeCache() override;

  Result<ChunkData> Get(const Digest& d) override;
  bool Contains(const Digest& d) override;
  void Put(const Digest& d, ChunkData data) override;
  Status Flush() override;
  Status Prune(uint64_t bytes) override;
  NodeCacheStats Stats() const override;

 private:
  struct SegmentFile {  // closed when the last reader lets go
    explicit SegmentFile(int f) : fd(f) {}
    SegmentFile(const SegmentFile&) = delete;
    SegmentFile& operator=(const SegmentFile&) = delete;
    ~SegmentFile();
    const int fd;
  };
  struct SegmentChunk {
    Digest digest;
    uint64_t offset;
  };
  struct Segment {
    std::shared_ptr<SegmentFile> file;
    uint64_t size = 0;                  // bytes on disk, plus any reserved for a write
    std::vector<SegmentChunk> chunks;   // every record ever indexed here; some dead
  };
  struct IndexedChunk {
    NodeIndexEntry loc;
    bool used = false;  // read since written; decides keep vs drop at eviction
  };
  struct PendingChunk {  // waiting to be written
    ChunkData data;
    bool used = false;
  };
  struct QueuedChunk {
    Digest digest;
    ChunkData data;
    bool kept = false;  // copied forward by eviction, not a Put
  };

  explicit DiskNodeCache(const NodeCacheOptions& opt);
  static Status FromRocks(const rocksdb::Status& s, const std::string& what);
  // Applies `wb` to the index with the WAL synced.
  Status WriteIndex(rocksdb::WriteBatch* wb);
  std::string SegmentPath(uint32_t id) const;
  Status Recover();
  Result<ChunkData> ReadRecord(const SegmentFile& file, const NodeIndexEntry& loc,
                               const Digest& d) const;

  // The writer side (node_cache_writer.cc); all need writer_mu_.
  void WriterLoop();
  void WriteQueued(std::deque<QueuedChunk>* batch);
  Status AppendGroup(std::vector<QueuedChunk>* group, uint64_t bytes);
  Status OpenNewSegment();
  Status MakeRoom(uint64_t bytes, uint64_t limit, std::deque<QueuedChunk>* kept);
  Status CheckFreeSpace(uint64_t bytes);
  Status EvictOldest(std::deque<QueuedChunk>* kept);
  void DropIndexEntries(std::vector<Digest> digests);
  void Drop(const std::vector<QueuedChunk>& chunks);
  void AdmissionFailed(const Status& s);

  const NodeCacheOptions opt_;
  Clock* const clock_;
  const std::string segment_dir_;
  std::unique_ptr<rocksdb::DB> db_;
  std::thread writer_;

  // Lock order: writer_mu_, then mu_. mu_ is never held across I/O, so Get
  // waits only for bookkeeping; writer_mu_ is held across admission and
  // eviction I/O and is never taken by Get, Put or Stats.
  std::mutex writer_mu_;
  std::unique_ptr<UringWriter> uring_;  // guarded by writer_mu_
  uint32_t current_ = 0;        // segment being appended to, 0 if none; writer_mu_
  uint64_t current_size_ = 0;   // writer_mu_
  uint32_t next_segment_ = 1;   // writer_mu_
  uint64_t disk_limit_;         // lowered when the disk filled up; writer_mu_
  bool failing_ = false;        // the last admission failed (log once); writer_mu_

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // the writer waits for work
  std::condition_variable done_cv_;   // Flush waits for the writer
  std::unordered_map<Digest, IndexedChunk, DigestHash> index_;
  std::map<uint32_t, Segment> segments_;  // oldest first
  std::unordered_map<Digest, PendingChunk, DigestHash> pending_;
  std::deque<QueuedChunk> queue_;       // Puts not yet taken by the writer
  uint64_t queued_bytes_ = 0;           // data of Puts taken but not written
  std::vector<Digest> corrupt_;         // dropped by Get; writer deletes them
  uint64_t put_seq_ = 0;
  Clock::TimePoint last_put_{};      // the latest Put queued
  Clock::TimePoint first_queued_{};  // the oldest Put still queued
  int flushing_ = 0;  // Flush calls waiting: the writer writes at once
  uint64_t done_seq_ = 0;
  Clock::TimePoint paused_until_{};  // Puts dropped until then
  bool stop_ = false;
  uint64_t used_bytes_ = 0;
  NodeCacheStats stats_;
};

}  // namespace ferry::chunkstore
