#include "chunkstore/chunk_reader.h"

#include "chunkstore/sha256_mb.h"

namespace ferry::chunkstore {

namespace {
constexpr size_t kMaxQueuedPrefetch = 256;  // beyond this, prefetch hints are dropped
constexpr uint64_t kMaxSpanBytes = 16u << 20;

void Add(std::atomic<uint64_t> FetchCounters::*field, FetchCounters* c, uint64_t n = 1) {
  if (c != nullptr) (c->*field) += n;
}

// The options with the demand limit made valid.
ChunkReaderOptions Checked(ChunkReaderOptions opt) {
  opt.fetch_threads = std::max(1u, opt.fetch_threads);
  return opt;
}

}  // namespace

PrefetchSettings PrefetchSettings::ForStore(bool local, unsigned fetch_threads) {
  PrefetchSettings s;
  s.threads = local ? std::max(1u, std::thread::hardware_concurrency() / 2) : std::max(1u, fetch_threads);
  s.run_bytes = local ? 256u << 10 : 1u << 20;
  s.gap_bytes = local ? 0 : 64u << 10;
  s.send_gap = std::chrono::microseconds(local ? 0 : 100);
  return s;
}

PrefetchSettings ChunkReaderOptions::PrefetchFor(const ObjectStore& store) const {
  PrefetchSettings s = PrefetchSettings::ForStore(store.IsLocal(), fetch_threads);
  // A pool of no threads would never run the prefetch queued for it.
  if (prefetch_threads.has_value()) s.threads = std::max(1u, *prefetch_threads);
  if (prefetch_run_bytes.has_value()) s.run_bytes = *prefetch_run_bytes;
  if (prefetch_gap_bytes.has_value()) s.gap_bytes = *prefetch_gap_bytes;
  if (prefetch_send_gap.has_value()) s.send_gap = *prefetch_send_gap;
  return s;
}

ChunkReader::ChunkReader(ObjectStore* store, ChunkReaderOptions opt)
    : store_(store),
      opt_(Checked(opt)),
      prefetch_(opt_.PrefetchFor(*store)),
      node_cache_(opt.node_cache),
      clock_(opt.clock != nullptr ? opt.clock : DefaultClock()) {}

ChunkReader::ChunkReader(ObjectStore* store, size_t cache_bytes, ChunkCache* node_cache)
    : ChunkReader(store, [&] {
        ChunkReaderOptions o;
        o.memory_bytes = cache_bytes;
        o.node_cache = node_cache;
        return o;
      }()) {}

ChunkReader::~ChunkReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  demand_cv_.notify_all();
  prefetch_cv_.notify_all();
  send_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

bool ChunkReader::Present(const Digest& d) const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.count(d) > 0 || flights_.count(d) > 0;
}

ChunkReaderStats ChunkReader::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

ChunkReaderQueues ChunkReader::queues() const {
  std::lock_guard<std::mutex> lock(mu_);
  ChunkReaderQueues q;
  q.demand_queued = demand_queue_.size();
  q.prefetch_queued = prefetch_queue_.size();
  q.demand_threads = demand_pool_.threads;
  q.prefetch_threads = prefetch_pool_.threads;
  q.demand_idle = demand_pool_.idle;
  q.prefetch_idle = prefetch_pool_.idle;
  q.running = running_;
  return q;
}

bool ChunkReader::WaitIdle(std::chrono::milliseconds limit) const {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_cv_.wait_for(lock, limit, [&] {
    return demand_queue_.empty() && prefetch_queue_.empty() && running_ == 0;
  });
}

Result<ChunkData> ChunkReader::Read(const ChunkLocation& loc, const CountersPtr& counters) {
  return ReadWithNeighbours(loc, {}, counters);
}

