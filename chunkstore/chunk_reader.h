// ChunkReader: the fetch path, from memory to the node cache to the object
// store, ending in verified chunk bytes; the fetch engine lives here.
//
// Read() returns the uncompressed bytes of a chunk only after they hashed to
// the chunk's address; a chunk that fails is kCorruption and is never served
// or cached. Recently used chunks are kept in a bounded in-memory cache; with
// a node cache (ferryd), a memory miss looks there (in the calling thread)
// before the store, and every chunk verified from the store is offered to it.
//
// Store requests are made by two pools of fetch threads (bounded
// parallelism, started as work arrives; demand up to fetch_threads,
// prefetch up to prefetch_threads): one for
// demand reads and one for prefetch, so that a demand read never waits for
// a thread behind prefetch. One chunk is in
// flight at most once however many callers wait for it (single flight), and
// neighbouring chunks of one pack are fetched with one range read.
// Chunks that fail verification (kCorruption) are fetched again under
// `retry` (backoff with jitter); transient store errors (kUnavailable,
// kDeadlineExceeded) are not: the store has already retried them
// (retry_policy.h says which layer retries what), and the reader passes
// them on. A caller waits at most `deadline` of the reader's clock and then
// gets kDeadlineExceeded (the fetch goes on, and its result is kept).
// Thread-safe; one reader may serve many images of one store.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "chunkstore/clock.h"
#include "chunkstore/node_cache.h"
#include "chunkstore/object_store.h"
#include "chunkstore/pack.h"
#include "chunkstore/retry_policy.h"

namespace ferry::chunkstore {

// What one caller's reads cost, for per-image statistics. A chunk is
// counted against the caller that caused its lookup or fetch.
struct FetchCounters {
  std::atomic<uint64_t> memory_hits{0};      // found in memory (or in flight)
  std::atomic<uint64_t> cache_hits{0};       // read from the node cache
  std::atomic<uint64_t> cache_hit_bytes{0};
  std::atomic<uint64_t> cache_misses{0};     // had to come from the store
  std::atomic<uint64_t> store_fetches{0};    // range reads sent to the store
  std::atomic<uint64_t> store_bytes{0};      // compressed bytes read from it
  std::atomic<uint64_t> corrupt{0};          // store chunks that failed verification
  std::atomic<uint64_t> demand_misses{0};    // chunks a read had to ask the store for itself
  std::atomic<uint64_t> retries{0};          // store requests the reader repeated (after corruption)
  std::atomic<uint64_t> deadlines{0};        // reads that gave up waiting
};
using CountersPtr = std::shared_ptr<FetchCounters>;

struct ChunkReaderStats {
  uint64_t fetches = 0;         // store reads
  uint64_t fetched_bytes = 0;   // compressed bytes read from the store
  uint64_t memory_hits = 0;
  uint64_t cache_hits = 0;      // chunks read from the node cache
  uint64_t corrupt = 0;         // chunks that failed verification
  uint64_t retries = 0;         // store requests repeated after corruption (a store's own
                                // retries of transient errors are not seen here)
  uint64_t deadlines = 0;       // reads that gave up waiting for the store
  uint64_t demand_requests = 0;    // queued for the fetch threads, demand
  uint64_t prefetch_requests = 0;  // and prefetch
};

// What the fetch pools hold at one moment, for tests that must know that
// a job is still queued, or that no more threads were started.
struct ChunkReaderQueues {
  size_t demand_queued = 0, prefetch_queued = 0;      // jobs no thread has taken
  unsigned demand_threads = 0, prefetch_threads = 0;  // threads started
  unsigned demand_idle = 0, prefetch_idle = 0;        // threads waiting for work
  unsigned running = 0;                               // jobs taken and not finished
};

// The prefetch settings of a reader, chosen once for its store. Each has a
// value for a local store (ObjectStore::IsLocal: file://, a disk on this
// machine) and one for a remote store (a round trip per request); ForStore
// is the one place they are chosen (a default-constructed one is no valid
// setting).
struct PrefetchSettings {
  // The prefetch pool's limit: fetch_threads for a remote store, half the
  // CPUs (at least one) for a local one. From a local disk a fetch costs no
  // round trip to hide, only disk time and the CPU to decompress and verify,
  // so prefetch in parallel only competes with the workload and with its
  // own demand reads: the python3 start-up of bench/run.sh from file:// on
  // 2 vCPUs took 0.36 s with 32 prefetch threads, 0.34 s with 2 and 0.31 s
  // with 1 (medians of 12 interleaved runs; native 0.21 s).
  unsigned threads = 0;
  // The longest prefetch run (one range read) the reader's users make:
  // 1 MiB from a remote store, where each request is a round trip, 256 KiB
  // from a local one, where a read that needs one chunk of a run in flight
  // waits for the whole run to be read, decompressed and verified
  // (bench/run.sh from file:// on 2 vCPUs, medians of 20 interleaved runs:
  // python3 start 0.341 -> 0.317 s; read-all, 4 runs: 1.97 -> 1.72 s).
  uint64_t run_bytes = 0;
  // The widest gap between chunks that the reader's users bridge to make
  // one range read of two runs (the gap's bytes are read and dropped):
  // 64 KiB from a remote store, where every request has a cost of its own
  // (s3rver answers about one request per 4 ms, one after another), 0 from
  // a local one. bench/coldstart.sh (b) at 20 ms / 100 MB/s, 7 interleaved
  // runs: 130 -> 98 requests, 0.99 -> 0.90 s, 16.8 -> 17.5 MB fetched.
  uint64_t gap_bytes = 0;
  // Prefetch jobs send their first store request in the order they were
  // queued (see next_send_), each at least this long after the one before:
  // 100 us from a remote store, 0 from a local one. A request goes out
  // microseconds after its turn, but the thread woken for the next turn
  // can preempt it on its CPU and send first: bench/coldstart.sh (c), with
  // the order but no gap, still had one of five 1.7 MB ranges of the
  // start-up pack sent after the two behind it in most runs.
  std::chrono::microseconds send_gap{0};

