// Unit tests for the builder: chunking, the tree and its path rules, and how
// packs are uploaded (what programs load and modules import: loads_test.cc).
#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "builder/chunk_ingester.h"
#include "builder/chunker.h"
#include "builder/image_builder.h"
#include "builder/tree.h"
#include "chunkstore/file_store.h"
#include "tests/support/fs_util.h"

namespace ferry::builder {
namespace {

std::vector<uint8_t> Random(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    b = static_cast<uint8_t>(seed);
  }
  return v;
}

// Feeds `data` to a ChunkIngester as one file region, `piece` bytes at a
// time (through Write, or read into Reserve's room and Commit, in turn,
// sometimes committing less than was reserved), and returns the chunks as
// the ingester stored them: each one read back from its pack, decompressed
// and checked against its address and against the bytes fed at its offset.
std::vector<std::vector<uint8_t>> Cut(const std::vector<uint8_t>& data, size_t piece) {
  testing::ScopedTempDir tmp("ferry-cut");
  auto store = chunkstore::FileStore::Open(tmp.path() + "/store");
  REQUIRE(store.ok());
  std::vector<PendingExtent> extents;
  std::vector<chunkstore::ChunkLocation> locations;
  {
    IngestOptions opt;
    opt.threads = 2;
    ChunkIngester ing(store->get(), tmp.path(), opt);
    ing.BeginRegion(&extents, 0);
    size_t i = 0;
    for (int turn = 0; i < data.size(); ++turn) {
      size_t n = std::min(piece, data.size() - i);
      if (turn % 2 == 0) {
        REQUIRE(ing.Write(std::span(data).subspan(i, n)).ok());
      } else {
        std::span<uint8_t> room = ing.Reserve(n);
        REQUIRE(room.size() == n);
        size_t fill = (turn % 4 == 1 && n > 1) ? n / 2 : n;  // a short read
        std::memcpy(room.data(), data.data() + i, fill);
        // Bytes reserved but not committed are not part of the data.
        std::memset(room.data() + fill, 0xee, n - fill);
        REQUIRE(ing.Commit(fill).ok());
        n = fill;
      }
      i += n;
    }
    REQUIRE(ing.EndRegion().ok());
    REQUIRE(ing.FinishPlacing().ok());
    REQUIRE(ing.AwaitUploads().ok());
    CHECK(ing.stats().bytes_in == data.size());
    locations = ing.locations();
  }
  std::vector<std::vector<uint8_t>> out;
  uint64_t at = 0;
  for (const PendingExtent& e : extents) {
    REQUIRE(e.file_offset == at);
    const chunkstore::ChunkLocation& loc = locations.at(e.location);
    auto pack = (*store)->Get(chunkstore::PackKey(loc.pack));
    REQUIRE(pack.ok());
    std::span<const uint8_t> bytes = (*pack)->bytes();
    REQUIRE(loc.offset + loc.clen <= bytes.size());
    std::vector<uint8_t> chunk;
    REQUIRE(chunkstore::DecompressAndVerify(bytes.subspan(loc.offset, loc.clen), loc.ulen,
                                            loc.digest, &chunk)
                .ok());
    REQUIRE(at + chunk.size() <= data.size());
    CHECK(std::equal(chunk.begin(), chunk.end(), data.begin() + static_cast<ptrdiff_t>(at)));
    at += chunk.size();
    out.push_back(std::move(chunk));
  }
  CHECK(at == data.size());
  return out;
}

TEST_CASE("chunker: sizes within bounds, independent of how data is fed") {
  auto data = Random(8 << 20, 42);
  auto a = Cut(data, 1 << 20);
  auto b = Cut(data, 4099);
  // (Double parentheses: Catch would print megabytes of both sides.)
  REQUIRE((a == b));
  REQUIRE((Cut(data, 700 << 10) == a));  // pieces bigger than the biggest chunk
  size_t total = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    total += a[i].size();
    CHECK(a[i].size() <= 512 * 1024);
    if (i + 1 < a.size()) CHECK(a[i].size() >= 32 * 1024);
  }
  CHECK(total == data.size());
  // The average lands near the target (normalized chunking).
  double avg = double(data.size()) / double(a.size());
  CHECK(avg > 64 * 1024);
  CHECK(avg < 256 * 1024);
}

TEST_CASE("chunker: an insertion changes only nearby chunks") {
  auto data = Random(8 << 20, 7);
  auto before = Cut(data, 1 << 20);
  data.insert(data.begin() + (4 << 20), {'x', 'y', 'z'});
  auto after = Cut(data, 1 << 20);
  std::set<std::vector<uint8_t>> old_set(before.begin(), before.end());
  size_t changed = 0;
  for (const auto& c : after) changed += old_set.count(c) ? 0 : 1;
  CHECK(changed >= 1);
  CHECK(changed <= 3);
}

