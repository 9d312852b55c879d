// Tests for the node cache: one contract suite run against the on-disk cache
// and the in-memory LRU, then what only the disk cache promises (restarts,
// corruption, locking, crashes, a full disk).
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "chunkstore/node_cache.h"

namespace ferry::chunkstore {
namespace {

constexpr uint64_t kKiB = 1024;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/ferry-nc-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

struct TestChunk {
  Digest digest;
  ChunkData data;
};

// Chunk `i`: its size (in [min, max]) and bytes follow from `i` alone, so a
// process that did not write it can still check it.
TestChunk MakeChunk(uint64_t i, size_t min = 512, size_t max = 4 * kKiB) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + 0x1234567;
  auto next = [&x] { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; };
  auto v = std::make_shared<std::vector<uint8_t>>(min + next() % (max - min + 1));
  for (size_t j = 0; j < v->size(); j += 8) {
    uint64_t r = next();
    std::memcpy(v->data() + j, &r, std::min<size_t>(8, v->size() - j));
  }
  return {Sha256(*v), v};
}

uint64_t SegmentFileBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/segments")) {
    std::error_code ec;  // the cache may unlink a segment while we look
    uint64_t size = e.file_size(ec);
    if (!ec) total += size;
  }
  return total;
}

std::unique_ptr<ChunkCache> OpenCache(const std::string& dir, uint64_t capacity,
                                      uint64_t segment = 16 * kKiB) {
  auto r = OpenNodeCache({dir, capacity, segment});
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Whether `cache` returns exactly chunk `c`.
bool Holds(ChunkCache& cache, const TestChunk& c) {
  auto r = cache.Get(c.digest);
  return r.ok() && **r == *c.data;
}

struct MemoryCache {
  static constexpr bool kDisk = false;
  explicit MemoryCache(uint64_t capacity) : cache(NewMemoryChunkCache(capacity)) {}
  uint64_t FileBytes() const { return cache->Stats().used_bytes; }
  std::unique_ptr<ChunkCache> cache;
};

struct DiskCache {
  static constexpr bool kDisk = true;
  explicit DiskCache(uint64_t capacity) : cache(OpenCache(dir.path, capacity)) {}
  uint64_t FileBytes() const { return SegmentFileBytes(dir.path); }
  TempDir dir;  // outlives the cache
  std::unique_ptr<ChunkCache> cache;
};

TEMPLATE_TEST_CASE("cache: put, flush, get returns the exact bytes", "[node_cache]",
                   MemoryCache, DiskCache) {
  TestType t(1024 * kKiB);
  for (int i = 0; i < 20; ++i) t.cache->Put(MakeChunk(i).digest, MakeChunk(i).data);
  REQUIRE(t.cache->Flush().ok());
  for (int i = 0; i < 20; ++i) {
    REQUIRE(t.cache->Contains(MakeChunk(i).digest));
    REQUIRE(Holds(*t.cache, MakeChunk(i)));
  }
  auto s = t.cache->Stats();
  CHECK(s.admitted == 20);
  CHECK(s.hits == 20);
  CHECK(s.chunks == 20);
  CHECK(s.used_bytes <= s.capacity_bytes);
}

TEMPLATE_TEST_CASE("cache: an unknown digest misses", "[node_cache]", MemoryCache, DiskCache) {
  TestType t(64 * kKiB);
  auto r = t.cache->Get(Sha256("never put"));
  REQUIRE(r.status().code() == StatusCode::kNotFound);
  CHECK_FALSE(t.cache->Contains(Sha256("never put")));
  CHECK(t.cache->Stats().misses == 1);
}

TEMPLATE_TEST_CASE("cache: duplicate puts are ignored", "[node_cache]", MemoryCache, DiskCache) {
  TestType t(64 * kKiB);
  TestChunk c = MakeChunk(7);
  t.cache->Put(c.digest, c.data);
  t.cache->Put(c.digest, c.data);  // still queued
  REQUIRE(t.cache->Flush().ok());
  uint64_t used = t.cache->Stats().used_bytes;
  t.cache->Put(c.digest, c.data);  // indexed
  REQUIRE(t.cache->Flush().ok());
  auto s = t.cache->Stats();
  CHECK(s.admitted == 1);
  CHECK(s.chunks == 1);
  CHECK(s.dropped == 0);
  CHECK(s.used_bytes == used);
  CHECK(Holds(*t.cache, c));
}

TEMPLATE_TEST_CASE("cache: filling 5x the capacity never exceeds it", "[node_cache]",
                   MemoryCache, DiskCache) {
  const uint64_t cap = 128 * kKiB;
  TestType t(cap);
  uint64_t put = 0;
  for (int i = 0; put < 5 * cap; ++i) {
    TestChunk c = MakeChunk(i);
    t.cache->Put(c.digest, c.data);
    put += c.data->size();
    REQUIRE(t.cache->Stats().used_bytes <= cap);
    if (i % 10 == 9) {
      REQUIRE(t.cache->Flush().ok());
      // Only now: a directory listing taken while the writer works is no snapshot.
      REQUIRE(t.FileBytes() <= cap);
    }
  }
  REQUIRE(t.cache->Flush().ok());
  auto s = t.cache->Stats();
  CHECK(s.used_bytes <= cap);
  CHECK(t.FileBytes() <= s.used_bytes);
  CHECK(s.evicted > 0);
  CHECK(s.chunks > 0);
}

TEMPLATE_TEST_CASE("cache: Prune(0) empties it", "[node_cache]", MemoryCache, DiskCache) {
  TestType t(256 * kKiB);
  for (int i = 0; i < 40; ++i) t.cache->Put(MakeChunk(i).digest, MakeChunk(i).data);
  REQUIRE(t.cache->Flush().ok());
  REQUIRE(t.cache->Prune(0).ok());
  auto s = t.cache->Stats();
  CHECK(s.used_bytes == 0);
  CHECK(s.chunks == 0);
  CHECK(t.FileBytes() == 0);
  CHECK_FALSE(t.cache->Get(MakeChunk(3).digest).ok());
  t.cache->Put(MakeChunk(3).digest, MakeChunk(3).data);  // and it works afterwards
  REQUIRE(t.cache->Flush().ok());
  CHECK(Holds(*t.cache, MakeChunk(3)));
}

TEMPLATE_TEST_CASE("cache: a chunk in use survives eviction", "[node_cache]", MemoryCache,
                   DiskCache) {
  const uint64_t cap = 128 * kKiB;
  TestType t(cap);
  TestChunk hot = MakeChunk(1000);
  t.cache->Put(hot.digest, hot.data);
  REQUIRE(t.cache->Flush().ok());
  for (int round = 0; round < 40; ++round) {  // ~5x the capacity in all
    for (int i = 0; i < 8; ++i) t.cache->Put(MakeChunk(round * 8 + i).digest, MakeChunk(round * 8 + i).data);
    REQUIRE(t.cache->Flush().ok());
    INFO("round " << round);
    REQUIRE(Holds(*t.cache, hot));
  }
  CHECK(t.cache->Stats().evicted > 0);
  if (TestType::kDisk) CHECK(t.cache->Stats().kept > 0);
}

TEMPLATE_TEST_CASE("cache: concurrent puts and gets never return wrong bytes", "[node_cache]",
                   MemoryCache, DiskCache) {
  TestType t(64 * kKiB);  // small: eviction races the reads
  std::vector<TestChunk> chunks;
  for (int i = 0; i < 300; ++i) chunks.push_back(MakeChunk(i));
  std::atomic<int> wrong{0}, hits{0};
  std::vector<std::thread> threads;
  for (int n = 0; n < 8; ++n) {
    threads.emplace_back([&, n] {
      std::mt19937 rng(n);
      for (int op = 0; op < 1500; ++op) {
        const TestChunk& c = chunks[rng() % chunks.size()];
        if (rng() % 2) {
          t.cache->Put(c.digest, c.data);
        } else if (auto r = t.cache->Get(c.digest); r.ok()) {
          ++hits;
          if (Sha256(**r) != c.digest) ++wrong;
        }
        if (op % 200 == 199) t.cache->Flush().IgnoreError();
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(t.cache->Flush().ok());
  CHECK(wrong == 0);
  CHECK(hits > 0);
  CHECK(t.cache->Stats().used_bytes <= 64 * kKiB);
  CHECK(t.FileBytes() <= 64 * kKiB);
}

TEST_CASE("node cache: everything admitted is a hit after reopening", "[node_cache]") {
  TempDir dir;
  {
    auto cache = OpenCache(dir.path, 1024 * kKiB);
    for (int i = 0; i < 50; ++i) cache->Put(MakeChunk(i).digest, MakeChunk(i).data);
    REQUIRE(cache->Flush().ok());
  }
  auto cache = OpenCache(dir.path, 1024 * kKiB);
  CHECK(cache->Stats().chunks == 50);
  CHECK(cache->Stats().used_bytes == SegmentFileBytes(dir.path));
  for (int i = 0; i < 50; ++i) REQUIRE(Holds(*cache, MakeChunk(i)));
}

TEST_CASE("node cache: admission waits for a quiet moment; queued chunks are served meanwhile",
          "[node_cache]") {
  TempDir dir;
  NodeCacheOptions opt{dir.path, 64u << 20, 256 * kKiB};
  opt.admission_quiet = std::chrono::hours(1);  // never quiet during the test
  opt.admission_max_delay = std::chrono::hours(1);
  opt.admission_batch_bytes = 1u << 20;
  {
    auto r = OpenNodeCache(opt);
    REQUIRE(r.ok());
    auto& cache = **r;
    for (int i = 0; i < 10; ++i) cache.Put(MakeChunk(i).digest, MakeChunk(i).data);
    // Nothing can have been written: no condition for writing holds.
    CHECK(cache.Stats().admitted == 0);
    CHECK(SegmentFileBytes(dir.path) == 0);
    for (int i = 0; i < 10; ++i) {
      CHECK(cache.Contains(MakeChunk(i).digest));
      CHECK(Holds(cache, MakeChunk(i)));  // from memory
    }
    REQUIRE(cache.Flush().ok());  // Flush does not wait for quiet
    CHECK(cache.Stats().admitted == 10);

    // More than admission_batch_bytes queued: written without a Flush.
    for (int i = 100; i < 120; ++i) {
      TestChunk c = MakeChunk(i, 64 * kKiB, 64 * kKiB);
      cache.Put(c.digest, c.data);
    }
    // The 16th makes 1 MiB; the writer takes what is queued when it wakes.
    for (int spin = 0; spin < 3000 && cache.Stats().admitted < 26; ++spin) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK(cache.Stats().admitted >= 26);
    REQUIRE(cache.Flush().ok());
    CHECK(cache.Stats().admitted == 30);

    // Prune writes what is queued first, so it is pruned too.
    cache.Put(MakeChunk(200).digest, MakeChunk(200).data);
    REQUIRE(cache.Prune(0).ok());
    CHECK(cache.Stats().chunks == 0);
    REQUIRE(cache.Flush().ok());
    CHECK(cache.Stats().used_bytes == 0);

    cache.Put(MakeChunk(300).digest, MakeChunk(300).data);  // closing writes it
  }
  auto r = OpenNodeCache(opt);
  REQUIRE(r.ok());
  CHECK((*r)->Stats().chunks == 1);
  CHECK(Holds(**r, MakeChunk(300)));
}

TEST_CASE("node cache: a flipped byte is dropped, then admitted again", "[node_cache]") {
  TempDir dir;
  TestChunk c = MakeChunk(1, 1000, 1000);
  {
    auto cache = OpenCache(dir.path, 1024 * kKiB);
    cache->Put(c.digest, c.data);
    REQUIRE(cache->Flush().ok());
    int fd = open((dir.path + "/segments/00000001.seg").c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    uint8_t b;
    REQUIRE(pread(fd, &b, 1, 64 + 500) == 1);
    b ^= 0x01;
    REQUIRE(pwrite(fd, &b, 1, 64 + 500) == 1);
    close(fd);

    auto r = cache->Get(c.digest);
    REQUIRE(r.status().code() == StatusCode::kNotFound);
    CHECK(cache->Stats().corrupt == 1);
    CHECK_FALSE(cache->Contains(c.digest));
    cache->Put(c.digest, c.data);
    REQUIRE(cache->Flush().ok());
    REQUIRE(Holds(*cache, c));
  }
  auto cache = OpenCache(dir.path, 1024 * kKiB);  // the new copy is the one indexed
  CHECK(Holds(*cache, c));
  CHECK(cache->Stats().corrupt == 0);
}

TEST_CASE("node cache: a second open of the same directory fails", "[node_cache]") {
  TempDir dir;
  auto first = OpenCache(dir.path, 64 * kKiB);
  auto second = OpenNodeCache({dir.path, 64 * kKiB, 16 * kKiB});
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == StatusCode::kFailedPrecondition);
  CHECK_THAT(second.status().message(), Catch::Contains(dir.path) && Catch::Contains("in use"));
}

// The child fills the cache until killed. It is forked while no cache is
// open in this process, so RocksDB has nothing in flight that the fork could
// cut in half; the child ends by SIGKILL or _exit, never by destructors.
[[noreturn]] void FillUntilKilled(const std::string& dir, uint64_t cap, int chunks) {
  auto r = OpenNodeCache({dir, cap, 16 * kKiB});
  if (!r.ok()) _exit(2);
  for (int i = 0; i < chunks; ++i) {
    (*r)->Put(MakeChunk(i).digest, MakeChunk(i).data);
    if (i % 40 == 39 && !(*r)->Flush().ok()) _exit(3);
  }
  _exit(0);
}

TEST_CASE("node cache: after kill -9 it serves only chunks that verify", "[node_cache]") {
  const uint64_t cap = 256 * kKiB;
  const int kChunks = 5000;
  TempDir dir;
  for (uint32_t seed : {1u, 2u, 3u}) {
    std::mt19937 rng(seed);
    int delay_ms = 20 + static_cast<int>(rng() % 150);
    std::printf("node cache crash test: seed %u, kill after %d ms\n", seed, delay_ms);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) FillUntilKilled(dir.path, cap, kChunks);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    INFO("seed " << seed << ", child status " << status);
    REQUIRE(((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
             (WIFEXITED(status) && WEXITSTATUS(status) == 0)));

    auto cache = OpenCache(dir.path, cap);
    int found = 0;
    for (int i = 0; i < kChunks; ++i) {
      TestChunk c = MakeChunk(i);
      if (!cache->Contains(c.digest)) continue;
      REQUIRE(Holds(*cache, c));
      ++found;
    }
    auto s = cache->Stats();
    std::printf("  %d chunks indexed and verified\n", found);
    CHECK(s.corrupt == 0);
    CHECK(s.used_bytes <= cap);
    CHECK(SegmentFileBytes(dir.path) <= cap);
  }
}

// A tmpfs mounted for one test, unmounted and removed however it ends.
struct SmallDisk {
  TempDir dir;
  bool mounted = false;
  explicit SmallDisk(const char* size) {
    std::string opts = std::string("size=") + size;
    mounted = mount("tmpfs", dir.path.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted) umount2(dir.path.c_str(), MNT_DETACH);
  }
};

TEST_CASE("node cache: a full disk drops new chunks and keeps serving", "[node_cache]") {
  bool ci = std::getenv("CI") != nullptr && std::string(std::getenv("CI")) == "true";
  std::unique_ptr<SmallDisk> disk;
  if (geteuid() == 0) disk = std::make_unique<SmallDisk>("8m");
  if (!disk || !disk->mounted) {
    if (ci) FAIL("disk-full test needs root to mount a tmpfs (CI=true)");
    WARN("disk-full test DID NOT RUN: needs root to mount a tmpfs");
    return;
  }
  const std::string dir = disk->dir.path + "/cache";
  const int kChunks = 192;  // 12 MiB of 64 KiB chunks on an 8 MiB disk
  auto chunk = [](int i) { return MakeChunk(i, 64 * kKiB, 64 * kKiB); };
  {
    auto cache = OpenCache(dir, 64 << 20, 1 << 20);
    for (int i = 0; i < kChunks; ++i) {
      cache->Put(chunk(i).digest, chunk(i).data);
      if (i % 16 == 15) REQUIRE(cache->Flush().ok());
    }
    REQUIRE(cache->Flush().ok());
    auto s = cache->Stats();
    CHECK(s.dropped > 0);
    CHECK(s.admitted > 0);
    for (int i = 0; i < kChunks; ++i) {
      if (cache->Contains(chunk(i).digest)) REQUIRE(Holds(*cache, chunk(i)));
    }
  }
  auto cache = OpenCache(dir, 64 << 20, 1 << 20);
  int found = 0;
  for (int i = 0; i < kChunks; ++i) {
    if (!cache->Contains(chunk(i).digest)) continue;
    REQUIRE(Holds(*cache, chunk(i)));
    ++found;
  }
  CHECK(found > 0);
  CHECK(cache->Stats().corrupt == 0);
}

TEST_CASE("node cache: admission comes after admission_quiet of the cache's clock, counted from the last Put",
          "[node_cache]") {
  TempDir dir;
  ManualClock clock;
  NodeCacheOptions opt{dir.path, 64u << 20, 256 * kKiB};
  opt.clock = &clock;  // the default quiet period: 500 ms
  auto r = OpenNodeCache(opt);
  REQUIRE(r.ok());
  auto& cache = **r;
  uint64_t waits = clock.waits();
  cache.Put(MakeChunk(1).digest, MakeChunk(1).data);
  REQUIRE(clock.AwaitWaits(waits + 1));  // the writer waits for quiet
  CHECK(clock.NextDeadline() == clock.Now() + std::chrono::milliseconds(500));
  clock.Advance(std::chrono::milliseconds(300));
  cache.Put(MakeChunk(2).digest, MakeChunk(2).data);  // quiet again from now
  waits = clock.waits();
  clock.Advance(std::chrono::milliseconds(300));  // 500 ms after the first Put, 300 after the second
  REQUIRE(clock.AwaitWaits(waits + 1));  // woken, the writer went back to waiting
  CHECK(cache.Stats().admitted == 0);
  CHECK(clock.NextDeadline() == clock.Now() + std::chrono::milliseconds(200));
  clock.Advance(std::chrono::milliseconds(199));
  CHECK(cache.Stats().admitted == 0);
  clock.Advance(std::chrono::milliseconds(1));
  for (int i = 0; i < 2000 && cache.Stats().admitted < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the write, in real time
  }
  CHECK(cache.Stats().admitted == 2);
  CHECK(Holds(cache, MakeChunk(1)));
}

}  // namespace
}  // namespace ferry::chunkstore
