// Unit tests for the chunk reader (the fetch engine): single flight, range
// reads, verification, the node cache, retries and deadlines on a clock the
// test drives, and the order and parallelism of demand and prefetch.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "chunkstore/chunk_reader.h"
#include "chunkstore/clock.h"
#include "chunkstore/store_factory.h"
#include "chunkstore/test_stores.h"

namespace ferry::chunkstore {
namespace {

using testing::Random;

TEST_CASE("chunk reader: concurrent readers of one chunk share one store read") {
  TempStore t;
  auto locs = WritePack(*t.store, {Random(100000, 7)});
  CountingStore counting(t.store.get());
  counting.delay_ms = 50;
  ChunkReader reader(&counting, 1 << 20);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto data = reader.Read(locs[0]);
      if (data.ok() && Sha256(**data) == locs[0].digest) ++ok;
    });
  }
  for (auto& th : threads) th.join();
  CHECK(ok == 8);
  CHECK(counting.range_reads == 1);
  CHECK(reader.Read(locs[0]).ok());  // from memory now
  CHECK(counting.range_reads == 1);
}

TEST_CASE("chunk reader: corrupt bytes from the store are never returned") {
  TempStore t;
  auto locs = WritePack(*t.store, {Random(50000, 9)});
  CountingStore counting(t.store.get());
  counting.flip_bit = true;
  ChunkReader reader(&counting, 1 << 20);
  auto data = reader.Read(locs[0]);
  REQUIRE_FALSE(data.ok());
  CHECK(data.status().code() == StatusCode::kCorruption);
  CHECK(data.status().message().find(locs[0].digest.Hex()) != std::string::npos);
  const int attempts = ChunkReaderOptions{}.retry.max_attempts;
  CHECK(reader.stats().corrupt == attempts);  // each attempt verified and refused
  CHECK(counting.range_reads == attempts);
  counting.flip_bit = false;  // not cached: the next read fetches again
  CHECK(reader.Read(locs[0]).ok());
  CHECK(counting.range_reads == attempts + 1);
}

TEST_CASE("chunk reader: prefetch reads a run with one range read; a bad neighbour fails alone") {
  TempStore t;
  auto locs = WritePack(*t.store, {Random(40000, 1), Random(50000, 2), Random(60000, 3)});
  CountingStore counting(t.store.get());
  {
    ChunkReader reader(&counting, 8 << 20);
    reader.Prefetch(locs);
    // Prefetch is asynchronous: wait for the run to land (bounded).
    for (int i = 0; i < 500 && reader.stats().fetches == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (const auto& loc : locs) {
      auto data = reader.Read(loc);
      REQUIRE(data.ok());
      CHECK(Sha256(**data) == loc.digest);
    }
    CHECK(counting.range_reads == 1);
    CHECK(reader.stats().fetches == 1);
  }
  counting.range_reads = 0;
  {
    ChunkReader reader(&counting, 8 << 20);
    auto run = locs;
    run[2].offset += 1 << 20;  // points past the end of the pack
    reader.Prefetch(run);
    // Whichever way the run went, the good chunks read correctly and the
    // bad one fails with corruption (a range past the end of the object).
    CHECK(reader.Read(locs[0]).ok());
    CHECK(reader.Read(locs[1]).ok());
    CHECK(reader.Read(run[2]).status().code() == StatusCode::kCorruption);
  }
}

TEST_CASE("chunk reader over a node cache: one store read per chunk, then the cache") {
  TempStore t;
  auto locs = WritePack(*t.store, {Random(70000, 11), Random(80000, 12), Random(90000, 13)});
  CountingStore counting(t.store.get());
  counting.delay_ms = 30;
  auto cache = NewMemoryChunkCache(64 << 20);
  auto counters = std::make_shared<FetchCounters>();
  {
    ChunkReader reader(&counting, 1 << 20, cache.get());
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&] {
        auto data = reader.ReadWithNeighbours(locs[0], {locs[1], locs[2]}, counters);
        if (data.ok() && Sha256(**data) == locs[0].digest) ++ok;
      });
    }
    for (auto& th : threads) th.join();
    CHECK(ok == 8);
    CHECK(counting.range_reads == 1);  // eight concurrent misses, one run, one read
    CHECK(counters->store_fetches == 1);
    CHECK(counters->cache_misses == 3);
  }
  REQUIRE(cache->Flush().ok());
  CHECK(cache->Stats().chunks == 3);  // every verified chunk was admitted
  // A new reader (a remount) finds them all in the node cache.
  ChunkReader reader(&counting, 1 << 20, cache.get());
  auto later = std::make_shared<FetchCounters>();
  for (const auto& loc : locs) {
    auto data = reader.ReadWithNeighbours(loc, {}, later);
    REQUIRE(data.ok());
    CHECK(Sha256(**data) == loc.digest);
  }
  CHECK(counting.range_reads == 1);
  CHECK(later->cache_hits == 3);
  CHECK(later->store_bytes == 0);
  reader.Prefetch(locs, later);  // all cached: prefetch asks the store nothing
  REQUIRE(reader.WaitIdle());
  CHECK(reader.stats().prefetch_requests == 1);  // the job was queued and done
  CHECK(counting.range_reads == 1);
}

