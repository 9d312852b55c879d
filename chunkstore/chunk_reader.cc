#include "chunkstore/chunk_reader.h"

namespace ferry::chunkstore {

ChunkReader::ChunkReader(ObjectStore* store, size_t cache_bytes)
    : store_(store), cache_bytes_(cache_bytes) {}

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
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.fetches;
  stats_.fetched_bytes += loc.clen;
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
  return res;
}

}  // namespace ferry::chunkstore
