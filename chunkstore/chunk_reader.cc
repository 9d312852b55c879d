#include "chunkstore/chunk_reader.h"

#include "chunkstore/sha256_mb.h"

namespace ferry::chunkstore {

ChunkReader::ChunkReader(ObjectStore* store, size_t cache_bytes, ChunkCache* node_cache)
    : store_(store), node_cache_(node_cache), cache_bytes_(cache_bytes) {}

namespace {
constexpr size_t kPrefetchThreads = 2;
constexpr size_t kMaxQueuedRuns = 256;  // beyond this, prefetch hints are dropped

void Add(std::atomic<uint64_t> FetchCounters::*field, FetchCounters* c, uint64_t n = 1) {
  if (c != nullptr) (c->*field) += n;
}
}  // namespace

ChunkReader::~ChunkReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  prefetch_cv_.notify_all();
  for (auto& t : prefetch_threads_) t.join();
}

bool ChunkReader::Present(const Digest& d) const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.count(d) > 0 || flights_.count(d) > 0;
}

Result<ChunkData> ChunkReader::ReadWithNeighbours(const ChunkLocation& loc,
                                                  const std::vector<ChunkLocation>& neighbours,
                                                  const CountersPtr& counters) {
  if (!neighbours.empty()) {
    bool cached;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cached = map_.count(loc.digest) > 0 || flights_.count(loc.digest) > 0;
    }
    if (!cached && node_cache_ != nullptr) cached = node_cache_->Contains(loc.digest);
    if (!cached) {
      // Neighbours the node cache holds end the run: what follows them is
      // left to a later read, so one range read never refetches them.
      std::vector<ChunkLocation> run;
      run.reserve(neighbours.size() + 1);
      run.push_back(loc);
      for (const ChunkLocation& n : neighbours) {
        if (node_cache_ != nullptr && node_cache_->Contains(n.digest)) break;
        run.push_back(n);
      }
      FetchRun(run, counters.get());
    }
  }
  return Read(loc, counters);  // from memory now, or the error, or another fetch's result
}

void ChunkReader::Prefetch(std::vector<ChunkLocation> run, CountersPtr counters) {
  if (run.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || prefetch_queue_.size() >= kMaxQueuedRuns) return;
  if (prefetch_threads_.empty()) {
    for (size_t i = 0; i < kPrefetchThreads; ++i) {
      prefetch_threads_.emplace_back([this] { PrefetchLoop(); });
    }
  }
  prefetch_queue_.emplace_back(std::move(run), std::move(counters));
  prefetch_cv_.notify_one();
}

void ChunkReader::PrefetchLoop() {
  for (;;) {
    std::pair<std::vector<ChunkLocation>, CountersPtr> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      prefetch_cv_.wait(lock, [&] { return stopping_ || !prefetch_queue_.empty(); });
      if (stopping_) return;
      job = std::move(prefetch_queue_.front());
      prefetch_queue_.pop_front();
    }
    // Chunks the node cache holds are read from it too: the disk read and
    // the check overlap with serving the chunks before them.
    FetchRun(job.first, job.second.get());
  }
}

// Claims the chunks of `run` nobody has or fetches, takes those the node
// cache holds from it, reads the span that covers the rest with one range
// read, then verifies and publishes each.
void ChunkReader::FetchRun(const std::vector<ChunkLocation>& run, FetchCounters* c) {
  std::vector<std::pair<ChunkLocation, std::shared_ptr<Flight>>> claimed, mine;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const ChunkLocation& loc : run) {
      if (map_.count(loc.digest) || flights_.count(loc.digest)) continue;
      auto flight = std::make_shared<Flight>();
      flights_[loc.digest] = flight;
      claimed.emplace_back(loc, flight);
    }
  }
  for (auto& [loc, flight] : claimed) {
    ChunkData cached = node_cache_ != nullptr && node_cache_->Contains(loc.digest)
                           ? FromNodeCache(loc, c)
                           : nullptr;
    if (cached != nullptr) {
      Complete(loc, flight, cached, false, c);
    } else {
      mine.emplace_back(loc, flight);
    }
  }
  if (mine.empty()) return;
  Add(&FetchCounters::cache_misses, c, mine.size());
  uint64_t begin = mine.front().first.offset;
  uint64_t end = mine.back().first.offset + mine.back().first.clen;
  std::vector<uint8_t> span;
  Status st;
  bool ascending = end > begin && end - begin <= (16u << 20);
  for (size_t i = 1; ascending && i < mine.size(); ++i) {
    const ChunkLocation& prev = mine[i - 1].first;
    ascending = mine[i].first.offset >= prev.offset + prev.clen &&
                mine[i].first.pack == mine.front().first.pack;
  }
  if (ascending) {
    span.resize(end - begin);
    st = store_->GetRange(PackKey(mine.front().first.pack), begin, span);
  } else {
    st = InvalidArgumentError("prefetch run is not ascending");
  }
  if (!st.ok()) {
    // The span could not be read as a whole (a neighbour's range may be
    // what is wrong): fetch each chunk on its own, so that one bad chunk
    // fails only the reads that need it.
    for (auto& [loc, flight] : mine) Complete(loc, flight, FetchFromStore(loc, c), true, c);
    return;
  }
  Add(&FetchCounters::store_fetches, c);
  Add(&FetchCounters::store_bytes, c, span.size());
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.fetches;
    stats_.fetched_bytes += span.size();
  }
  // Decompress every chunk, then verify them together: the multi-buffer
  // SHA-256 hashes a run several times faster than one chunk at a time.
  std::vector<std::shared_ptr<std::vector<uint8_t>>> data(mine.size());
  std::vector<Status> status(mine.size());
  std::vector<std::span<const uint8_t>> msgs;
  std::vector<size_t> which;
  for (size_t i = 0; i < mine.size(); ++i) {
    const ChunkLocation& loc = mine[i].first;
    data[i] = std::make_shared<std::vector<uint8_t>>();
    status[i] = DecompressFrame(std::span<const uint8_t>(span).subspan(loc.offset - begin, loc.clen),
                                loc.ulen, loc.digest, data[i].get());
    if (status[i].ok()) {
      msgs.emplace_back(*data[i]);
      which.push_back(i);
    }
  }
  std::vector<std::array<uint8_t, 32>> digests(msgs.size());
  Sha256Many(msgs, digests);
  for (size_t k = 0; k < which.size(); ++k) {
    const ChunkLocation& loc = mine[which[k]].first;
    if (digests[k] != loc.digest.bytes) {
      status[which[k]] = CorruptionError("chunk " + loc.digest.Hex() + ": contents do not match digest");
    }
  }
  for (size_t i = 0; i < mine.size(); ++i) {
    const ChunkLocation& loc = mine[i].first;
    if (status[i].ok()) {
      Complete(loc, mine[i].second, ChunkData(std::move(data[i])), true, c);
    } else {
      Complete(loc, mine[i].second,
               status[i].Annotate("pack " + loc.pack.Hex() + " offset " + std::to_string(loc.offset)),
               true, c);
    }
  }
}