  // The settings above for a local or a remote store; `fetch_threads` is
  // the reader's demand limit (at least 1), which a remote store's prefetch
  // pool matches.
  static PrefetchSettings ForStore(bool local, unsigned fetch_threads);
};

struct ChunkReaderOptions {
  size_t memory_bytes = 256u << 20;  // bound of the in-memory cache
  ChunkCache* node_cache = nullptr;  // optional; outlives the reader
  unsigned fetch_threads = 8;        // store requests in parallel, per pool (0 is taken as 1)
  // Overrides of PrefetchSettings::ForStore for the reader's store (unset:
  // the store's value). An override of 0 prefetch threads is taken as 1.
  std::optional<unsigned> prefetch_threads;
  std::optional<uint64_t> prefetch_run_bytes;
  std::optional<uint64_t> prefetch_gap_bytes;
  std::optional<std::chrono::microseconds> prefetch_send_gap;
  std::chrono::milliseconds deadline{30000};  // longest wait for the store
  // Re-fetches of chunks (or ranges) that come back corrupt: tries per
  // request, the first included, and the pauses between them (25 ms
  // doubling, full jitter). Transient store errors are the store's to retry.
  RetryPolicy retry;
  Clock* clock = nullptr;  // deadlines, pauses and the send gap; null: DefaultClock()

  // The prefetch settings a reader of `store` uses: the store's, with each
  // override above that is set.
  PrefetchSettings PrefetchFor(const ObjectStore& store) const;
};

class ChunkReader {
 public:
  // `store` must outlive the reader.
  ChunkReader(ObjectStore* store, ChunkReaderOptions opt);
  ChunkReader(ObjectStore* store, size_t cache_bytes, ChunkCache* node_cache = nullptr);

  ~ChunkReader();