Result<ChunkData> ChunkReader::ReadWithNeighbours(const ChunkLocation& loc,
                                                  const std::vector<ChunkLocation>& neighbours,
                                                  const CountersPtr& counters,
                                                  std::vector<std::vector<ChunkLocation>> then) {
  FetchCounters* c = counters.get();
  // Queued once this read's own request is (or need not be), never before.
  auto queue_then = [&] {
    for (auto& run : then) Prefetch(std::move(run), counters);
    then.clear();
  };
  std::shared_ptr<Flight> flight;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = map_.find(loc.digest);
    if (it != map_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++stats_.memory_hits;
      Add(&FetchCounters::memory_hits, c);
      ChunkData data = it->second->second;
      lock.unlock();
      queue_then();
      return data;
    }
    auto fit = flights_.find(loc.digest);
    if (fit != flights_.end()) flight = fit->second;
  }
  if (flight != nullptr) {
    Add(&FetchCounters::memory_hits, c);
    queue_then();
    return WaitOther(loc, flight, counters);
  }
  // The node cache is local disk: read it here, without a queue.
  if (node_cache_ != nullptr) {
    if (ChunkData cached = FromNodeCache(loc, c)) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        Insert(loc.digest, cached);
      }
      queue_then();
      return cached;
    }
  }
  // A demand request for `loc` and the neighbours nobody has: neighbours
  // the node cache holds end the run, so one range read never refetches them.
  Job job;
  job.counters = counters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.count(loc.digest) == 0) {
      auto fit = flights_.find(loc.digest);
      if (fit != flights_.end()) {
        flight = fit->second;
      } else {
        flight = std::make_shared<Flight>();
        flights_[loc.digest] = flight;
        job.claimed.emplace_back(loc, flight);
      }
    }
    for (const ChunkLocation& n : neighbours) {
      if (job.claimed.empty() || map_.count(n.digest) || flights_.count(n.digest)) break;
      if (node_cache_ != nullptr && node_cache_->Contains(n.digest)) break;
      auto f = std::make_shared<Flight>();
      flights_[n.digest] = f;
      job.claimed.emplace_back(n, f);
    }
  }
  if (flight == nullptr) return ReadWithNeighbours(loc, {}, counters, std::move(then));  // arrived meanwhile
  if (job.claimed.empty()) {  // someone else's flight
    queue_then();
    return WaitOther(loc, flight, counters);
  }
  Add(&FetchCounters::demand_misses, c);
  Enqueue(std::move(job), /*demand=*/true);
  queue_then();
  return Wait(loc, flight);
}

Result<ChunkData> ChunkReader::WaitOther(const ChunkLocation& loc,
                                         const std::shared_ptr<Flight>& flight,
                                         const CountersPtr& counters) {
  auto res = Wait(loc, flight);
  if (res.ok() || !flight->hint || res.status().code() == StatusCode::kDeadlineExceeded) return res;
  // The failed flight is gone from flights_: read it as if for the first time.
  return ReadWithNeighbours(loc, {}, counters);
}

Result<ChunkData> ChunkReader::Wait(const ChunkLocation& loc, const std::shared_ptr<Flight>& flight) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!clock_->WaitUntil(cv_, lock, clock_->Now() + opt_.deadline, [&] { return flight->done; })) {
    ++stats_.deadlines;
    return Status(StatusCode::kDeadlineExceeded,
                  "chunk " + loc.digest.Hex() + " (pack " + loc.pack.Hex() + "): no answer from " +
                      store_->Url() + " within " + std::to_string(opt_.deadline.count()) + " ms");
  }
  if (!flight->status.ok()) return flight->status;
  return flight->data;
}

void ChunkReader::Prefetch(std::vector<ChunkLocation> run, CountersPtr counters, bool keep) {
  if (run.empty()) return;
  Job job;
  job.run = std::move(run);
  job.counters = std::move(counters);
  Enqueue(std::move(job), /*demand=*/false, keep);
}