TEST_CASE("chunker: short input is one chunk") {
  auto data = Random(1000, 1);
  auto chunks = Cut(data, 100);
  REQUIRE(chunks.size() == 1);
  CHECK((chunks[0] == data));
  CHECK(Cut({}, 10).empty());
}

std::shared_ptr<TreeNode> Node(uint32_t mode, int layer = 0) {
  auto n = std::make_shared<TreeNode>();
  n->mode = mode;
  n->layer = layer;
  return n;
}

TEST_CASE("tree: paths that leave the root are refused") {
  for (std::string bad : std::vector<std::string>{"../x", "a/../../x", "/etc/passwd", "a/..", std::string(256, 'n')}) {
    auto r = Tree::SplitPath(bad);
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
  }
  CHECK(Tree::SplitPath("./a//b/").value() == std::vector<std::string>{"a", "b"});
  CHECK(Tree::SplitPath(".").value().empty());
}

TEST_CASE("tree: a link cannot be used to escape") {
  Tree t;
  auto link = Node(S_IFLNK | 0777);
  link->symlink = "/etc";
  REQUIRE(t.Put("evil", link).ok());
  Status st = t.Put("evil/passwd", Node(S_IFREG | 0644));
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("evil/passwd") != std::string::npos);
}

TEST_CASE("tree: whiteouts and opaque directories hide lower layers only") {
  Tree t;
  REQUIRE(t.Put("etc", Node(S_IFDIR | 0755, 0)).ok());
  REQUIRE(t.Put("etc/a", Node(S_IFREG | 0644, 0)).ok());
  REQUIRE(t.Put("etc/b", Node(S_IFREG | 0644, 0)).ok());
  REQUIRE(t.Put("opt", Node(S_IFDIR | 0755, 0)).ok());
  REQUIRE(t.Put("opt/old", Node(S_IFREG | 0644, 0)).ok());
  t.set_layer(1);
  CHECK(t.ApplyWhiteout("etc/.wh.a", 1).value());
  REQUIRE(t.Put("opt/new", Node(S_IFREG | 0644, 1)).ok());
  CHECK(t.ApplyWhiteout("opt/.wh..wh..opq", 1).value());
  CHECK_FALSE(t.ApplyWhiteout("etc/b", 1).value());
  CHECK(t.Get("etc/a").status().code() == StatusCode::kNotFound);
  CHECK(t.Get("etc/b").ok());
  CHECK(t.Get("opt/old").status().code() == StatusCode::kNotFound);
  CHECK(t.Get("opt/new").ok());
}

// A file:// store whose pack uploads are slow, counted, and can fail.
class SlowPackStore final : public chunkstore::ObjectStore {
 public:
  explicit SlowPackStore(std::unique_ptr<chunkstore::FileStore> inner) : inner_(std::move(inner)) {}
  std::string Url() const override { return inner_->Url(); }
  bool IsLocal() const override { return true; }
  Status Put(const std::string& key, std::span<const uint8_t> data) override {
    if (key.rfind("images/", 0) == 0) {
      // By now every pack must be in the store.
      packs_when_image_put = CountPacks();
    }
    return inner_->Put(key, data);
  }
  Status PutFile(const std::string& key, const std::string& path) override {
    int now = ++in_flight;
    for (int seen = max_in_flight.load(); now > seen && !max_in_flight.compare_exchange_weak(seen, now);) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    int n = ++pack_puts;
    Status st = n == fail_put ? UnavailableError("injected failure uploading " + key)
                              : inner_->PutFile(key, path);
    --in_flight;
    return st;
  }
  Result<std::shared_ptr<const chunkstore::Blob>> Get(const std::string& key) override { return inner_->Get(key); }
  Status GetRange(const std::string& key, uint64_t offset, std::span<uint8_t> out) override {
    return inner_->GetRange(key, offset, out);
  }
  Result<uint64_t> Size(const std::string& key) override { return inner_->Size(key); }
  Result<std::vector<std::string>> List(const std::string& prefix) override { return inner_->List(prefix); }
  Status Delete(const std::string& key) override { return inner_->Delete(key); }

  size_t CountPacks() {
    auto keys = inner_->List("packs/");
    return keys.ok() ? keys->size() : 0;
  }

  std::atomic<int> in_flight{0}, max_in_flight{0}, pack_puts{0};
  int fail_put = 0;  // this upload (1-based) fails; 0: none
  size_t packs_when_image_put = 0;

 private:
  std::unique_ptr<chunkstore::FileStore> inner_;
};

