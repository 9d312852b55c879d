// Unit tests for chunkstore: the file store, packs and the chunk reader.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "chunkstore/chunk_reader.h"
#include "chunkstore/clock.h"
#include "chunkstore/fault_store.h"
#include "chunkstore/file_store.h"
#include "chunkstore/pack.h"
#include "chunkstore/url_options.h"
#include "tests/support/bytes.h"

namespace ferry::chunkstore {
namespace {

struct TempStore {
  std::string root;
  std::unique_ptr<FileStore> store;
  TempStore() {
    char tmpl[] = "/tmp/ferry-store-XXXXXX";
    root = mkdtemp(tmpl);
    store = std::move(FileStore::Open(root).value());
  }
  ~TempStore() { std::filesystem::remove_all(root); }
};

using testing::Bytes;

using testing::Random;

// Wraps a store to count and optionally slow or corrupt ranged reads.
class CountingStore final : public ObjectStore {
 public:
  explicit CountingStore(ObjectStore* inner, bool local = false) : local(local), inner_(inner) {}
  std::string Url() const override { return inner_->Url(); }
  Status Put(const std::string& k, std::span<const uint8_t> d) override { return inner_->Put(k, d); }
  Status PutFile(const std::string& k, const std::string& p) override { return inner_->PutFile(k, p); }
  Result<std::shared_ptr<const Blob>> Get(const std::string& k) override { return inner_->Get(k); }
  Status GetRange(const std::string& k, uint64_t off, std::span<uint8_t> out) override {
    ++range_reads;
    while (held) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    {
      std::lock_guard<std::mutex> lock(mu);
      offsets.push_back(off);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    if (fail_next > 0) {
      --fail_next;
      return UnavailableError("flaky store");
    }
    RETURN_IF_ERROR(inner_->GetRange(k, off, out));
    if (flip_bit && !out.empty()) out[out.size() / 2] ^= 0x10;
    return Status::Ok();
  }
  Result<uint64_t> Size(const std::string& k) override { return inner_->Size(k); }
  Result<std::vector<std::string>> List(const std::string& p) override { return inner_->List(p); }
  Status Delete(const std::string& k) override { return inner_->Delete(k); }
  bool IsLocal() const override { return local; }
  std::atomic<int> range_reads{0};
  const bool local;  // what IsLocal answers
  int delay_ms = 0;
  bool flip_bit = false;
  std::atomic<bool> held{false};  // range reads wait while set
  std::atomic<int> fail_next{0};  // this many range reads fail (kUnavailable)
  std::mutex mu;
  std::vector<uint64_t> offsets;  // of range reads, in the order they were made

 private:
  ObjectStore* inner_;
};

// Writes a pack of `chunks` into the store; returns their locations.
std::vector<ChunkLocation> WritePack(FileStore& store, const std::vector<std::vector<uint8_t>>& chunks) {
  std::string path = store.TempPath("test-pack");
  auto writer = std::move(PackWriter::Create(path).value());
  std::vector<ChunkLocation> locs;
  for (const auto& c : chunks) {
    ChunkLocation loc;
    loc.digest = Sha256(c);
    auto frame = CompressChunk(c, 3);
    loc.offset = writer->Append(loc.digest, frame, static_cast<uint32_t>(c.size())).value();
    loc.clen = static_cast<uint32_t>(frame.size());
    loc.ulen = static_cast<uint32_t>(c.size());
    locs.push_back(loc);
  }
  Digest id = writer->Finish().value();
  REQUIRE(store.PutFile(PackKey(id), path).ok());
  for (auto& l : locs) l.pack = id;
  return locs;
}

// A pack of `n` random chunks of `size` bytes (seeds seed, seed + 1, ...).
std::vector<ChunkLocation> RandomPack(FileStore& store, int n, size_t size, uint32_t seed) {
  std::vector<std::vector<uint8_t>> chunks;
  for (int i = 0; i < n; ++i) chunks.push_back(Random(size, seed + i));
  return WritePack(store, chunks);
}

TEST_CASE("pack writer: the file is exactly the frames, the index and the trailer, whatever their sizes") {
  TempStore t;
  std::string path = t.store->TempPath("test-pack");
  auto writer = std::move(PackWriter::Create(path).value());
  // Frames around and beyond the writer's 1 MiB buffer, many small ones
  // (an index over 1 MiB), and one of no bytes; the writer does not look
  // inside frames.
  std::vector<size_t> sizes = {10, (1u << 20) - 10, 11, 1u << 20, 3u << 20, 0, 700000, 700000};
  for (int i = 0; i < 25000; ++i) sizes.push_back(1 + i % 97);
  std::vector<uint8_t> expect;
  std::vector<ChunkLocation> locs;
  uint8_t fill = 0;
  for (size_t n : sizes) {
    std::vector<uint8_t> frame(n);
    for (auto& b : frame) b = fill++;
    ChunkLocation loc;
    loc.digest = Sha256(frame);
    loc.offset = writer->Append(loc.digest, frame, 1).value();
    CHECK(loc.offset == expect.size());
    loc.clen = static_cast<uint32_t>(n);
    expect.insert(expect.end(), frame.begin(), frame.end());
    CHECK(writer->bytes_written() == expect.size());
    locs.push_back(loc);
  }
  Digest id = writer->Finish().value();
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), {});
  CHECK(Sha256(file) == id);
  REQUIRE(file.size() > expect.size());
  CHECK(std::equal(expect.begin(), expect.end(), file.begin()));
  auto index = ParsePackIndex(file, id);
  REQUIRE(index.ok());
  REQUIRE(index->size() == locs.size());
  for (size_t i = 0; i < locs.size(); ++i) {
    CHECK((*index)[i].offset == locs[i].offset);
    CHECK((*index)[i].clen == locs[i].clen);
    CHECK((*index)[i].digest == locs[i].digest);
  }
}

TEST_CASE("file store: put, get, range, size, list, delete") {
  TempStore t;
  FileStore& s = *t.store;
  REQUIRE(s.Put("images/abc", Bytes("hello world")).ok());
  REQUIRE(s.Get("images/abc").value()->view() == "hello world");
  std::vector<uint8_t> out(5);
  REQUIRE(s.GetRange("images/abc", 6, out).ok());
  CHECK(std::string(out.begin(), out.end()) == "world");
  CHECK(s.Size("images/abc").value() == 11);
  REQUIRE(s.Put("images/abc", Bytes("replaced")).ok());
  CHECK(s.Get("images/abc").value()->view() == "replaced");
  REQUIRE(s.Put("refs/library/python:3.11", Bytes("x")).ok());
  auto keys = s.List("refs/").value();
  REQUIRE(keys.size() == 1);
  CHECK(keys[0] == "refs/library/python:3.11");
  REQUIRE(s.Delete("images/abc").ok());
  CHECK(s.Get("images/abc").status().code() == StatusCode::kNotFound);
  CHECK(s.Delete("images/abc").ok());
  // Nothing is left behind in the temporary folder.
  CHECK(std::filesystem::is_empty(t.root + "/.tmp"));
}

TEST_CASE("file store: a range past the end is corruption, bad keys are refused") {
  TempStore t;
  REQUIRE(t.store->Put("packs/x", Bytes("12345")).ok());
  std::vector<uint8_t> out(10);
  CHECK(t.store->GetRange("packs/x", 0, out).code() == StatusCode::kCorruption);
  CHECK(t.store->GetRange("packs/missing", 0, out).code() == StatusCode::kNotFound);
  for (std::string bad : {"", "../etc/passwd", "a//b", "a/./b", "/abs", "a/b c", "a/.."}) {
    CHECK(t.store->Put(bad, Bytes("x")).code() == StatusCode::kInvalidArgument);
  }
  CHECK(OpenObjectStore("gopher://x").status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("pack: index round-trips and detects damage") {
  TempStore t;
  std::vector<std::vector<uint8_t>> chunks = {Random(1000, 1), Random(70000, 2), std::vector<uint8_t>(5000, 'z')};
  auto locs = WritePack(*t.store, chunks);
  auto index = ReadPackIndex(*t.store, locs[0].pack).value();
  REQUIRE(index.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(index[i].digest == locs[i].digest);
    CHECK(index[i].offset == locs[i].offset);
    CHECK(index[i].clen == locs[i].clen);
    std::vector<uint8_t> frame(index[i].clen), out;
    REQUIRE(t.store->GetRange(PackKey(index[i].pack), index[i].offset, frame).ok());
    REQUIRE(DecompressAndVerify(frame, index[i].ulen, index[i].digest, &out).ok());
    CHECK(out == chunks[i]);
    frame[frame.size() / 2] ^= 1;
    CHECK(DecompressAndVerify(frame, index[i].ulen, index[i].digest, &out).code() ==
          StatusCode::kCorruption);
    CHECK(out.empty());
  }
  auto whole = t.store->Get(PackKey(locs[0].pack)).value();
  std::vector<uint8_t> bytes(whole->bytes().begin(), whole->bytes().end());
  CHECK(ParsePackIndex(bytes, locs[0].pack).ok());
  bytes[bytes.size() - kPackTrailerSize - 5] ^= 1;  // inside the index
  CHECK(ParsePackIndex(bytes, locs[0].pack).status().code() == StatusCode::kCorruption);
  bytes.resize(10);
  CHECK(ParsePackIndex(bytes, locs[0].pack).status().code() == StatusCode::kCorruption);
}

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

TEST_CASE("url options: sizes and durations with units") {
  CHECK(*ParseScaled("10G", 1024) == Approx(10.0 * (1ull << 30)));
  CHECK(*ParseScaled("100MB", 1000) == Approx(100e6));
  CHECK(*ParseScaled("2GiB", 1024) == Approx(2.0 * (1ull << 30)));
  CHECK(*ParseScaled("65536", 1024) == Approx(65536));
  for (const char* bad : {"5X", "abc", "-1", "", "1KK"}) CHECK_FALSE(ParseScaled(bad, 1024).ok());
  CHECK(*ParseDurationSeconds("500ms") == Approx(0.5));
  CHECK_FALSE(ParseDurationSeconds("1parsec").ok());
  auto opts = ParseUrlOptions("a=1&&b=%2Fx");
  REQUIRE(opts.ok());
  REQUIRE(opts->size() == 2);
  CHECK((*opts)[1].second == "/x");
  CHECK_FALSE(ParseUrlOptions("novalue").ok());
}

TEST_CASE("fault store: options, seeded failures, corruption, the URL round trip") {
  TempStore t;
  REQUIRE(t.store->Put("obj", Bytes(std::string(1000, 'x'))).ok());
  CHECK_FALSE(ParseFaultOptions("latency=fast").ok());
  CHECK_FALSE(ParseFaultOptions("fail=2").ok());
  CHECK_FALSE(ParseFaultOptions("colour=red").ok());
  auto o = ParseFaultOptions("latency=20ms&jitter=1ms&bandwidth=100MB&fail=0.2&corrupt=0.5&seed=9");
  REQUIRE(o.ok());
  CHECK(o->latency_s == Approx(0.020));
  CHECK(o->bandwidth_bps == Approx(100e6));
  CHECK(o->seed == 9);

  auto failures = [&](uint64_t seed) {
    // attempts=1: the raw draws, without the store's retries.
    auto s = OpenObjectStore("fault+file://" + t.root + "?fail=0.5&attempts=1&seed=" + std::to_string(seed));
    REQUIRE(s.ok());
    std::string pattern;
    for (int i = 0; i < 200; ++i) {
      auto r = (*s)->Size("obj");
      CHECK((r.ok() || r.status().code() == StatusCode::kUnavailable));
      pattern += r.ok() ? '.' : 'x';
    }
    return pattern;
  };
  std::string a = failures(3);
  CHECK(a == failures(3));  // the same seed fails the same requests
  CHECK(a != failures(4));
  auto fails = std::count(a.begin(), a.end(), 'x');
  CHECK(fails > 50);
  CHECK(fails < 150);

  auto bad = OpenObjectStore("fault+file://" + t.root + "?corrupt=1");
  REQUIRE(bad.ok());
  CHECK((*bad)->Url() == "fault+file://" + t.root + "?corrupt=1");
  std::vector<uint8_t> got(1000);
  REQUIRE((*bad)->GetRange("obj", 0, got).ok());
  CHECK(std::string(got.begin(), got.end()) != std::string(1000, 'x'));
  CHECK_FALSE(OpenObjectStore("fault+file://" + t.root + "?latency=1parsec").ok());
}

}  // namespace
}  // namespace ferry::chunkstore