TEST_CASE("chunk reader over a node cache: corrupt store bytes are neither served nor admitted") {
  TempStore t;
  auto locs = WritePack(*t.store, {Random(50000, 21)});
  CountingStore counting(t.store.get());
  counting.flip_bit = true;
  auto cache = NewMemoryChunkCache(64 << 20);
  auto counters = std::make_shared<FetchCounters>();
  ChunkReader reader(&counting, 1 << 20, cache.get());
  CHECK(reader.Read(locs[0], counters).status().code() == StatusCode::kCorruption);
  REQUIRE(cache->Flush().ok());
  CHECK_FALSE(cache->Contains(locs[0].digest));
  CHECK(counters->corrupt == ChunkReaderOptions{}.retry.max_attempts);
}

TEST_CASE("fetch engine: transient store errors are the store's to retry; the reader passes them on") {
  TempStore t;
  auto locs = WritePack(*t.store, {Random(30000, 31)});
  CountingStore counting(t.store.get());
  ChunkReader reader(&counting, 1 << 20);
  counting.fail_next = 1;
  auto c = std::make_shared<FetchCounters>();
  // One layer retries: a kUnavailable that reaches the reader is the
  // store's final answer (its retries are spent), sent once.
  CHECK(reader.Read(locs[0], c).status().code() == StatusCode::kUnavailable);
  CHECK(c->retries == 0);
  CHECK(counting.range_reads == 1);
  auto data = reader.Read(locs[0], c);  // not cached as a failure
  REQUIRE(data.ok());
  CHECK(Sha256(**data) == locs[0].digest);
  CHECK(counting.range_reads == 2);
  // A pack the store does not have is not worth asking again.
  ChunkLocation missing = locs[0];
  missing.pack = Sha256(std::string("no such pack"));
  missing.digest = Sha256(std::string("no such chunk"));
  auto r = reader.Read(missing);
  CHECK(r.status().code() == StatusCode::kNotFound);
  CHECK(counting.range_reads == 3);
}

TEST_CASE("fetch engine: over a failing fault store, reads are byte-exact: the store retries") {
  TempStore t;
  auto locs = RandomPack(*t.store, 20, 20000, 900);
  auto store = OpenObjectStore("fault+file://" + t.root + "?fail=0.2&seed=5");
  REQUIRE(store.ok());
  ChunkReader reader(store->get(), 8 << 20);
  for (const auto& loc : locs) {
    auto data = reader.Read(loc);
    REQUIRE(data.ok());
    CHECK(Sha256(**data) == loc.digest);
  }
  CHECK(reader.stats().retries == 0);  // none were the reader's
}

TEST_CASE("fetch engine: a read gives up exactly when the reader's clock reaches the deadline") {
  TempStore t;
  auto locs = WritePack(*t.store, {Random(30000, 42)});
  CountingStore counting(t.store.get());
  ManualClock clock;
  ChunkReaderOptions o;
  o.deadline = std::chrono::milliseconds(100);
  o.clock = &clock;
  ChunkReader reader(&counting, o);
  counting.held = true;
  const auto start = clock.Now();
  std::atomic<bool> done{false};
  Status st;
  std::thread read([&] {
    st = reader.Read(locs[0]).status();
    done = true;
  });
  REQUIRE(clock.AwaitWaits(1));  // the read waits on the clock
  CHECK(clock.NextDeadline() == start + std::chrono::milliseconds(100));
  clock.Advance(std::chrono::milliseconds(99));
  CHECK_FALSE(done);
  CHECK(reader.stats().deadlines == 0);
  clock.Advance(std::chrono::milliseconds(1));
  read.join();
  CHECK(st.code() == StatusCode::kDeadlineExceeded);
  CHECK(reader.stats().deadlines == 1);
  counting.held = false;
  CHECK(reader.WaitIdle());
  CHECK(reader.Read(locs[0]).ok());  // the held fetch landed
  CHECK(counting.range_reads == 1);
}

