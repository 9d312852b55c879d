// The node cache's writer thread: admission (append, fdatasync, then index)
// and eviction. Everything here runs under writer_mu_; mu_ is taken only
// around bookkeeping, never across I/O.
#include <fcntl.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>

#include "chunkstore/disk_node_cache.h"

namespace ferry::chunkstore {
namespace {

// How long admission stays off after a failed write.
constexpr auto kAdmissionRetry = std::chrono::seconds(5);

}  // namespace

Status DiskNodeCache::WriteIndex(rocksdb::WriteBatch* wb) {
  rocksdb::WriteOptions o;
  o.sync = true;
  rocksdb::Status s = db_->Write(o, wb);
  // A failed WAL write (a full disk) stops RocksDB writing until resumed.
  if (!s.ok() && db_->Resume().ok()) s = db_->Write(o, wb);
  return FromRocks(s, "write node cache index");
}

void DiskNodeCache::WriterLoop() {
  for (;;) {
    std::deque<QueuedChunk> batch;
    std::vector<Digest> corrupt;
    uint64_t taken;
    {
      std::unique_lock<std::mutex> l(mu_);
      work_cv_.wait(l, [&] { return stop_ || !queue_.empty() || !corrupt_.empty(); });
      if (queue_.empty() && corrupt_.empty()) return;  // stopping, and drained
      // Admission waits for a quiet moment (NodeCacheOptions): no Put for
      // admission_quiet, enough queued, the oldest queued long enough, a
      // Flush, or closing.
      while (corrupt_.empty() && !stop_ && flushing_ == 0 && !queue_.empty() &&
             queued_bytes_ < opt_.admission_batch_bytes) {
        auto until = std::min(last_put_ + opt_.admission_quiet,
                              first_queued_ + opt_.admission_max_delay);
        if (clock_->Now() >= until) break;
        clock_->WaitUntil(work_cv_, l, until);
      }
      batch.swap(queue_);
      corrupt.swap(corrupt_);
      taken = put_seq_;
    }
    {
      std::lock_guard<std::mutex> w(writer_mu_);
      if (!corrupt.empty()) DropIndexEntries(std::move(corrupt));
      WriteQueued(&batch);
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      done_seq_ = taken;
    }
    done_cv_.notify_all();
  }
}

// Get dropped these from memory; delete them from RocksDB too, unless the
// chunk was admitted again meanwhile (then its key already points at the
// new copy). Only the writer adds index entries, so this check cannot race.
void DiskNodeCache::DropIndexEntries(std::vector<Digest> digests) {
  rocksdb::WriteBatch wb;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const Digest& d : digests) {
      if (!index_.contains(d)) wb.Delete(IndexKey(d));
    }
  }
  if (wb.Count() == 0) return;
  // If this fails the entry stays on disk; it fails verification again.
  Status s = WriteIndex(&wb);
  if (!s.ok()) std::fprintf(stderr, "ferry: node cache %s: %s\n", opt_.dir.c_str(), s.ToString().c_str());
}

// Writes the batch in groups, one group per segment it lands in: each group
// is one gathered write, one fdatasync and one index WriteBatch.
void DiskNodeCache::WriteQueued(std::deque<QueuedChunk>* batch) {
  while (!batch->empty()) {
    bool paused;
    {
      std::lock_guard<std::mutex> l(mu_);
      paused = paused_until_ != Clock::TimePoint{} &&
               clock_->Now() < paused_until_;
    }
    if (paused) {
      Drop(std::vector<QueuedChunk>(batch->begin(), batch->end()));
      batch->clear();
      return;
    }
    const uint64_t limit = std::min(opt_.capacity_bytes, disk_limit_);
    const uint64_t first = kSegmentRecordHeaderSize + batch->front().data->size();
    const bool appending = current_ != 0 && current_size_ > 0;
    if (appending && current_size_ + first > opt_.segment_bytes) {
      current_ = 0;  // full: the next group starts a segment
      continue;
    }
    if (first > limit) {
      Drop({batch->front()});
      batch->pop_front();
      continue;
    }
    // A chunk larger than a segment gets a segment of its own.
    const uint64_t room = std::min(limit, appending ? opt_.segment_bytes - current_size_
                                                    : std::max(opt_.segment_bytes, first));
    std::vector<QueuedChunk> group;
    uint64_t bytes = 0;
    while (!batch->empty()) {
      uint64_t rb = kSegmentRecordHeaderSize + batch->front().data->size();
      if (bytes + rb > room) break;
      bytes += rb;
      group.push_back(std::move(batch->front()));
      batch->pop_front();
    }
    Status s = MakeRoom(bytes, limit, batch);
    if (s.ok()) s = CheckFreeSpace(bytes);
    if (s.ok()) s = AppendGroup(&group, bytes);
    if (!s.ok()) {
      AdmissionFailed(s);
      Drop(group);
    }
  }
}