  // The limits and prefetch settings in effect (ChunkReaderOptions::PrefetchFor).
  unsigned fetch_threads() const { return opt_.fetch_threads; }
  const PrefetchSettings& prefetch_settings() const { return prefetch_; }
  unsigned prefetch_threads() const { return prefetch_.threads; }
  uint64_t prefetch_run_bytes() const { return prefetch_.run_bytes; }
  uint64_t prefetch_gap_bytes() const { return prefetch_.gap_bytes; }

  // `counters` (optional) are charged with what this call costs.
  Result<ChunkData> Read(const ChunkLocation& loc, const CountersPtr& counters = nullptr);
  // Like Read, but on a miss fetches `loc` together with `neighbours` (the
  // chunks that follow it in its pack, ascending) as one demand request:
  // one range read and one batched verification; the neighbours are cached.
  // Chunks the node cache holds are read from it, not the store.
  // `then`: runs to Prefetch once this read's own request is queued (so
  // that they never get ahead of it), or at once if it needs none.
  Result<ChunkData> ReadWithNeighbours(const ChunkLocation& loc,
                                       const std::vector<ChunkLocation>& neighbours,
                                       const CountersPtr& counters = nullptr,
                                       std::vector<std::vector<ChunkLocation>> then = {});
  // Starts fetching `run` in the background, after every queued demand
  // request: chunks of one pack in ascending offset order. Chunks cached or
  // already in flight are skipped; failures are dropped (a later Read
  // reports them). Fetch threads start on first use (so a reader may be
  // created before a fork).
  // Chunks the node cache holds are read from it, the rest from the store.
  // Hints are dropped while too many wait, unless `keep` (a profile).
  void Prefetch(std::vector<ChunkLocation> run, CountersPtr counters = nullptr, bool keep = false);
  // True if the chunk is in memory or being fetched.
  bool Present(const Digest& d) const;
  ChunkReaderStats stats() const;
  // Blocks until no job is queued or running in either pool (what was
  // queued before the call has been fetched or dropped), so that a test
  // can check that something was not fetched without sleeping. False if
  // that took longer than `limit` of real time.
  bool WaitIdle(std::chrono::milliseconds limit = std::chrono::seconds(20)) const;
  ChunkReaderQueues queues() const;

 private:
  struct Flight {
    bool hint = false;  // claimed by prefetch: a failure is not the reader's answer
    bool done = false;
    Status status;
    ChunkData data;
  };
  using Claimed = std::vector<std::pair<ChunkLocation, std::shared_ptr<Flight>>>;
  struct Job {
    std::vector<ChunkLocation> run;  // prefetch: claimed when the job starts
    Claimed claimed;                 // demand: claimed by the caller
    CountersPtr counters;
  };
  // A job's place in the order store requests go out in. A demand job
  // holds every prefetch job back until its first request is out
  // (demand_unsent_); a prefetch job sends its first request only after
  // every prefetch job taken before it has sent its own, or found it had
  // nothing to send (next_send_).
  struct Turn {
    bool pending = false;  // the first request has not gone out yet
    bool prefetch = false;
    uint64_t ticket = 0;   // prefetch: the order it was taken in
  };

