// Unit tests for PrefetchSettings: the prefetch settings a ChunkReader
// chooses for its store, and the overrides that win over them.
#include <catch2/catch.hpp>

#include <thread>

#include "chunkstore/chunk_reader.h"

namespace ferry::chunkstore {
namespace {

constexpr uint64_t kKiB = 1024, kMiB = 1024 * 1024;

// A store that is local or not, and nothing else.
class NoStore : public ObjectStore {
 public:
  explicit NoStore(bool local) : local_(local) {}
  std::string Url() const override { return "none://"; }
  Status Put(const std::string&, std::span<const uint8_t>) override { return InternalError("none"); }
  Status PutFile(const std::string&, const std::string&) override { return InternalError("none"); }
  Result<std::shared_ptr<const Blob>> Get(const std::string&) override { return InternalError("none"); }
  Status GetRange(const std::string&, uint64_t, std::span<uint8_t>) override { return InternalError("none"); }
  Result<uint64_t> Size(const std::string&) override { return InternalError("none"); }
  Result<std::vector<std::string>> List(const std::string&) override { return InternalError("none"); }
  Status Delete(const std::string&) override { return InternalError("none"); }
  bool IsLocal() const override { return local_; }

 private:
  bool local_;
};

TEST_CASE("prefetch settings: chosen for the store, each override wins") {
  const unsigned half = std::max(1u, std::thread::hardware_concurrency() / 2);
  NoStore local(true), remote(false);
  ChunkReaderOptions o;
  o.fetch_threads = 6;
  PrefetchSettings s = o.PrefetchFor(local);
  CHECK(s.threads == half);
  CHECK(s.run_bytes == 256 * kKiB);
  CHECK(s.gap_bytes == 0);
  CHECK(s.send_gap == std::chrono::microseconds(0));
  s = o.PrefetchFor(remote);
  CHECK(s.threads == 6);
  CHECK(s.run_bytes == 1 * kMiB);
  CHECK(s.gap_bytes == 64 * kKiB);
  CHECK(s.send_gap == std::chrono::microseconds(100));

  o.prefetch_threads = 3;
  o.prefetch_run_bytes = 512 * kKiB;
  o.prefetch_gap_bytes = 0;
  o.prefetch_send_gap = std::chrono::milliseconds(5);
  for (NoStore* store : {&local, &remote}) {
    s = o.PrefetchFor(*store);
    CHECK(s.threads == 3);
    CHECK(s.run_bytes == 512 * kKiB);
    CHECK(s.gap_bytes == 0);
    CHECK(s.send_gap == std::chrono::milliseconds(5));
  }
  // The reader reports what it uses.
  ChunkReader reader(&remote, o);
  CHECK(reader.prefetch_threads() == 3);
  CHECK(reader.prefetch_run_bytes() == 512 * kKiB);
  CHECK(reader.prefetch_gap_bytes() == 0);
  o.prefetch_threads = 0;  // a pool of no threads would never prefetch
  CHECK(o.PrefetchFor(remote).threads == 1);
}

}  // namespace
}  // namespace ferry::chunkstore