void ChunkReader::Complete(const ChunkLocation& loc, const std::shared_ptr<Flight>& flight,
                           const Result<ChunkData>& res, bool from_store, FetchCounters* c) {
  if (res.ok() && from_store && node_cache_ != nullptr) node_cache_->Put(loc.digest, *res);
  if (!res.ok() && res.status().code() == StatusCode::kCorruption) Add(&FetchCounters::corrupt, c);
  std::lock_guard<std::mutex> lock(mu_);
  flight->done = true;
  if (res.ok()) {
    flight->data = *res;
    Insert(loc.digest, *res);
  } else {
    flight->status = res.status();
    if (res.status().code() == StatusCode::kCorruption) ++stats_.corrupt;
  }
  flights_.erase(loc.digest);
  cv_.notify_all();
}

ChunkReaderStats ChunkReader::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

ChunkData ChunkReader::FromNodeCache(const ChunkLocation& loc, FetchCounters* c) {
  auto hit = node_cache_->Get(loc.digest);
  if (!hit.ok() || *hit == nullptr || (*hit)->size() != loc.ulen) return nullptr;
  Add(&FetchCounters::cache_hits, c);
  Add(&FetchCounters::cache_hit_bytes, c, (*hit)->size());
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.cache_hits;
  return *hit;
}

Result<ChunkData> ChunkReader::FetchFromStore(const ChunkLocation& loc, FetchCounters* c) {
  Add(&FetchCounters::store_fetches, c);
  Add(&FetchCounters::store_bytes, c, loc.clen);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.fetches;
    stats_.fetched_bytes += loc.clen;
  }
  std::vector<uint8_t> frame(loc.clen);
  Status st = store_->GetRange(PackKey(loc.pack), loc.offset, frame);
  if (!st.ok()) return st.Annotate("chunk " + loc.digest.Hex());
  auto data = std::make_shared<std::vector<uint8_t>>();
  st = DecompressAndVerify(frame, loc.ulen, loc.digest, data.get());
  if (!st.ok()) return st.Annotate("pack " + loc.pack.Hex() + " offset " + std::to_string(loc.offset));
  return ChunkData(std::move(data));
}

void ChunkReader::Insert(const Digest& d, const ChunkData& data) {
  if (data->size() > cache_bytes_ || map_.count(d)) return;
  lru_.emplace_front(d, data);
  map_[d] = lru_.begin();
  cached_bytes_ += data->size();
  while (cached_bytes_ > cache_bytes_) {
    cached_bytes_ -= lru_.back().second->size();
    map_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

Result<ChunkData> ChunkReader::Read(const ChunkLocation& loc, const CountersPtr& counters) {
  FetchCounters* c = counters.get();
  std::shared_ptr<Flight> flight;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = map_.find(loc.digest);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++stats_.memory_hits;
      Add(&FetchCounters::memory_hits, c);
      return it->second->second;
    }
    auto fit = flights_.find(loc.digest);
    if (fit != flights_.end()) {
      flight = fit->second;
      Add(&FetchCounters::memory_hits, c);
      cv_.wait(lock, [&] { return flight->done; });
      if (!flight->status.ok()) return flight->status;
      return flight->data;
    }
    flight = std::make_shared<Flight>();
    flights_[loc.digest] = flight;
  }
  if (node_cache_ != nullptr) {
    if (ChunkData cached = FromNodeCache(loc, c)) {
      Complete(loc, flight, cached, false, c);
      return cached;
    }
  }
  Add(&FetchCounters::cache_misses, c);
  Result<ChunkData> res = FetchFromStore(loc, c);
  Complete(loc, flight, res, true, c);
  return res;
}

}  // namespace ferry::chunkstore