  // Waits for a flight, at most the deadline.
  Result<ChunkData> Wait(const ChunkLocation& loc, const std::shared_ptr<Flight>& flight);
  // Waits for someone else's flight. If it was prefetch and failed (it may
  // have read another copy of the chunk: a start-up pack that is missing or
  // damaged), reads `loc` itself instead: a hint never fails a read.
  Result<ChunkData> WaitOther(const ChunkLocation& loc, const std::shared_ptr<Flight>& flight,
                              const CountersPtr& counters);
  void Enqueue(Job job, bool demand, bool keep = false);
  void FetchLoop(bool prefetch);
  // Starts another thread for a pool if its queue needs one (mu_ held).
  void Grow(bool prefetch);
  // Fetches claimed chunks from the store with one range read (retried),
  // each verified; completes every flight. `turn`: the job's place in the
  // order of store requests (Turn).
  // `hint` (prefetch): a range that fails or a chunk that does not verify
  // fails its flights at once, not after reading each chunk again on its
  // own; whoever waits for them reads them itself (WaitOther).
  void FetchClaimed(Claimed mine, FetchCounters* c, Turn* turn, bool hint = false);
  // One chunk from the store, verified, with retries; `turn` as above.
  Result<ChunkData> FetchFromStore(const ChunkLocation& loc, FetchCounters* c, Turn* turn);
  // Called right before each store request of a job (`sends`), and once
  // when the job is done. Only the first call acts: a demand job lets
  // prefetch go; a prefetch job that sends waits for its turn, and either
  // passes the turn on (at shutdown the order no longer matters). False
  // if the request must not be sent: a prefetch job's once the reader is
  // stopping (every call answers that, not only the first).
  bool Sending(Turn* turn, bool sends = true);
  // Runs `op` again while it fails with kCorruption, under opt_.retry.
  Status WithRetries(const std::function<Status()>& op, FetchCounters* c);
  // The node cache's copy, or null (counted as a hit or a miss).
  ChunkData FromNodeCache(const ChunkLocation& loc, FetchCounters* c);
  void Insert(const Digest& d, const ChunkData& data);
  // Publishes a flight's result; `from_store` results go to the node cache.
  void Complete(const ChunkLocation& loc, const std::shared_ptr<Flight>& flight,
                const Result<ChunkData>& res, bool from_store, FetchCounters* c);

  ObjectStore* store_;
  const ChunkReaderOptions opt_;
  const PrefetchSettings prefetch_;
  ChunkCache* node_cache_;
  Clock* const clock_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;  // a flight completed
  std::list<std::pair<Digest, ChunkData>> lru_;  // most recent first
  std::unordered_map<Digest, std::list<std::pair<Digest, ChunkData>>::iterator, DigestHash> map_;
  std::unordered_map<Digest, std::shared_ptr<Flight>, DigestHash> flights_;
  size_t cached_bytes_ = 0;
  ChunkReaderStats stats_;
  std::deque<Job> demand_queue_, prefetch_queue_;
  // Demand jobs queued or taken whose first store request has not gone out
  // yet. While there are any, no prefetch job starts: a store that answers
  // requests in the order they arrive (s3rver, a busy link, a throttled
  // bucket) then answers the demand request first. Without this, the
  // burst a program's first read queues (its libraries, the rest of it)
  // reached the store before the read itself: bench/coldstart.sh (b) at
  // 20 ms, the first read of python3 took 173 ms, its request 28th of 28.
  unsigned demand_unsent_ = 0;
  // Prefetch jobs send their first store request in the order they were
  // taken (tickets from next_ticket_; next_send_ is the first that has not
  // sent; sent_early_ holds later ones that are done with their turn: they
  // had nothing to send). A
  // start-up profile's reads are queued in the order the workload needs
  // them, and a store that answers in arrival order (one busy link) must
  // see them in that order. Without this the threads raced: in
  // bench/coldstart.sh (c) at 20 ms / 100 MB/s, python3's first chunk,
  // queued first, went out after 1.7 MB ranges queued behind it and came
  // 90 ms late.
  uint64_t next_ticket_ = 0, next_send_ = 0;
  std::set<uint64_t> sent_early_;
  std::condition_variable send_cv_;  // next_send_ moved
  Clock::TimePoint last_send_{};  // the last turn taken
  struct Pool {
    unsigned threads = 0;  // started
    unsigned idle = 0;     // waiting for work
  };
  std::vector<std::thread> threads_;  // both pools
  Pool demand_pool_, prefetch_pool_;
  std::condition_variable demand_cv_, prefetch_cv_;  // work queued
  unsigned running_ = 0;  // jobs taken by a fetch thread and not finished
  mutable std::condition_variable idle_cv_;  // a job finished
  bool stopping_ = false;
};

}  // namespace ferry::chunkstore