TEST_CASE("fetch engine: a corrupt chunk is fetched again after the policy's pauses on the reader's clock") {
  TempStore t;
  auto locs = WritePack(*t.store, {Random(30000, 43)});
  CountingStore counting(t.store.get());
  counting.flip_bit = true;
  ManualClock clock;
  ChunkReaderOptions o;
  o.clock = &clock;
  ChunkReader reader(&counting, o);
  std::atomic<bool> done{false};
  Status st;
  std::thread read([&] {
    st = reader.Read(locs[0]).status();
    done = true;
  });
  const RetryPolicy policy = o.retry;
  // The read itself waits on the clock (its deadline) once; each pause
  // between tries is one more wait.
  const auto read_deadline = clock.Now() + o.deadline;
  for (int failures = 1; failures < policy.max_attempts; ++failures) {
    REQUIRE(clock.AwaitWaits(1 + failures));
    auto next = clock.NextDeadline();
    REQUIRE(next);
    if (*next == read_deadline) continue;  // a pause of 0 was drawn: nothing to wait for
    INFO("pause after " << failures << " failures");
    CHECK(counting.range_reads == failures);  // no try before the pause is over
    CHECK(*next - clock.Now() <= policy.Ceiling(failures));
    clock.Advance(*next - clock.Now());
  }
  read.join();
  CHECK(done);
  CHECK(st.code() == StatusCode::kCorruption);
  CHECK(counting.range_reads == policy.max_attempts);
  CHECK(reader.stats().retries == static_cast<uint64_t>(policy.max_attempts - 1));
}

TEST_CASE("fetch engine: a read waits at most the deadline; the fetch still lands") {
  TempStore t;
  auto locs = WritePack(*t.store, {Random(30000, 41)});
  CountingStore counting(t.store.get());
  ChunkReaderOptions o;
  o.deadline = std::chrono::milliseconds(100);
  ChunkReader reader(&counting, o);
  counting.held = true;
  auto r = reader.Read(locs[0]);
  CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
  CHECK(r.status().message().find(locs[0].digest.Hex()) != std::string::npos);
  CHECK(reader.stats().deadlines == 1);
  counting.held = false;
  auto later = reader.Read(locs[0]);
  REQUIRE(later.ok());
  CHECK(Sha256(**later) == locs[0].digest);
  CHECK(counting.range_reads == 1);  // the held request was not sent twice
}

// Six 20 KB chunks in one pack, read through a counting store by a reader
// with `threads` fetch threads per pool (a remote store), or `threads` for
// demand and the default prefetch pool of a local store.
struct SixChunks {
  explicit SixChunks(unsigned threads, bool local = false)
      : locs(RandomPack(*t.store, 6, 20000, 50)),
        counting(t.store.get(), local),
        reader(&counting, [threads] {
          ChunkReaderOptions o;
          o.fetch_threads = threads;
          return o;
        }()) {}
  TempStore t;
  std::vector<ChunkLocation> locs;
  CountingStore counting;
  ChunkReader reader;
};