// A source tree of `files` files of 48 KiB of random bytes each.
std::string MakeSource(const std::string& dir, int files) {
  std::filesystem::create_directories(dir);
  for (int i = 0; i < files; ++i) {
    auto bytes = Random(48 << 10, 1000 + i);
    std::ofstream(dir + "/f" + std::to_string(i), std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  return dir;
}

BuildOptions SmallPacks() {
  BuildOptions opt;
  opt.ingest.pack_target_bytes = 256 << 10;  // about five files a pack
  return opt;
}

TEST_CASE("packs upload in the background, a bounded number at once, all before the image") {
  testing::ScopedTempDir tmp("ferry-uploads");
  std::string src = MakeSource(tmp.path() + "/src", 60);
  auto inner = chunkstore::FileStore::Open(tmp.path() + "/store");
  REQUIRE(inner.ok());
  SlowPackStore store(std::move(*inner));
  ImageBuilder b(&store, SmallPacks());
  REQUIRE(b.AddDirectory(src).ok());
  auto sum = b.Finish("t");
  REQUIRE(sum.ok());
  CHECK(sum->ingest.packs >= 10);
  CHECK(store.pack_puts.load() == static_cast<int>(sum->ingest.packs));
  CHECK(store.CountPacks() == sum->ingest.packs);
  CHECK(store.packs_when_image_put == sum->ingest.packs);
  // Uploads overlapped (each takes 30 ms), and never more than two at once.
  CHECK(store.max_in_flight.load() == 2);
}

TEST_CASE("a pack that fails to upload fails the build: no image, no ref, no temporary file left") {
  int packs = 0;
  {
    testing::ScopedTempDir tmp("ferry-upload-count");
    auto store = chunkstore::FileStore::Open(tmp.path() + "/store");
    REQUIRE(store.ok());
    ImageBuilder b(store->get(), SmallPacks());
    REQUIRE(b.AddDirectory(MakeSource(tmp.path() + "/src", 60)).ok());
    auto sum = b.Finish("");
    REQUIRE(sum.ok());
    packs = static_cast<int>(sum->ingest.packs);
  }
  REQUIRE(packs >= 4);
  for (int fail : {1, 3, packs}) {  // the first, one in the middle, the last
    INFO("upload " << fail << " fails");
    testing::ScopedTempDir tmp("ferry-upload-fails");
    std::string src = MakeSource(tmp.path() + "/src", 60);
    auto inner = chunkstore::FileStore::Open(tmp.path() + "/store");
    REQUIRE(inner.ok());
    SlowPackStore store(std::move(*inner));
    store.fail_put = fail;
    // Packs are written where a store that is not file:// has them: in
    // $TMPDIR.
    std::string temp_dir = tmp.path() + "/tmpdir";
    std::filesystem::create_directories(temp_dir);
    const char* old_tmpdir = getenv("TMPDIR");
    std::string saved = old_tmpdir ? old_tmpdir : "";
    setenv("TMPDIR", temp_dir.c_str(), 1);
    {
      ImageBuilder b(&store, SmallPacks());
      REQUIRE(b.AddDirectory(src).ok());
      auto sum = b.Finish("t");
      REQUIRE_FALSE(sum.ok());
      INFO(sum.status().ToString());
      CHECK(sum.status().ToString().find("injected failure uploading packs/") != std::string::npos);
    }
    if (old_tmpdir) {
      setenv("TMPDIR", saved.c_str(), 1);
    } else {
      unsetenv("TMPDIR");
    }
    CHECK(store.List("images/")->empty());
    CHECK(store.List("refs/")->empty());
    size_t temps = 0;
    for (auto& e : std::filesystem::directory_iterator(temp_dir)) {
      INFO(e.path());
      ++temps;
    }
    CHECK(temps == 0);
  }
}

TEST_CASE("a file gone or replaced after the scan is refused as changed, naming it, with no image") {
  for (bool replace_by_link : {false, true}) {
    INFO((replace_by_link ? "replaced by a symlink" : "removed"));
    testing::ScopedTempDir tmp("ferry-vanished");
    auto store = chunkstore::FileStore::Open(tmp.path() + "/store");
    REQUIRE(store.ok());
    std::string src = MakeSource(tmp.path() + "/src", 8);
    std::string victim;
    for (auto& e : std::filesystem::recursive_directory_iterator(src)) {
      if (e.is_regular_file()) victim = e.path().string();
    }
    REQUIRE(!victim.empty());
    ImageBuilder b(store->get(), SmallPacks());
    REQUIRE(b.AddDirectory(src).ok());
    REQUIRE(unlink(victim.c_str()) == 0);
    if (replace_by_link) REQUIRE(symlink("elsewhere", victim.c_str()) == 0);
    auto sum = b.Finish("t");
    REQUIRE_FALSE(sum.ok());
    INFO(sum.status().ToString());
    CHECK(sum.status().code() == StatusCode::kFailedPrecondition);
    CHECK(sum.status().ToString().find(victim + " changed while the image was being built") !=
          std::string::npos);
    CHECK((*store)->List("images/")->empty());
    CHECK((*store)->List("refs/")->empty());
  }
}

}  // namespace
}  // namespace ferry::builder