void ChunkReader::Enqueue(Job job, bool demand, bool keep) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) {
    for (auto& [loc, flight] : job.claimed) {
      flight->done = true;
      flight->status = UnavailableError("chunk reader is shutting down");
      flights_.erase(loc.digest);
    }
    cv_.notify_all();
    return;
  }
  if (!demand && !keep && prefetch_queue_.size() >= kMaxQueuedPrefetch) return;
  if (demand) ++demand_unsent_;
  (demand ? demand_queue_ : prefetch_queue_).push_back(std::move(job));
  ++(demand ? stats_.demand_requests : stats_.prefetch_requests);
  // A demand reader starts a thread if its request needs one. Prefetch
  // that finds its pool busy starts one only for the first job waiting:
  // that thread, on taking it, starts threads for the rest of the burst
  // (Grow), so a reader queueing a burst of prefetch does not spend its
  // time creating threads before it can wait for its own read.
  if (demand || prefetch_queue_.size() == 1) Grow(!demand);
  (demand ? demand_cv_ : prefetch_cv_).notify_one();
}

// A pool grows by as many threads as more of its work waits than it has
// idle threads (woken ones count until they take a job), up to
// its limit: the first request starts at once, not after a whole pool
// has been created (32 threads took 10-40 ms of a first read on 2 vCPUs).
void ChunkReader::Grow(bool prefetch) {
  Pool& pool = prefetch ? prefetch_pool_ : demand_pool_;
  size_t waiting = (prefetch ? prefetch_queue_ : demand_queue_).size();
  const unsigned limit = prefetch ? prefetch_.threads : opt_.fetch_threads;
  while (!stopping_ && waiting > pool.idle && pool.threads < limit) {
    ++pool.threads;
    --waiting;
    threads_.emplace_back([this, prefetch] { FetchLoop(prefetch); });
  }
}

void ChunkReader::FetchLoop(bool prefetch) {
  Pool& pool = prefetch ? prefetch_pool_ : demand_pool_;
  for (;;) {
    Job job;
    Turn turn;
    turn.pending = true;
    turn.prefetch = prefetch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++pool.idle;
      (prefetch ? prefetch_cv_ : demand_cv_).wait(lock, [&] {
        if (stopping_) return true;
        return prefetch ? !prefetch_queue_.empty() && demand_unsent_ == 0 : !demand_queue_.empty();
      });
      --pool.idle;
      // Demand requests queued at shutdown are still taken (their fetch
      // gives up after one attempt); queued prefetch is dropped.
      if (!prefetch) {
        if (demand_queue_.empty()) return;
        job = std::move(demand_queue_.front());
        demand_queue_.pop_front();
        ++running_;
        Grow(false);
      } else {
        if (stopping_) return;
        job = std::move(prefetch_queue_.front());
        prefetch_queue_.pop_front();
        ++running_;
        turn.ticket = next_ticket_++;
        Grow(true);
        for (const ChunkLocation& loc : job.run) {  // claim what is still missing
          if (map_.count(loc.digest) || flights_.count(loc.digest)) continue;
          auto flight = std::make_shared<Flight>();
          flight->hint = true;
          flights_[loc.digest] = flight;
          job.claimed.emplace_back(loc, flight);
        }
      }
    }
    FetchCounters* c = job.counters.get();
    // A demand request's chunks were looked up in the node cache by the
    // reader that claimed them; a prefetch's are looked up here.
    if (prefetch && node_cache_ != nullptr) {
      Claimed missing;
      for (auto& [loc, flight] : job.claimed) {
        if (ChunkData cached = FromNodeCache(loc, c)) {
          Complete(loc, flight, cached, false, c);
        } else {
          missing.emplace_back(loc, flight);
        }
      }
      job.claimed = std::move(missing);
    }
    if (!job.claimed.empty()) FetchClaimed(std::move(job.claimed), c, &turn, prefetch);
    Sending(&turn, /*sends=*/false);  // a job that sent nothing lets the others go
    {
      std::lock_guard<std::mutex> lock(mu_);
      --running_;
    }
    idle_cv_.notify_all();
  }
}

// Only corruption is tried again here: a transient error has already been
// retried by the store (retry_policy.h), and repeating it would multiply
// the store's attempts by ours.
Status ChunkReader::WithRetries(const std::function<Status()>& op, FetchCounters* c) {
  RetryHooks hooks;
  hooks.retryable = [](const Status& st) { return st.code() == StatusCode::kCorruption; };
  hooks.before_retry = [&] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return false;
      ++stats_.retries;
    }
    Add(&FetchCounters::retries, c);
    return true;
  };
  return RunWithRetries(opt_.retry, *clock_, op, hooks);
}