TEST_CASE("fetch engine: demand requests go before queued prefetch, on threads of their own") {
  SixChunks f(1);  // one thread per pool
  auto& [t, locs, counting, reader] = f;
  counting.held = true;
  reader.Prefetch({locs[0]});  // occupies the only prefetch thread, held at the store
  while (counting.range_reads == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  for (int i = 1; i < 5; ++i) reader.Prefetch({locs[i]});
  std::thread demand([&] { CHECK(reader.Read(locs[5]).ok()); });
  // The demand read reaches the store while prefetch is still busy and
  // the rest of it queued.
  for (int i = 0; i < 5000 && counting.range_reads < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(counting.range_reads == 2);
  counting.held = false;
  demand.join();
  for (int i = 0; i < 5; ++i) CHECK(reader.Read(locs[i]).ok());
  CHECK(counting.range_reads == 6);  // each chunk fetched once
}

TEST_CASE("fetch engine: prefetch queued after a demand request never reaches the store before it") {
  SixChunks f(1);  // one thread per pool
  auto& [t, locs, counting, reader] = f;
  counting.held = true;
  std::thread first([&] { CHECK(reader.Read(locs[0]).ok()); });  // the demand thread, held
  while (counting.range_reads == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread second([&] { CHECK(reader.Read(locs[1]).ok()); });  // queued: the pool is busy
  for (int i = 0; i < 5000 && reader.stats().demand_requests < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(reader.stats().demand_requests == 2);
  // The prefetch pool is idle, but the queued demand request has not gone
  // out yet: the prefetch waits for it.
  reader.Prefetch({locs[2]});
  // Its thread has looked at the queue and gone back to waiting, the job
  // still queued (a thread that took it would no longer be idle).
  ChunkReaderQueues q;
  for (int i = 0; i < 5000; ++i) {
    q = reader.queues();
    if (q.prefetch_threads == 1 && q.prefetch_idle == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(q.prefetch_idle == 1);
  CHECK(q.prefetch_queued == 1);
  CHECK(counting.range_reads == 1);
  counting.held = false;
  first.join();
  second.join();
  for (int i = 0; i < 5000 && !reader.Present(locs[2].digest); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(reader.Read(locs[2]).ok());
  // Once the second demand request is on its way, the prefetch may go at
  // the same moment: which of the two the store sees first is a race.
  std::lock_guard<std::mutex> lock(counting.mu);
  REQUIRE(counting.offsets.size() == 3);
  CHECK(counting.offsets[0] == locs[0].offset);
  CHECK(std::set<uint64_t>(counting.offsets.begin() + 1, counting.offsets.end()) ==
        std::set<uint64_t>{locs[1].offset, locs[2].offset});
}

TEST_CASE("fetch engine: prefetch jobs reach a remote store in the order they were queued") {
  // A store that answers in arrival order (one busy link) must see a
  // start-up profile's reads in the profile's order. Thirty jobs on eight
  // threads; the 5 ms between sends stands in for the 100 us a real
  // reader keeps, so that a test machine that preempts a thread for a few
  // milliseconds between its turn and its request cannot reorder them.
  TempStore t;
  const std::vector<ChunkLocation> locs = RandomPack(*t.store, 30, 3000, 300);
  CountingStore counting(t.store.get());
  ChunkReaderOptions o;
  o.fetch_threads = 8;
  o.prefetch_send_gap = std::chrono::milliseconds(5);
  ChunkReader reader(&counting, o);
  // The last job's chunk is already in memory: it sends nothing, and must
  // not hold up the ones before it.
  REQUIRE(reader.Read(locs.back()).ok());
  {
    std::lock_guard<std::mutex> lock(counting.mu);
    counting.offsets.clear();
  }
  for (int i = 29; i >= 0; --i) reader.Prefetch({locs[i]}, nullptr, /*keep=*/true);  // last chunk first
  for (int i = 0; i < 10000 && counting.range_reads < 29; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (int i = 0; i < 29; ++i) CHECK(reader.Read(locs[i]).ok());
  std::lock_guard<std::mutex> lock(counting.mu);
  std::string got;
  for (uint64_t off : counting.offsets) got += std::to_string(off) + " ";
  INFO("offsets " << got);
  REQUIRE(counting.offsets.size() == 29);
  for (int k = 0; k < 29; ++k) CHECK(counting.offsets[k] == locs[28 - k].offset);
}

TEST_CASE("fetch engine: a reader that is stopping sends no more prefetch") {
  // Four prefetch jobs on four threads, 10 s between sends: the first is
  // sent, the others wait for their turn when the reader is destroyed.
  // They must give up, not send their range reads on the way out.
  TempStore t;
  const std::vector<ChunkLocation> locs = RandomPack(*t.store, 4, 3000, 700);
  CountingStore counting(t.store.get());
  ChunkReaderOptions o;
  o.fetch_threads = 4;
  o.prefetch_send_gap = std::chrono::seconds(10);
  auto reader = std::make_unique<ChunkReader>(&counting, o);
  for (int i = 0; i < 4; ++i) reader->Prefetch({locs[i]}, nullptr, /*keep=*/true);
  for (int i = 0; i < 10000 && counting.range_reads < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(counting.range_reads == 1);
  reader.reset();
  CHECK(counting.range_reads == 1);
}

TEST_CASE("fetch engine: a burst of prefetch starts as many threads as it needs, no more than fetch_threads") {
  SixChunks f(4);
  auto& [t, locs, counting, reader] = f;
  // One prefetch first, so that the pool has a thread waiting for work:
  // woken for the burst, it must not count as idle for the jobs after it.
  reader.Prefetch({locs[0]});
  for (int i = 0; i < 5000 && !reader.Present(locs[0].digest); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(reader.Read(locs[0]).ok());
  REQUIRE(counting.range_reads == 1);
  counting.held = true;
  for (int i = 1; i < 6; ++i) reader.Prefetch({locs[i]});  // one run each, queued at once
  // Four reach the store together (held there), the fifth waits.
  for (int i = 0; i < 5000 && counting.range_reads < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Every started thread holds a job at the store; none more was started
  // for the one still queued (threads start only as jobs are taken).
  CHECK(counting.range_reads == 5);
  CHECK(reader.queues().prefetch_threads == 4);
  CHECK(reader.queues().prefetch_queued == 1);
  counting.held = false;
  for (int i = 1; i < 6; ++i) CHECK(reader.Read(locs[i]).ok());
  CHECK(counting.range_reads == 6);
}

TEST_CASE("fetch engine: prefetch from a local store uses half the CPUs, a remote one fetch_threads") {
  const unsigned half = std::max(1u, std::thread::hardware_concurrency() / 2);
  {
    SixChunks remote(4);
    CHECK(remote.reader.fetch_threads() == 4);
    CHECK(remote.reader.prefetch_threads() == 4);
  }
  TempStore t;
  ChunkReaderOptions o;
  o.fetch_threads = 16;
  CHECK(ChunkReader(t.store.get(), o).prefetch_threads() == half);  // file://
  CHECK(ChunkReader(t.store.get(), o).fetch_threads() == 16);
  o.prefetch_threads = 3;  // an explicit limit wins
  CHECK(ChunkReader(t.store.get(), o).prefetch_threads() == 3);
  for (const char* url : {"fault+file://%s", "fault+file://%s?fail=0.1", "fault+file://%s?latency=1ms",
                          "fault+file://%s?bandwidth=10MB"}) {
    char buf[512];
    std::snprintf(buf, sizeof(buf), url, t.root.c_str());
    auto s = OpenObjectStore(buf);
    REQUIRE(s.ok());
    // Emulated latency or bandwidth stands for a network: remote.
    bool net = std::string(url).find("latency") != std::string::npos ||
               std::string(url).find("bandwidth") != std::string::npos;
    INFO(buf);
    CHECK((*s)->IsLocal() == !net);
  }

  // The limit holds for a burst: with the store held, only `half` of five
  // queued prefetch runs reach it, while a demand read still gets through.
  SixChunks f(4, /*local=*/true);
  auto& [t2, locs, counting, reader] = f;
  REQUIRE(reader.prefetch_threads() == half);
  counting.held = true;
  for (int i = 0; i < 5; ++i) reader.Prefetch({locs[i]});
  for (int i = 0; i < 5000 && counting.range_reads < static_cast<int>(std::min(half, 5u)); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(counting.range_reads == static_cast<int>(std::min(half, 5u)));
  CHECK(reader.queues().prefetch_threads == half);
  CHECK(reader.queues().prefetch_queued == 5 - std::min(half, 5u));
  std::thread demand([&] { CHECK(reader.Read(locs[5]).ok()); });
  for (int i = 0; i < 5000 && counting.range_reads < static_cast<int>(std::min(half, 5u)) + 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(counting.range_reads == static_cast<int>(std::min(half, 5u)) + 1);
  counting.held = false;
  demand.join();
  for (int i = 0; i < 5; ++i) CHECK(reader.Read(locs[i]).ok());
  CHECK(counting.range_reads == 6);
}

}  // namespace
}  // namespace ferry::chunkstore
