#include "chunkstore/chunk_reader.h"

namespace ferry::chunkstore {

ChunkReader::ChunkReader(ObjectStore* store, size_t cache_bytes)
    : store_(store), cache_bytes_(cache_bytes) {}

namespace {
constexpr size_t kPrefetchThreads = 2;
constexpr size_t kMaxQueuedRuns = 256;  // beyond this, prefetch hints are dropped
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

void ChunkReader::Prefetch(std::vector<ChunkLocation> run) {
  if (run.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || prefetch_queue_.size() >= kMaxQueuedRuns) return;
  if (prefetch_threads_.empty()) {
    for (size_t i = 0; i < kPrefetchThreads; ++i) {
      prefetch_threads_.emplace_back([this] { PrefetchLoop(); });
    }
  }
  prefetch_queue_.push_back(std::move(run));
  prefetch_cv_.notify_one();
}

void ChunkReader::PrefetchLoop() {
  for (;;) {
    std::vector<ChunkLocation> run;
    {
      std::unique_lock<std::mutex> lock(mu_);
      prefetch_cv_.wait(lock, [&] { return stopping_ || !prefetch_queue_.empty(); });
      if (stopping_) return;
      run = std::move(prefetch_queue_.front());
      prefetch_queue_.pop_front();
    }
    FetchRun(run);
  }
}

// Claims the chunks of `run` nobody has or fetches, reads the span that
// covers them with one range read, then verifies and publishes each.
void ChunkReader::FetchRun(const std::vector<ChunkLocation>& run) {
  std::vector<std::pair<ChunkLocation, std::shared_ptr<Flight>>> mine;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const ChunkLocation& loc : run) {
      if (map_.count(loc.digest) || flights_.count(loc.digest)) continue;
      auto flight = std::make_shared<Flight>();
      flights_[loc.digest] = flight;
      mine.emplace_back(loc, flight);
    }
  }
  if (mine.empty()) return;
  uint64_t begin = mine.front().first.offset;
  uint64_t end = mine.back().first.offset + mine.back().first.clen;
  std::vector<uint8_t> span;
  Status st;
  if (end > begin && end - begin <= (16u << 20)) {
    span.resize(end - begin);
    st = store_->GetRange(PackKey(mine.front().first.pack), begin, span);
  } else {
    st = InvalidArgumentError("prefetch run is not ascending");
  }
  for (auto& [loc, flight] : mine) {
    if (!st.ok()) {
      // The span could not be read as a whole (a neighbour's range may be
      // what is wrong): fetch each chunk on its own, so that one bad chunk
      // fails only the reads that need it.
      Complete(loc, flight, Fetch(loc));
      continue;
    }
    Result<ChunkData> res = st;
    {
      auto data = std::make_shared<std::vector<uint8_t>>();
      Status v = DecompressAndVerify(
          std::span<const uint8_t>(span).subspan(loc.offset - begin, loc.clen), loc.ulen,
          loc.digest, data.get());
      res = v.ok() ? Result<ChunkData>(ChunkData(std::move(data)))
                   : Result<ChunkData>(v.Annotate("pack " + loc.pack.Hex() + " offset " +
                                                  std::to_string(loc.offset)));
    }
    Complete(loc, flight, res);
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.fetches;
  stats_.fetched_bytes += span.size();
}

void ChunkReader::Complete(const ChunkLocation& loc, const std::shared_ptr<Flight>& flight,
                           const Result<ChunkData>& res) {
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

Result<ChunkData> ChunkReader::Fetch(const ChunkLocation& loc) {
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

Result<ChunkData> ChunkReader::Read(const ChunkLocation& loc) {
  std::shared_ptr<Flight> flight;
  bool leader = false;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = map_.find(loc.digest);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++stats_.memory_hits;
      return it->second->second;
    }
    auto fit = flights_.find(loc.digest);
    if (fit != flights_.end()) {
      flight = fit->second;
    } else {
      flight = std::make_shared<Flight>();
      flights_[loc.digest] = flight;
      leader = true;
    }
    if (!leader) {
      cv_.wait(lock, [&] { return flight->done; });
      if (!flight->status.ok()) return flight->status;
      return flight->data;
    }
  }
  Result<ChunkData> res = Fetch(loc);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.fetches;
    stats_.fetched_bytes += loc.clen;
  }
  Complete(loc, flight, res);
  return res;
}

}  // namespace ferry::chunkstore
