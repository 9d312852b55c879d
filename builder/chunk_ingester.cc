#include "builder/chunk_ingester.h"

#include "chunkstore/sha256_mb.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>

namespace ferry::builder {

using chunkstore::ChunkLocation;

// File bytes as read, shared by the chunks cut from them. Filled front to
// back; what is filled is never written again.
struct ChunkIngester::Block {
  explicit Block(size_t n) : bytes(new uint8_t[n]), capacity(n) {}  // not zeroed: read into
  std::unique_ptr<uint8_t[]> bytes;
  size_t capacity;
  size_t used = 0;
};

struct ChunkIngester::Job {
  std::shared_ptr<const Block> block;  // holds `data`
  std::span<const uint8_t> data;
  std::vector<PendingExtent>* extents;
  uint64_t file_offset;
  // Filled by a worker:
  Digest digest;
  bool known_in_store = false;
  std::unique_ptr<uint8_t[]> frame;  // CompressBound(data.size()) bytes, frame_len used
  size_t frame_len = 0;
  bool posted = false;
  bool done = false;
};

// A fixed set of threads running jobs; waiting is per job.
class ChunkIngester::Workers {
 public:
  explicit Workers(unsigned n) {
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { Run(); });
  }
  ~Workers() { Join(); }
  // Runs what is queued, then stops the threads. Jobs may still use this
  // object (MarkDone) until Join returns.
  void Join() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  void Post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  // Marks a batch done at once: one wake-up for the waiting thread, not
  // one per chunk.
  template <typename Jobs>
  void MarkDone(const Jobs& jobs) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& job : jobs) job->done = true;
    }
    done_cv_.notify_all();
  }
  void Wait(Job& job) {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return job.done; });
  }

 private:
  void Run() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
  }
  std::mutex mu_;  // guards queue_, stop_, and Job::done
  std::condition_variable cv_, done_cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

ChunkIngester::ChunkIngester(chunkstore::ObjectStore* store, std::string temp_dir,
                             IngestOptions opt)
    : store_(store), temp_dir_(std::move(temp_dir)), opt_(opt), chunker_(opt.chunker) {
  unsigned n = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  workers_ = std::make_unique<Workers>(n);
}

ChunkIngester::~ChunkIngester() {
  // Jobs still queued use store_index_ and workers_: finish them first.
  workers_->Join();
}

Status ChunkIngester::LoadStoreIndex() {
  ASSIGN_OR_RETURN(auto keys, store_->List("packs/"));
  for (const std::string& key : keys) {
    auto id = Digest::FromHex(key.substr(6));
    if (!id) continue;
    auto index = chunkstore::ReadPackIndex(*store_, *id);
    if (!index.ok()) {
      // A damaged pack is simply not used for deduplication.
      continue;
    }
    for (const ChunkLocation& loc : *index) store_index_.emplace(loc.digest, loc);
  }
  return Status::Ok();
}

void ChunkIngester::BeginRegion(std::vector<PendingExtent>* extents, uint64_t file_offset) {
  region_extents_ = extents;
  region_offset_ = file_offset;
}

void ChunkIngester::Submit(std::span<const uint8_t> chunk) {
  auto job = std::make_shared<Job>();
  job->block = block_;
  job->data = chunk;
  job->extents = region_extents_;
  job->file_offset = region_offset_;
  region_offset_ += chunk.size();
  pending_bytes_ += chunk.size();
  pending_.push_back(job);
  batch_.push_back(job);
  batch_bytes_ += chunk.size();
  // Batches let the multi-buffer SHA-256 hash many chunks side by side.
  if (batch_.size() >= 32 || batch_bytes_ >= (4u << 20)) PostBatch();
}

void ChunkIngester::PostBatch() {
  if (batch_.empty()) return;
  for (auto& job : batch_) job->posted = true;
  workers_->Post([this, batch = std::move(batch_)] {
    std::vector<std::span<const uint8_t>> msgs;
    for (const auto& job : batch) msgs.emplace_back(job->data);
    std::vector<std::array<uint8_t, 32>> digests(batch.size());
    chunkstore::Sha256Many(msgs, digests);
    for (size_t i = 0; i < batch.size(); ++i) {
      Job& job = *batch[i];
      job.digest.bytes = digests[i];
      // store_index_ is not modified while jobs run.
      job.known_in_store = store_index_.count(job.digest) > 0;
      if (!job.known_in_store) {
        size_t bound = chunkstore::CompressBound(job.data.size());
        job.frame.reset(new uint8_t[bound]);
        job.frame_len =
            chunkstore::CompressChunkInto(job.data, opt_.zstd_level, {job.frame.get(), bound});
      }
    }
    workers_->MarkDone(batch);
  });
  batch_.clear();
  batch_bytes_ = 0;
}

std::span<uint8_t> ChunkIngester::Reserve(size_t n) {
  // carry_ ends where block_'s filled part does: the room after it continues
  // the region. If there is not enough, the carry moves to a new block.
  if (!block_ || block_->capacity - block_->used < n) {
    auto block = std::make_shared<Block>(std::max(carry_.size() + n, kBlockBytes));
    if (!carry_.empty()) std::memcpy(block->bytes.get(), carry_.data(), carry_.size());
    block->used = carry_.size();
    block_ = std::move(block);  // the old block lives on in the jobs that use it
  }
  uint8_t* room = block_->bytes.get() + block_->used;
  carry_ = {room - carry_.size(), carry_.size()};
  reserved_ = n;
  return {room, n};
}