// The cache never writes the disk full: the index (RocksDB) must always be
// able to write, and a database that ran out of space mid-write cannot be
// relied on. A reserve of 2% of the filesystem (at least 1 MiB, at most
// 64 MiB) stays free; a write that would eat into it fails like ENOSPC.
Status DiskNodeCache::CheckFreeSpace(uint64_t bytes) {
  struct statvfs vfs;
  if (statvfs(segment_dir_.c_str(), &vfs) != 0) return Status::Ok();  // the write will tell
  const uint64_t total = static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  const uint64_t avail = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  const uint64_t reserve = std::clamp<uint64_t>(total / 50, 1u << 20, 64u << 20);
  if (avail >= bytes + reserve) return Status::Ok();
  return Status(StatusCode::kIoError,
                "only " + std::to_string(avail) + " bytes free in " + segment_dir_ +
                    " (keeping " + std::to_string(reserve) + " free for the index)",
                ENOSPC);
}

Status DiskNodeCache::MakeRoom(uint64_t bytes, uint64_t limit, std::deque<QueuedChunk>* kept) {
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (used_bytes_ + bytes <= limit || segments_.empty()) return Status::Ok();
    }
    RETURN_IF_ERROR(EvictOldest(kept));
  }
}

Status DiskNodeCache::OpenNewSegment() {
  uint32_t id = next_segment_++;
  std::string path = SegmentPath(id);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create " + path);
  auto file = std::make_shared<SegmentFile>(fd);
  // The name must be durable before any index entry points into the file.
  int dfd = open(segment_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || fsync(dfd) != 0) {
    Status s = ErrnoError("fsync " + segment_dir_);
    if (dfd >= 0) close(dfd);
    unlink(path.c_str());
    return s;
  }
  close(dfd);
  std::lock_guard<std::mutex> l(mu_);
  segments_[id] = Segment{std::move(file), 0, {}};
  current_ = id;
  current_size_ = 0;
  return Status::Ok();
}

Status DiskNodeCache::AppendGroup(std::vector<QueuedChunk>* group, uint64_t bytes) {
  if (current_ == 0) RETURN_IF_ERROR(OpenNewSegment());
  const uint32_t id = current_;
  const uint64_t start = current_size_;
  std::shared_ptr<SegmentFile> file;
  {  // counted before written, so used_bytes_ never trails the disk
    std::lock_guard<std::mutex> l(mu_);
    Segment& seg = segments_.at(id);
    file = seg.file;
    seg.size += bytes;
    used_bytes_ += bytes;
  }
  current_size_ += bytes;

  std::vector<std::array<uint8_t, kSegmentRecordHeaderSize>> headers(group->size());
  std::vector<NodeIndexEntry> locs(group->size());
  std::vector<iovec> iov;
  iov.reserve(2 * group->size());
  uint64_t offset = start;
  for (size_t i = 0; i < group->size(); ++i) {
    const QueuedChunk& q = (*group)[i];
    locs[i] = NodeIndexEntry{id, static_cast<uint32_t>(q.data->size()), offset, Xxh3(*q.data)};
    EncodeRecordHeader({q.digest, locs[i].length, locs[i].data_xxh3}, headers[i].data());
    iov.push_back({headers[i].data(), kSegmentRecordHeaderSize});
    iov.push_back({const_cast<uint8_t*>(q.data->data()), q.data->size()});
    offset += locs[i].record_bytes();
  }
  const std::string path = SegmentPath(id);
  Status s = uring_->WriteAndSync(file->fd, start, iov, path.c_str());
  if (!s.ok()) {
    // The tail may be torn: cut it off, count what is really there, and
    // never append to this segment again.
    uint64_t real = start + bytes;
    struct stat sb;
    if (ftruncate(file->fd, static_cast<off_t>(start)) == 0) real = start;
    if (fstat(file->fd, &sb) == 0) real = std::min(real, static_cast<uint64_t>(sb.st_size));
    std::lock_guard<std::mutex> l(mu_);
    segments_.at(id).size -= start + bytes - real;
    used_bytes_ -= start + bytes - real;
    current_ = 0;
    return s;
  }
  // The bytes are durable; only now may the index point at them.
  rocksdb::WriteBatch wb;
  for (size_t i = 0; i < group->size(); ++i) {
    wb.Put(IndexKey((*group)[i].digest), EncodeIndexValue(locs[i]));
  }
  RETURN_IF_ERROR(WriteIndex(&wb));

  {
    std::lock_guard<std::mutex> l(mu_);
    Segment& seg = segments_.at(id);
    for (size_t i = 0; i < group->size(); ++i) {
      const QueuedChunk& q = (*group)[i];
      auto p = pending_.find(q.digest);
      bool used = p != pending_.end() && p->second.used;  // read while queued
      if (p != pending_.end()) pending_.erase(p);
      index_[q.digest] = IndexedChunk{locs[i], used};
      seg.chunks.push_back({q.digest, locs[i].offset});
      if (!q.kept) {
        ++stats_.admitted;
        stats_.admitted_bytes += locs[i].length;
        queued_bytes_ -= locs[i].length;
      }
    }
  }
  if (failing_) {
    std::fprintf(stderr, "ferry: node cache %s: admitting chunks again\n", opt_.dir.c_str());
    failing_ = false;
  }
  return Status::Ok();
}

