// Stores and packs for chunkstore's unit tests: a temporary file store, a
// wrapper that counts, holds, fails or corrupts range reads, and packs of
// given or random chunks written into a store. Test-only; not thread-safe
// unless said.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chunkstore/digest.h"
#include "chunkstore/file_store.h"
#include "chunkstore/pack.h"
#include "tests/support/bytes.h"

namespace ferry::chunkstore {

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

// Wraps a store to count and optionally slow or corrupt ranged reads.
// range_reads, held and fail_next may be used from any thread.
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
inline std::vector<ChunkLocation> WritePack(FileStore& store, const std::vector<std::vector<uint8_t>>& chunks) {
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
inline std::vector<ChunkLocation> RandomPack(FileStore& store, int n, size_t size, uint32_t seed) {
  std::vector<std::vector<uint8_t>> chunks;
  for (int i = 0; i < n; ++i) chunks.push_back(testing::Random(size, seed + i));
  return WritePack(store, chunks);
}

}  // namespace ferry::chunkstore