bool ChunkReader::Sending(Turn* turn, bool sends) {
  std::unique_lock<std::mutex> lock(mu_);
  // Prefetch sends nothing more once the reader is stopping: its range
  // reads (up to kMaxSpanBytes each, one per thread) would hold up the end.
  const bool go = !turn->prefetch || !stopping_;
  if (!turn->pending) return go;
  turn->pending = false;
  if (!turn->prefetch) {
    if (--demand_unsent_ == 0) prefetch_cv_.notify_all();
    return true;
  }
  // A job that sends nothing passes its turn on at once, without waiting.
  if (sends) {
    send_cv_.wait(lock, [&] { return stopping_ || next_send_ == turn->ticket; });
    if (prefetch_.send_gap.count() > 0) {
      clock_->WaitUntil(send_cv_, lock, last_send_ + prefetch_.send_gap, [&] { return stopping_; });
      last_send_ = clock_->Now();
    }
  }
  if (next_send_ != turn->ticket) {
    sent_early_.insert(turn->ticket);
    return !stopping_;
  }
  ++next_send_;
  while (!sent_early_.empty() && *sent_early_.begin() == next_send_) {
    sent_early_.erase(sent_early_.begin());
    ++next_send_;
  }
  send_cv_.notify_all();
  return !stopping_;
}

void ChunkReader::FetchClaimed(Claimed mine, FetchCounters* c, Turn* turn, bool hint) {
  Add(&FetchCounters::cache_misses, c, mine.size());
  uint64_t begin = mine.front().first.offset;
  uint64_t end = mine.back().first.offset + mine.back().first.clen;
  bool one_span = mine.size() > 1 && end > begin && end - begin <= kMaxSpanBytes;
  for (size_t i = 1; one_span && i < mine.size(); ++i) {
    const ChunkLocation& prev = mine[i - 1].first;
    one_span = mine[i].first.offset >= prev.offset + prev.clen &&
               mine[i].first.pack == mine.front().first.pack &&
               mine[i].first.startup == mine.front().first.startup;
  }
  // Not zero-filled first: the store overwrites every byte.
  std::unique_ptr<uint8_t[]> span_bytes;
  std::span<uint8_t> span;
  Status st = one_span ? Status::Ok() : InvalidArgumentError("not one span");
  if (one_span) {
    span_bytes = std::make_unique_for_overwrite<uint8_t[]>(end - begin);
    span = {span_bytes.get(), static_cast<size_t>(end - begin)};
    st = WithRetries([&] {
      Add(&FetchCounters::store_fetches, c);
      Add(&FetchCounters::store_bytes, c, span.size());
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.fetches;
        stats_.fetched_bytes += span.size();
      }
      if (!Sending(turn)) return UnavailableError("chunk reader is shutting down");
      return store_->GetRange(PackObjectKey(mine.front().first), begin, span);
    }, c);
  }
  if (!st.ok()) {
    if (hint && one_span) {
      for (auto& [loc, flight] : mine) Complete(loc, flight, st, false, c);
      return;
    }
    // Not one span, or it could not be read as a whole (a neighbour's range
    // may be what is wrong): each chunk on its own, so that one bad chunk
    // fails only the reads that need it.
    for (auto& [loc, flight] : mine) Complete(loc, flight, FetchFromStore(loc, c, turn), true, c);
    return;
  }
  // The chunks are decompressed, verified and published in order, a group
  // at a time, so that a reader waiting for the first of them does not
  // wait for the whole range: a 4 MiB range took 20-30 ms to decompress
  // and verify while python3 started beside it (bench/coldstart.sh (c)).
  // A group is as many chunks as the SHA-256 kernel hashes side by side:
  // one with SHA-NI, where OpenSSL hashes one message as fast as the
  // multi-buffer kernels hash several.
  static const size_t kGroup = Sha256ManyLanes();
  std::vector<std::shared_ptr<std::vector<uint8_t>>> data(kGroup);
  std::vector<Status> status(kGroup);
  std::vector<std::span<const uint8_t>> msgs;
  std::vector<size_t> which;
  std::vector<std::array<uint8_t, 32>> digests;
  for (size_t g = 0; g < mine.size(); g += kGroup) {
    const size_t n = std::min(kGroup, mine.size() - g);
    msgs.clear();
    which.clear();
    for (size_t k = 0; k < n; ++k) {
      const ChunkLocation& loc = mine[g + k].first;
      data[k] = std::make_shared<std::vector<uint8_t>>();
      status[k] = DecompressFrame(span.subspan(loc.offset - begin, loc.clen), loc.ulen,
                                  loc.digest, data[k].get());
      if (status[k].ok()) {
        msgs.emplace_back(*data[k]);
        which.push_back(k);
      }
    }
    digests.resize(msgs.size());
    Sha256Many(msgs, digests);
    for (size_t m = 0; m < which.size(); ++m) {
      if (digests[m] != mine[g + which[m]].first.digest.bytes) {
        status[which[m]] = CorruptionError("contents do not match digest");
      }
    }
    for (size_t k = 0; k < n; ++k) {
      const ChunkLocation& loc = mine[g + k].first;
      if (status[k].ok()) {
        Complete(loc, mine[g + k].second, ChunkData(std::move(data[k])), true, c);
        continue;
      }
      // A chunk that failed in the span is fetched again on its own (a hint
      // leaves that to whoever needs it).
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.corrupt;
      }
      Add(&FetchCounters::corrupt, c);
      Complete(loc, mine[g + k].second,
               hint ? Result<ChunkData>(status[k].Annotate("chunk " + loc.digest.Hex() + " (pack " +
                                                           loc.pack.Hex() + ")"))
                    : FetchFromStore(loc, c, turn),
               true, c);
    }
  }
}