Status ChunkIngester::Commit(size_t n) {
  n = std::min(n, reserved_);
  reserved_ = 0;
  stats_.bytes_in += n;
  if (n == 0) return Status::Ok();
  block_->used += n;
  std::span<const uint8_t> data(carry_.data(), carry_.size() + n);
  size_t used = chunker_.Cut(data, false, [&](std::span<const uint8_t> c) { Submit(c); });
  carry_ = data.subspan(used);
  return Drain(kMaxPendingBytes);
}

Status ChunkIngester::Write(std::span<const uint8_t> data) {
  std::span<uint8_t> room = Reserve(data.size());
  if (!data.empty()) std::memcpy(room.data(), data.data(), data.size());
  return Commit(data.size());
}

Status ChunkIngester::EndRegion() {
  chunker_.Cut(carry_, true, [&](std::span<const uint8_t> c) { Submit(c); });
  carry_ = {};  // block_ stays: the next region goes on filling it
  region_extents_ = nullptr;
  return Drain(kMaxPendingBytes);
}

Status ChunkIngester::Drain(size_t max_pending_bytes) {
  while (!pending_.empty() && pending_bytes_ > max_pending_bytes) {
    std::shared_ptr<Job> job = pending_.front();
    pending_.pop_front();
    if (!job->posted) PostBatch();
    workers_->Wait(*job);
    pending_bytes_ -= job->data.size();
    RETURN_IF_ERROR(Resolve(*job));
  }
  return Status::Ok();
}

uint32_t ChunkIngester::AddStoredChunk(const chunkstore::ChunkLocation& loc) {
  auto [it, inserted] = build_index_.try_emplace(loc.digest, static_cast<uint32_t>(locations_.size()));
  if (inserted) locations_.push_back(loc);
  return it->second;
}

namespace {
// Numbers the temporary pack files of every ingester in the process.
std::atomic<uint64_t> pack_seq{0};
}  // namespace

Status ChunkIngester::Resolve(Job& job) {
  ++stats_.chunks;
  uint32_t ulen = static_cast<uint32_t>(job.data.size());
  uint32_t index;
  if (auto it = build_index_.find(job.digest); it != build_index_.end()) {
    index = it->second;
    stats_.dedup_build_bytes += ulen;
  } else if (auto sit = store_index_.find(job.digest); sit != store_index_.end()) {
    index = static_cast<uint32_t>(locations_.size());
    locations_.push_back(sit->second);
    build_index_.emplace(job.digest, index);
    stats_.dedup_store_bytes += ulen;
  } else {
    if (!pack_) {
      pack_path_ = temp_dir_ + "/pack." + std::to_string(getpid()) + "." +
                   std::to_string(++pack_seq);
      ASSIGN_OR_RETURN(pack_, chunkstore::PackWriter::Create(pack_path_));
    }
    ASSIGN_OR_RETURN(uint64_t offset,
                     pack_->Append(job.digest, {job.frame.get(), job.frame_len}, ulen));
    ChunkLocation loc;
    loc.digest = job.digest;
    loc.offset = offset;
    loc.clen = static_cast<uint32_t>(job.frame_len);
    loc.ulen = ulen;
    index = static_cast<uint32_t>(locations_.size());
    locations_.push_back(loc);  // pack id filled in by FlushPack
    open_pack_locations_.push_back(index);
    build_index_.emplace(job.digest, index);
    ++stats_.new_chunks;
    stats_.new_bytes += ulen;
    stats_.written_bytes += job.frame_len;
    if (pack_->bytes_written() >= opt_.pack_target_bytes) RETURN_IF_ERROR(FlushPack());
  }
  job.extents->push_back({job.file_offset, index});
  return Status::Ok();
}

Status ChunkIngester::FlushPack() {
  if (!pack_) return Status::Ok();
  ASSIGN_OR_RETURN(Digest id, pack_->Finish());
  pack_.reset();
  for (uint32_t i : open_pack_locations_) locations_[i].pack = id;
  open_pack_locations_.clear();
  ++stats_.packs;
  while (uploads_.size() >= kMaxUploads) {
    Status st = uploads_.front().get();
    uploads_.pop_front();
    if (!st.ok()) {
      unlink(pack_path_.c_str());  // never to be uploaded
      return st;
    }
  }
  uploads_.push_back(std::async(std::launch::async, [store = store_, key = chunkstore::PackKey(id),
                                                     path = pack_path_] {
    Status st = store->PutFile(key, path);
    if (!st.ok()) unlink(path.c_str());
    return st;
  }));
  return Status::Ok();
}

Status ChunkIngester::FinishPlacing() {
  RETURN_IF_ERROR(Drain(0));
  return FlushPack();
}

Status ChunkIngester::AwaitUploads() {
  Status first;
  for (; !uploads_.empty(); uploads_.pop_front()) {
    Status st = uploads_.front().get();
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

}  // namespace ferry::builder