// Removes the oldest segment. With `kept`, chunks read since they were last
// written are read back (verified) and queued onto `kept` to be written
// again, up to half the segment so that evicting always frees space; each
// is copied at most once per read, since the copy starts unread.
Status DiskNodeCache::EvictOldest(std::deque<QueuedChunk>* kept) {
  uint32_t id;
  uint64_t size;
  std::shared_ptr<SegmentFile> file;
  std::vector<std::pair<Digest, IndexedChunk>> live;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (segments_.empty()) return Status::Ok();
    auto it = segments_.begin();
    id = it->first;
    size = it->second.size;
    file = it->second.file;
    for (const SegmentChunk& c : it->second.chunks) {
      auto e = index_.find(c.digest);
      if (e != index_.end() && e->second.loc.segment == id && e->second.loc.offset == c.offset) {
        live.emplace_back(c.digest, e->second);
      }
    }
  }
  if (id == current_) current_ = 0;

  enum class Fate { kEvict, kKeep, kCorrupt };
  std::vector<Fate> fate(live.size(), Fate::kEvict);
  std::vector<ChunkData> copies(live.size());
  uint64_t keep_bytes = 0;
  for (size_t i = 0; kept != nullptr && i < live.size(); ++i) {
    const NodeIndexEntry& loc = live[i].second.loc;
    if (!live[i].second.used || keep_bytes + loc.record_bytes() > size / 2) continue;
    Result<ChunkData> r = ReadRecord(*file, loc, live[i].first);
    fate[i] = r.ok() ? Fate::kKeep : Fate::kCorrupt;
    if (!r.ok()) continue;
    copies[i] = std::move(r).value();
    keep_bytes += loc.record_bytes();
  }

  // Index entries go first (synced), so a crash never leaves one pointing
  // into a deleted file.
  rocksdb::WriteBatch wb;
  for (const auto& [d, e] : live) wb.Delete(IndexKey(d));
  if (wb.Count() > 0) RETURN_IF_ERROR(WriteIndex(&wb));
  {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < live.size(); ++i) {
      const Digest& d = live[i].first;
      const NodeIndexEntry& loc = live[i].second.loc;
      auto it = index_.find(d);
      if (it == index_.end() || it->second.loc.segment != id || it->second.loc.offset != loc.offset) {
        continue;  // a Get dropped it meanwhile
      }
      index_.erase(it);
      if (fate[i] == Fate::kKeep && !pending_.contains(d)) {
        // Served from pending_ until the copy is indexed.
        pending_.emplace(d, PendingChunk{copies[i], false});
        kept->push_back(QueuedChunk{d, copies[i], true});
        ++stats_.kept;
      } else if (fate[i] == Fate::kCorrupt) {
        ++stats_.corrupt;
      } else {
        ++stats_.evicted;
        stats_.evicted_bytes += loc.length;
      }
    }
  }
  // A reader holding `file` keeps reading the unlinked file.
  const std::string path = SegmentPath(id);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("remove " + path);
  std::lock_guard<std::mutex> l(mu_);
  used_bytes_ -= size;
  segments_.erase(id);
  return Status::Ok();
}

void DiskNodeCache::Drop(const std::vector<QueuedChunk>& chunks) {
  std::lock_guard<std::mutex> l(mu_);
  for (const QueuedChunk& q : chunks) {
    pending_.erase(q.digest);
    if (q.kept) {  // it was evicted after all
      ++stats_.evicted;
      stats_.evicted_bytes += q.data->size();
    } else {
      ++stats_.dropped;
      queued_bytes_ -= q.data->size();
    }
  }
}

// Turns admission off for a while and says so once per episode. On a full
// disk the cache also gives back a segment's worth of space at once (so the
// index, and whoever else shares the disk, can still write) and from then on
// keeps below that size until reopened.
void DiskNodeCache::AdmissionFailed(const Status& s) {
  const bool no_space = s.sys_errno() == ENOSPC || s.sys_errno() == EDQUOT;
  uint64_t used;
  {
    std::lock_guard<std::mutex> l(mu_);
    paused_until_ = clock_->Now() + kAdmissionRetry;
    used = used_bytes_;
  }
  if (no_space) {
    const uint64_t seg = opt_.segment_bytes;
    disk_limit_ = std::min(disk_limit_, std::max(used > seg ? used - seg : 0, seg));
    while (used > disk_limit_ && EvictOldest(nullptr).ok()) {
      std::lock_guard<std::mutex> l(mu_);
      used = used_bytes_;
    }
  }
  if (!failing_) {
    std::string limit = no_space ? "; the cache now stays below " + std::to_string(disk_limit_) +
                                       " bytes until reopened"
                                 : "";
    std::fprintf(stderr,
                 "ferry: node cache %s: cannot admit chunks: %s; new chunks are dropped for %lld s "
                 "(reads go on)%s\n",
                 opt_.dir.c_str(), s.ToString().c_str(),
                 static_cast<long long>(kAdmissionRetry.count()), limit.c_str());
  }
  failing_ = true;
}

}  // namespace ferry::chunkstore
