// What the locality and replay tests share: a small image served through
// ImageFs and a ChunkReader over a file store (Fixture), and the same image
// served again through a store that records every range read (Recorded).
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "builder/elf_loads.h"
#include "builder/image_builder.h"
#include "chunkstore/file_store.h"
#include "fs/image_fs.h"
#include "fs/image_store.h"
#include "tests/support/bytes.h"
#include "tests/support/fs_util.h"

namespace ferry::testing {

inline void WriteFile(const std::string& path, size_t size, uint32_t seed) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  auto data = Random(size, seed);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
}

// pkg/ : eight 100 KB modules and a 3 MiB file (too big for a directory
// batch, small enough to be fetched whole); pkg/a_sub/ a file of its own;
// data/ : a 12 MiB file (too big to be fetched whole) and a small one.
// Layout (sorted depth-first): data/huge, data/small, pkg/a_sub/x, pkg/big,
// pkg/m0 ... pkg/m7.
struct Fixture {
  ScopedTempDir tmp{"ferry-locality"};
  std::unique_ptr<chunkstore::FileStore> store;
  std::unique_ptr<chunkstore::ChunkReader> chunks;
  std::unique_ptr<fs::ImageFs> fs;
  Digest image_id;

  // The default tree (above), or what `populate` writes into the source.
  explicit Fixture(std::function<void(const std::string& src)> populate = nullptr) {
    const std::string src = tmp.path() + "/src";
    if (populate) {
      populate(src);
    } else {
      for (int i = 0; i < 8; ++i) WriteFile(src + "/pkg/m" + std::to_string(i), 100'000, 10 + i);
      WriteFile(src + "/pkg/big", 3 << 20, 2);
      WriteFile(src + "/pkg/a_sub/x", 50'000, 3);
      WriteFile(src + "/data/huge", 12 << 20, 4);
      WriteFile(src + "/data/small", 20'000, 5);
    }
    store = std::move(chunkstore::FileStore::Open(tmp.path() + "/store").value());
    builder::ImageBuilder b(store.get(), {});
    REQUIRE(b.AddDirectory(src).ok());
    auto sum = b.Finish("");
    REQUIRE(sum.ok());
    image_id = sum->image;
    auto image = fs::LoadImage(*store, sum->image);
    REQUIRE(image.ok());
    chunks = std::make_unique<chunkstore::ChunkReader>(store.get(), 256u << 20);
    fs = std::make_unique<fs::ImageFs>(std::move(*image), chunks.get(), [](const std::string&) {});
  }

  uint64_t Ino(const std::string& path) {
    uint64_t ino = fs::kRootIno;
    for (const auto& part : std::filesystem::path(path)) ino = fs->Lookup(ino, part.string()).value();
    return ino;
  }
  // Chunks of `path` not (yet) in memory or in flight.
  size_t Absent(const std::string& path) {
    size_t n = 0;
    for (const auto& e : fs->image().Extents(Ino(path))) {
      n += chunks->Present(fs->image().Chunk(e.chunk).digest) ? 0 : 1;
    }
    return n;
  }
  // Waits (up to 20 s) until every chunk of `path` is in memory or in flight.
  bool Arrives(const std::string& path) {
    for (int i = 0; i < 2000 && Absent(path) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return Absent(path) == 0;
  }
  void Read(const std::string& path, uint64_t offset, size_t size) {
    auto r = fs->Read(Ino(path), offset, size);
    REQUIRE(r.ok());
    REQUIRE(r->bytes == size);
  }
  uint64_t demand() const { return fs->fetch_counters().demand_misses; }
  // Waits (up to 20 s) until some chunk of `path` is in memory or in flight.
  bool ArrivesAny(const std::string& path) {
    const size_t all = fs->image().Extents(Ino(path)).size();
    for (int i = 0; i < 2000 && Absent(path) == all; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return Absent(path) < all;
  }
};

// A file store that remembers the range reads it was asked for, in order.
class RecordingStore : public chunkstore::ObjectStore {
 public:
  explicit RecordingStore(chunkstore::ObjectStore* inner, bool local = false)
      : inner_(inner), local_(local) {}
  std::string Url() const override { return inner_->Url(); }
  bool IsLocal() const override { return local_; }
  Status Put(const std::string& k, std::span<const uint8_t> d) override { return inner_->Put(k, d); }
  Status PutFile(const std::string& k, const std::string& p) override { return inner_->PutFile(k, p); }
  Result<std::shared_ptr<const chunkstore::Blob>> Get(const std::string& k) override { return inner_->Get(k); }
  Status GetRange(const std::string& k, uint64_t offset, std::span<uint8_t> out) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      ranges_.emplace_back(offset, out.size());
      keys_.push_back(k);
    }
    Status st = inner_->GetRange(k, offset, out);
    return tamper ? tamper(k, st, out) : st;
  }
  // Optional: sees every range read's key, result and bytes; its answer is
  // the read's (a missing, slow or damaged object).
  std::function<Status(const std::string& key, Status st, std::span<uint8_t> out)> tamper;
  Result<uint64_t> Size(const std::string& k) override { return inner_->Size(k); }
  Result<std::vector<std::string>> List(const std::string& p) override { return inner_->List(p); }
  Status Delete(const std::string& k) override { return inner_->Delete(k); }
  std::vector<std::pair<uint64_t, uint64_t>> ranges() {
    std::lock_guard<std::mutex> l(mu_);
    return ranges_;
  }
  std::vector<std::string> keys() {
    std::lock_guard<std::mutex> l(mu_);
    return keys_;
  }
  // Which request (its index) fetched `loc`, or -1.
  int RequestOf(const chunkstore::ChunkLocation& loc) {
    std::lock_guard<std::mutex> l(mu_);
    for (size_t i = 0; i < ranges_.size(); ++i) {
      if (keys_[i] == chunkstore::PackKey(loc.pack) && loc.offset >= ranges_[i].first &&
          loc.offset + loc.clen <= ranges_[i].first + ranges_[i].second) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }

 private:
  chunkstore::ObjectStore* inner_;
  const bool local_;
  std::mutex mu_;
  std::vector<std::pair<uint64_t, uint64_t>> ranges_;  // (offset, bytes)
  std::vector<std::string> keys_;
};

// A fixture's image served again through a recording store (remote unless
// `local`) by one fetch thread per pool, so that prefetch requests reach
// the store in queue order (the fixture's own reader is not used).
struct Recorded {
  explicit Recorded(Fixture& f, bool local = false)
      : rec(f.store.get(), local),
        reader(&rec, [] {
          chunkstore::ChunkReaderOptions ro;
          ro.fetch_threads = 1;
          return ro;
        }()),
        fs(std::move(fs::LoadImage(*f.store, f.image_id).value()), &reader, [](const std::string&) {}) {}
  RecordingStore rec;
  chunkstore::ChunkReader reader;
  fs::ImageFs fs;
};

// Waits (up to 20 s) until every chunk of `order` is in memory or in flight.
inline bool Arrive(const chunkstore::ChunkReader& reader, const fs::ImageFs& fs, const std::vector<uint32_t>& order) {
  bool all = false;
  for (int i = 0; i < 2000 && !all; ++i) {
    all = true;
    for (uint32_t c : order) all = all && reader.Present(fs.image().Chunk(c).digest);
    if (!all) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return all;
}

}  // namespace ferry::testing