Result<ChunkData> ChunkReader::FetchFromStore(const ChunkLocation& loc, FetchCounters* c, Turn* turn) {
  auto data = std::make_shared<std::vector<uint8_t>>();
  Status st = WithRetries([&] {
    Add(&FetchCounters::store_fetches, c);
    Add(&FetchCounters::store_bytes, c, loc.clen);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.fetches;
      stats_.fetched_bytes += loc.clen;
    }
    auto frame = std::make_unique_for_overwrite<uint8_t[]>(loc.clen);
    if (!Sending(turn)) return UnavailableError("chunk reader is shutting down");
    RETURN_IF_ERROR(store_->GetRange(PackObjectKey(loc), loc.offset, {frame.get(), loc.clen}));
    Status v = DecompressAndVerify({frame.get(), loc.clen}, loc.ulen, loc.digest, data.get());
    if (v.code() == StatusCode::kCorruption) {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.corrupt;
      Add(&FetchCounters::corrupt, c);
    }
    return v;
  }, c);
  if (!st.ok()) {
    return st.Annotate("chunk " + loc.digest.Hex() + " (pack " + loc.pack.Hex() + " offset " +
                       std::to_string(loc.offset) + ")");
  }
  return ChunkData(std::move(data));
}

void ChunkReader::Complete(const ChunkLocation& loc, const std::shared_ptr<Flight>& flight,
                           const Result<ChunkData>& res, bool from_store, FetchCounters*) {
  if (res.ok() && from_store && node_cache_ != nullptr) node_cache_->Put(loc.digest, *res);
  std::lock_guard<std::mutex> lock(mu_);
  flight->done = true;
  if (res.ok()) {
    flight->data = *res;
    Insert(loc.digest, *res);
  } else {
    flight->status = res.status();
  }
  flights_.erase(loc.digest);
  cv_.notify_all();
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

void ChunkReader::Insert(const Digest& d, const ChunkData& data) {
  if (data->size() > opt_.memory_bytes || map_.count(d)) return;
  lru_.emplace_front(d, data);
  map_[d] = lru_.begin();
  cached_bytes_ += data->size();
  while (cached_bytes_ > opt_.memory_bytes) {
    cached_bytes_ -= lru_.back().second->size();
    map_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

}  // namespace ferry::chunkstore
