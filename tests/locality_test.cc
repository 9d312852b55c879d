// Locality prefetch (ImageFs::LocalityRuns): what a miss brings in besides
// itself, checked by which chunks are in memory or in flight and by the
// fetch counters, never by timing. No FUSE: ImageFs is called directly.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "builder/image_builder.h"
#include "chunkstore/file_store.h"
#include "fs/image_fs.h"
#include "fs/image_store.h"
#include "tests/support/bytes.h"
#include "tests/support/fs_util.h"

namespace ferry::testing {
namespace {

void WriteFile(const std::string& path, size_t size, uint32_t seed) {
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

  Fixture() {
    const std::string src = tmp.path() + "/src";
    for (int i = 0; i < 8; ++i) WriteFile(src + "/pkg/m" + std::to_string(i), 100'000, 10 + i);
    WriteFile(src + "/pkg/big", 3 << 20, 2);
    WriteFile(src + "/pkg/a_sub/x", 50'000, 3);
    WriteFile(src + "/data/huge", 12 << 20, 4);
    WriteFile(src + "/data/small", 20'000, 5);
    store = std::move(chunkstore::FileStore::Open(tmp.path() + "/store").value());
    builder::ImageBuilder b(store.get(), {});
    REQUIRE(b.AddDirectory(src).ok());
    auto sum = b.Finish("");
    REQUIRE(sum.ok());
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
};

TEST_CASE("locality: a second file missing in a directory prefetches its other small files") {
  Fixture fx;
  // Read from the end of the directory backwards: demand neighbours only
  // look forward, so only the directory batch can bring the earlier ones.
  fx.Read("pkg/m7", 0, 4096);
  CHECK(fx.fs->locality_chunks() == 0);  // one file: nothing for the directory yet
  CHECK(fx.Absent("pkg/m0") > 0);
  fx.Read("pkg/m6", 0, 4096);
  CHECK(fx.fs->locality_chunks() > 0);
  for (int i = 0; i < 6; ++i) REQUIRE(fx.Arrives("pkg/m" + std::to_string(i)));
  uint64_t before = fx.demand();
  for (int i = 0; i < 6; ++i) fx.Read("pkg/m" + std::to_string(i), 0, 100'000);
  CHECK(fx.demand() == before);  // every module was there before it was read
  // Not in the batch: files over the small-file bound, and subdirectories.
  CHECK(fx.Absent("pkg/big") > 0);
  CHECK(fx.Absent("pkg/a_sub/x") > 0);
}

TEST_CASE("locality: a file's first miss prefetches the rest of it, up to the whole-file bound") {
  Fixture fx;
  fx.Read("pkg/big", 0, 4096);
  REQUIRE(fx.Arrives("pkg/big"));
  uint64_t before = fx.demand();
  fx.Read("pkg/big", 2 << 20, 65536);
  fx.Read("pkg/big", (3 << 20) - 4096, 4096);
  CHECK(fx.demand() == before);

  // 12 MiB is over the bound: only what the read itself needs is fetched.
  uint64_t queued = fx.fs->locality_chunks();
  fx.Read("data/huge", 0, 4096);
  CHECK(fx.fs->locality_chunks() == queued);
  CHECK(fx.Absent("data/huge") > 10);
  before = fx.demand();
  fx.Read("data/huge", 10 << 20, 4096);
  CHECK(fx.demand() == before + 1);
}

}  // namespace
}  // namespace ferry::testing
