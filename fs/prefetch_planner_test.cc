// Unit tests for PrefetchPlanner: the plans it makes for reads and profiles
// of small images made by hand, with no store and no FUSE behind them (the
// planner never reads a byte). Expected plans are worked out from each
// image's layout (offsets, sizes, packs) and the policy's documented bounds,
// not taken from the planner.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "fs/image_writer.h"
#include "fs/prefetch_planner.h"

namespace ferry::fs {
namespace {

constexpr uint64_t kKiB = 1024, kMiB = 1024 * 1024;

// An image made by hand: directories, and files of equal-sized chunks laid
// back to back in the pack the test names, in the order they are added
// (chunk indices follow that order, as a build's do).
class TestImage {
 public:
  TestImage() {
    InodeSpec root = Spec(S_IFDIR | 0755, 0);
    root.attr.parent = kRootIno;
    writer_.AddInode(root);
  }
  uint32_t Dir(uint32_t parent, const std::string& name) {
    InodeSpec d = Spec(S_IFDIR | 0755, 0);
    d.attr.parent = parent;
    uint32_t ino = writer_.AddInode(d);
    writer_.inode(parent).entries.push_back({name, ino});
    return ino;
  }
  uint32_t File(uint32_t dir, const std::string& name, uint32_t chunks, uint64_t chunk_bytes, int pack) {
    InodeSpec f = Spec(S_IFREG | 0644, chunks * chunk_bytes);
    for (uint32_t k = 0; k < chunks; ++k) {
      chunkstore::ChunkLocation loc;
      loc.digest = Sha256("chunk " + std::to_string(next_chunk_++));
      loc.pack = Sha256("pack " + std::to_string(pack));
      loc.offset = pack_end_[pack];
      loc.clen = static_cast<uint32_t>(chunk_bytes);
      loc.ulen = static_cast<uint32_t>(chunk_bytes);
      pack_end_[pack] += chunk_bytes;
      f.extents.push_back({k * chunk_bytes, writer_.AddChunk(loc)});
    }
    uint32_t ino = writer_.AddInode(f);
    writer_.inode(dir).entries.push_back({name, ino});
    return ino;
  }
  ImageWriter& writer() { return writer_; }
  std::unique_ptr<ImageReader> Open() {
    auto r = ImageReader::Open(chunkstore::MakeBlob(writer_.Serialize()));
    REQUIRE(r.ok());
    return std::move(*r);
  }

 private:
  static InodeSpec Spec(uint32_t mode, uint64_t size) {
    InodeSpec s;
    s.attr.mode = mode;
    s.attr.size = size;
    s.attr.nlink = 1;
    return s;
  }
  ImageWriter writer_;
  uint64_t next_chunk_ = 0;
  std::map<int, uint64_t> pack_end_;
};

// The fetch path as the planner sees it: chunks are present once the test
// says so (as a ChunkReader's are once they have been read or queued).
class FakeFetchPath : public FetchPathView {
 public:
  bool Present(const Digest& digest) const override {
    std::lock_guard<std::mutex> lock(mu_);
    ++asked_;
    return present_.count(digest) != 0;
  }
  uint64_t prefetch_run_bytes() const override { return run_bytes; }
  uint64_t prefetch_gap_bytes() const override { return gap_bytes; }
  void Add(const Digest& digest) {
    std::lock_guard<std::mutex> lock(mu_);
    present_.insert(digest);
  }
  int asked() const {
    std::lock_guard<std::mutex> lock(mu_);
    return asked_;
  }
  uint64_t run_bytes = 1 * kMiB;
  uint64_t gap_bytes = 0;

 private:
  mutable std::mutex mu_;
  mutable int asked_ = 0;
  std::unordered_set<Digest, DigestHash> present_;
};

// A planner over a TestImage, and what its plans handed out, by chunk index.
struct Planned {
  explicit Planned(TestImage& t) : image(t.Open()), planner(*image, &fetch, [](const std::string&) {}) {
    for (uint32_t i = 0; i < image->chunks().size(); ++i) index[image->Chunk(i).digest] = i;
  }
  std::vector<uint32_t> Indices(const std::vector<chunkstore::ChunkLocation>& locs) const {
    std::vector<uint32_t> out;
    for (const auto& loc : locs) out.push_back(index.at(loc.digest));
    return out;
  }
  std::vector<uint32_t> Indices(const PrefetchPlanner::Runs& runs) const {
    std::vector<uint32_t> out;
    for (const auto& run : runs) {
      for (uint32_t i : Indices(run)) out.push_back(i);
    }
    return out;
  }
  // Plans a read as ImageFs::Read does, then makes present what a reader
  // would have: the read's own chunks and everything the plan handed out.
  PrefetchPlanner::ReadPlan Read(uint32_t ino, uint64_t offset, uint64_t size) {
    const uint64_t end = std::min(offset + size, image->inode(ino).size);
    PrefetchPlanner::ReadPlan plan = planner.PlanRead(ino, offset, end);
    for (const ExtentRecord& e : image->Extents(ino)) {
      if (e.file_offset < end && e.file_offset + image->chunks()[e.chunk].ulen > offset) {
        handed.insert(e.chunk);
        fetch.Add(image->Chunk(e.chunk).digest);
      }
    }
    for (uint32_t i : Indices(plan.neighbours)) Hand(i);
    for (uint32_t i : Indices(plan.later)) Hand(i);
    return plan;
  }
  void Hand(uint32_t i) {
    handed.insert(i);
    fetch.Add(image->Chunk(i).digest);
  }
  // The chunks of `ino` that hold bytes [from, to).
  std::set<uint32_t> ChunksOf(uint32_t ino, uint64_t from = 0, uint64_t to = UINT64_MAX) const {
    std::set<uint32_t> out;
    for (const ExtentRecord& e : image->Extents(ino)) {
      if (e.file_offset < to && e.file_offset + image->chunks()[e.chunk].ulen > from) out.insert(e.chunk);
    }
    return out;
  }
  // The chunks of `ino` handed out so far.
  std::set<uint32_t> HandedOf(uint32_t ino) const {
    std::set<uint32_t> out;
    for (uint32_t c : ChunksOf(ino)) {
      if (handed.count(c)) out.insert(c);
    }
    return out;
  }

  std::unique_ptr<ImageReader> image;
  FakeFetchPath fetch;
  PrefetchPlanner planner;
  std::unordered_map<Digest, uint32_t, DigestHash> index;
  std::set<uint32_t> handed;
};

// The policy's bounds, as prefetch_planner.cc documents them.
constexpr size_t kMaxNeighbours = 15;
constexpr uint64_t kDemandRunBytes = 128 * kKiB;  // the first chunk and its neighbours
constexpr uint64_t kMinWindow = 256 * kKiB, kMaxWindow = 4 * kMiB;
constexpr uint64_t kReadAround = 64 * kKiB;

TEST_CASE("planner: a first read that missed gets the chunks after it in its pack, up to 15 and 128 KiB") {
  TestImage t;
  // Each file in its own directory, so that no directory batch joins in.
  uint32_t a = t.File(t.Dir(kRootIno, "x"), "a", 40, 4 * kKiB, 0);   // 40 chunks of 4 KiB
  uint32_t b = t.File(t.Dir(kRootIno, "y"), "b", 4, 4 * kKiB, 0);    // right after a in pack 0
  uint32_t c = t.File(t.Dir(kRootIno, "z"), "c", 8, 32 * kKiB, 1);   // pack 1
  uint32_t d = t.File(t.Dir(kRootIno, "w"), "d", 8, 4 * kKiB, 2);
  Planned p(t);
  auto chunk = [&](uint32_t ino, size_t k) { return p.image->Extents(ino)[k].chunk; };

  // 4 KiB chunks: the count binds (16 chunks are 64 KiB).
  auto plan = p.planner.PlanRead(a, 0, 4 * kKiB);
  std::vector<uint32_t> want;
  for (size_t k = 1; k <= kMaxNeighbours; ++k) want.push_back(chunk(a, k));
  CHECK(p.Indices(plan.neighbours) == want);

  // 32 KiB chunks: the bytes bind (the first chunk and three more are 128 KiB).
  plan = p.planner.PlanRead(c, 0, 32 * kKiB);
  want.clear();
  for (size_t k = 1; (k + 1) * 32 * kKiB <= kDemandRunBytes; ++k) want.push_back(chunk(c, k));
  CHECK(want.size() == 3);
  CHECK(p.Indices(plan.neighbours) == want);

  // The next chunk after b's last is in another pack: the neighbours end there.
  plan = p.planner.PlanRead(b, 0, 4 * kKiB);
  CHECK(p.Indices(plan.neighbours) == std::vector<uint32_t>{chunk(b, 1), chunk(b, 2), chunk(b, 3)});

  // A read whose first chunk is already on its way gets no neighbours.
  p.fetch.Add(p.image->Chunk(chunk(d, 0)).digest);
  const int asked = p.fetch.asked();
  plan = p.planner.PlanRead(d, 0, 4 * kKiB);
  CHECK(plan.neighbours.empty());
  CHECK(p.fetch.asked() == asked + 1);
}

TEST_CASE("planner: a streaming read doubles its window up to 4 MiB and stops at the file's end, unless reads cross files") {
  TestImage t;
  // Three 12 MiB files back to back in pack 0 (over the 8 MiB whole-file
  // bound, so that only readahead brings their later parts), and a small
  // file far after them.
  const uint64_t size = 12 * kMiB, step = 1 * kMiB;
  uint32_t dir = t.Dir(kRootIno, "d");
  uint32_t a = t.File(dir, "a", size / (64 * kKiB), 64 * kKiB, 0);
  uint32_t b = t.File(dir, "b", size / (64 * kKiB), 64 * kKiB, 0);
  uint32_t c = t.File(dir, "c", size / (64 * kKiB), 64 * kKiB, 0);
  uint32_t far = t.File(t.Dir(kRootIno, "f"), "far", 2, 64 * kKiB, 1);
  Planned p(t);
  p.fetch.run_bytes = 64 * kKiB;  // one chunk per run: the window ends exactly where it says

  p.Read(far, 0, 64 * kKiB);  // so that a's first read does not follow on anything
  // a's first read is not streaming: no window beyond the request.
  p.Read(a, 0, step);
  CHECK(p.HandedOf(a) == p.ChunksOf(a, 0, step));
  SECTION("read to the end, then on into the next file") {
    uint64_t window = 0;
    for (uint64_t off = step; off < size; off += step) {
      window = std::clamp(window * 2, kMinWindow, kMaxWindow);
      p.Read(a, off, step);
      INFO("read at " << off << ", window " << window);
      CHECK(p.HandedOf(a) == p.ChunksOf(a, 0, std::min(off + step + window, size)));
      CHECK(p.HandedOf(b).empty());  // a program reading one big file says nothing of the next
    }
    CHECK(window == kMaxWindow);
    // From a's end straight into b's start: the window runs on into c.
    for (uint64_t off = 0; off < size; off += step) {
      p.Read(b, off, step);
      INFO("read of b at " << off);
      CHECK(p.HandedOf(b) == p.ChunksOf(b, 0, std::min(off + step + kMaxWindow, size)));
      const uint64_t into_c = off + step + kMaxWindow > size ? off + step + kMaxWindow - size : 0;
      CHECK(p.HandedOf(c) == p.ChunksOf(c, 0, into_c));
    }
    CHECK(p.HandedOf(c) == p.ChunksOf(c, 0, kMaxWindow));
  }
  SECTION("stop one chunk short of the end, then read the next file") {
    // The reads stream on (b starts right after a's last chunk) but did not
    // go from a's end into b: b is one big file read front to back.
    for (uint64_t off = step; off + step < size; off += step) p.Read(a, off, step);
    p.Read(a, size - step, step - 64 * kKiB);
    for (uint64_t off = 0; off < size; off += step) p.Read(b, off, step);
    CHECK(p.HandedOf(b) == p.ChunksOf(b));
    CHECK(p.HandedOf(c).empty());
  }
}

TEST_CASE("planner: a second missed file of a directory brings the directory's other small files") {
  TestImage t;
  // Each file in a pack of its own, so that neither neighbours nor
  // readahead reach another file.
  uint32_t pkg = t.Dir(kRootIno, "pkg");
  std::vector<uint32_t> small;
  for (int i = 0; i < 5; ++i) small.push_back(t.File(pkg, "s" + std::to_string(i), 2, 16 * kKiB, i));
  uint32_t elf = t.File(pkg, "elf", 2, 16 * kKiB, 10);           // has EARLY: a program or library
  uint32_t big = t.File(pkg, "big", 8, 64 * kKiB, 11);           // 512 KiB: over the 256 KiB bound
  uint32_t nested = t.File(t.Dir(pkg, "sub"), "t", 2, 16 * kKiB, 12);  // not in pkg itself
  t.writer().AddEarly(elf, 0, 100);
  uint32_t q = t.Dir(kRootIno, "q");
  std::vector<uint32_t> qs;
  for (int i = 0; i < 3; ++i) qs.push_back(t.File(q, "q" + std::to_string(i), 2, 16 * kKiB, 20 + i));
  Planned p(t);

  p.Read(small[0], 0, 16 * kKiB);
  for (int i = 1; i < 5; ++i) CHECK(p.HandedOf(small[i]).empty());  // one file read costs nothing extra
  p.Read(small[3], 0, 16 * kKiB);
  for (int i = 0; i < 5; ++i) CHECK(p.HandedOf(small[i]) == p.ChunksOf(small[i]));
  CHECK(p.HandedOf(elf).empty());
  CHECK(p.HandedOf(big).empty());
  CHECK(p.HandedOf(nested).empty());

  // A first read whose chunk was already there does not count as a miss.
  p.fetch.Add(p.image->Chunk(p.image->Extents(qs[0])[0].chunk).digest);
  p.Read(qs[0], 0, 16 * kKiB);
  p.Read(qs[1], 0, 16 * kKiB);  // the directory's first miss
  CHECK(p.HandedOf(qs[2]).empty());
}

TEST_CASE("planner: a program's first read brings what it loads, transitively, early parts first") {
  TestImage t;
  // Files of 16 chunks of 64 KiB, each in a pack of its own; each has one
  // EARLY range of 4 KiB.
  const uint64_t chunk = 64 * kKiB;
  uint32_t bin = t.Dir(kRootIno, "bin"), lib = t.Dir(kRootIno, "lib");
  uint32_t prog = t.File(bin, "prog", 16, chunk, 0);
  uint32_t l1 = t.File(lib, "l1", 16, chunk, 1);
  uint32_t l2 = t.File(lib, "l2", 16, chunk, 2);
  uint32_t l3 = t.File(lib, "l3", 16, chunk, 3);
  uint32_t other = t.File(lib, "other", 16, chunk, 4);
  const std::map<uint32_t, uint64_t> early_at = {
      {prog, 512 * kKiB}, {l1, 256 * kKiB}, {l2, 768 * kKiB}, {l3, 128 * kKiB}, {other, 0}};
  for (const auto& [ino, off] : early_at) t.writer().AddEarly(ino, off, 4 * kKiB);
  t.writer().AddLoads(prog, {l1, l2});
  t.writer().AddLoads(l1, {l3});
  Planned p(t);
  // The chunks the loader touches first: the EARLY range widened by 64 KiB.
  auto early = [&](uint32_t ino) {
    const uint64_t off = early_at.at(ino);
    return p.ChunksOf(ino, off - std::min(off, kReadAround), off + 4 * kKiB + kReadAround);
  };
  REQUIRE(early(l1).size() == 3);

  auto plan = p.Read(prog, 0, chunk);
  for (uint32_t f : {l1, l2, l3}) CHECK(p.HandedOf(f) == p.ChunksOf(f));  // l3 through l1
  CHECK(p.HandedOf(other).empty());
  CHECK(p.HandedOf(prog) == p.ChunksOf(prog));  // and the rest of the program itself
  // In the order they go out: the program's early chunks, its libraries'
  // early chunks, the rest of its libraries, the rest of the program.
  auto kind = [&](uint32_t i) {
    if (early(prog).count(i)) return 0;
    for (uint32_t f : {l1, l2, l3}) {
      if (early(f).count(i)) return 1;
    }
    for (uint32_t f : {l1, l2, l3}) {
      if (p.ChunksOf(f).count(i)) return 2;
    }
    return 3;
  };
  std::vector<int> kinds;
  for (uint32_t i : p.Indices(plan.later)) kinds.push_back(kind(i));
  CHECK(std::is_sorted(kinds.begin(), kinds.end()));
  CHECK(std::count(kinds.begin(), kinds.end(), 0) == static_cast<long>(early(prog).size()));
  CHECK(std::count(kinds.begin(), kinds.end(), 1) ==
        static_cast<long>(early(l1).size() + early(l2).size() + early(l3).size()));
}

TEST_CASE("planner: reading, one after another, files that came as what a program loads opens no window") {
  TestImage t;
  // l1, l2 and `after` lie back to back in one pack, so that reading l1
  // and then l2 whole looks like a copy going from file to file.
  uint32_t prog = t.File(t.Dir(kRootIno, "bin"), "prog", 4, 64 * kKiB, 0);
  uint32_t lib = t.Dir(kRootIno, "lib");
  uint32_t l1 = t.File(lib, "l1", 4, 64 * kKiB, 1);
  uint32_t l2 = t.File(lib, "l2", 4, 64 * kKiB, 1);
  uint32_t after = t.File(lib, "after", 8, 64 * kKiB, 1);
  t.writer().AddLoads(prog, {l1, l2});
  Planned p(t);
  p.Read(prog, 0, 64 * kKiB);
  REQUIRE(p.HandedOf(l2) == p.ChunksOf(l2));
  p.Read(l1, 0, 256 * kKiB);
  p.Read(l2, 0, 256 * kKiB);
  CHECK(p.HandedOf(after).empty());
}

// An image with a bit of everything: directories of small files, a
// program and what it loads, a file over the whole-file bound.
TestImage Mixed(std::vector<uint32_t>* files) {
  TestImage t;
  int pack = 0;
  for (int d = 0; d < 3; ++d) {
    uint32_t dir = t.Dir(kRootIno, "d" + std::to_string(d));
    for (int i = 0; i < 4; ++i) files->push_back(t.File(dir, "f" + std::to_string(i), 3, 24 * kKiB, pack++ / 3));
  }
  uint32_t bin = t.Dir(kRootIno, "bin");
  uint32_t prog = t.File(bin, "prog", 10, 64 * kKiB, pack++);
  uint32_t l1 = t.File(bin, "l1", 10, 64 * kKiB, pack);
  uint32_t l2 = t.File(bin, "l2", 10, 64 * kKiB, pack++);
  t.writer().AddLoads(prog, {l1});
  t.writer().AddLoads(l1, {l2, prog});
  t.writer().AddEarly(l1, 300 * kKiB, 1000);
  uint32_t huge = t.File(bin, "huge", 160, 64 * kKiB, pack++);  // 10 MiB
  for (uint32_t f : {prog, l1, l2, huge}) files->push_back(f);
  return t;
}

TEST_CASE("planner: a chunk handed out is never handed out again") {
  std::vector<uint32_t> files;
  TestImage t = Mixed(&files);
  Planned p(t);
  std::vector<uint32_t> all;  // every chunk handed out, as often as it was
  auto replay = p.planner.PlanReplay(Profile{{5, 6, 7, 40, 41}, {}, {}, {}, {}}, false);
  REQUIRE(replay.has_value());
  for (uint32_t i : p.Indices(*replay)) {
    all.push_back(i);
    p.Hand(i);
  }
  for (int round = 0; round < 2; ++round) {
    for (uint32_t f : files) {
      for (uint64_t off = 0; off < p.image->inode(f).size; off += 40 * kKiB) {
        // The read's own first chunk, when it missed, is claimed by the read.
        const uint32_t first = *p.ChunksOf(f, off, off + 1).begin();
        const bool missed = p.handed.count(first) == 0;
        auto plan = p.Read(f, off, 40 * kKiB);
        if (missed) all.push_back(first);
        for (uint32_t i : p.Indices(plan.neighbours)) all.push_back(i);
        for (uint32_t i : p.Indices(plan.later)) all.push_back(i);
      }
    }
  }
  std::map<uint32_t, int> times;
  for (uint32_t i : all) ++times[i];
  for (const auto& [i, n] : times) {
    INFO("chunk " << i);
    CHECK(n == 1);
  }
  CHECK(times.size() == p.image->chunks().size());  // every chunk was read
}

TEST_CASE("planner: concurrent reads never hand one chunk out twice") {
  std::vector<uint32_t> files;
  TestImage t = Mixed(&files);
  Planned p(t);  // nothing is ever present: every read misses
  std::mutex mu;
  std::vector<uint32_t> all;
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      std::vector<uint32_t> mine;
      for (size_t n = 0; n < files.size(); ++n) {
        const uint32_t f = files[(n * 5 + k * 3) % files.size()];  // each thread its own order
        for (uint64_t off = 0; off < p.image->inode(f).size; off += 64 * kKiB) {
          auto plan = p.planner.PlanRead(f, off, std::min(off + 64 * kKiB, p.image->inode(f).size));
          for (uint32_t i : p.Indices(plan.neighbours)) mine.push_back(i);
          for (uint32_t i : p.Indices(plan.later)) mine.push_back(i);
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      all.insert(all.end(), mine.begin(), mine.end());
    });
  }
  for (auto& th : threads) th.join();
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
  CHECK_FALSE(all.empty());
}

TEST_CASE("planner: a chunk of the start-up profile gets no readahead; replay runs go in order of first use") {
  TestImage t;
  uint32_t pf = t.File(t.Dir(kRootIno, "p"), "pf", 16, 64 * kKiB, 0);
  uint32_t qf = t.File(t.Dir(kRootIno, "q"), "qf", 16, 64 * kKiB, 1);
  Planned p(t);
  auto chunk = [&](uint32_t ino, size_t k) { return p.image->Extents(ino)[k].chunk; };
  const Profile profile{{chunk(qf, 0), chunk(pf, 4), chunk(pf, 5), chunk(pf, 6), chunk(pf, 7)}, {}, {}, {}, {}};

  auto runs = p.planner.PlanReplay(profile, /*fetching=*/false);
  REQUIRE(runs.has_value());
  // Two range reads: qf's chunk (needed first), then pf's four, which lie
  // back to back in one pack (256 KiB: within the first MiB's short reads).
  REQUIRE(runs->size() == 2);
  CHECK(p.Indices((*runs)[0]) == std::vector<uint32_t>{chunk(qf, 0)});
  CHECK(p.Indices((*runs)[1]) ==
        std::vector<uint32_t>{chunk(pf, 4), chunk(pf, 5), chunk(pf, 6), chunk(pf, 7)});
  CHECK(p.planner.profile_chunks() == 5);

  // Reads that start in a profiled chunk: no plan, and no question asked.
  const int asked = p.fetch.asked();
  for (auto [ino, off] : {std::pair{pf, 4 * 64 * kKiB}, std::pair{qf, uint64_t{0}}}) {
    auto plan = p.planner.PlanRead(ino, off, off + 64 * kKiB);
    CHECK(plan.neighbours.empty());
    CHECK(plan.later.empty());
  }
  CHECK(p.fetch.asked() == asked);
  // A read before the profiled chunks is planned, and leaves them out.
  auto plan = p.Read(pf, 0, 64 * kKiB);
  CHECK_FALSE(plan.neighbours.empty());
  std::set<uint32_t> planned;
  for (uint32_t i : p.Indices(plan.neighbours)) planned.insert(i);
  for (uint32_t i : p.Indices(plan.later)) planned.insert(i);
  for (size_t k = 4; k < 8; ++k) CHECK(planned.count(chunk(pf, k)) == 0);
  CHECK(planned.count(chunk(pf, 8)) == 1);  // the rest of the file, past them

  // A version 3 profile whose digests are not this image's is refused and
  // marks nothing.
  Profile lying{{chunk(qf, 5)}, {}, {}, {Sha256(std::string("not it"))}, {64 * kKiB}};
  CHECK_FALSE(p.planner.PlanReplay(lying, false).has_value());
  CHECK(p.planner.profile_chunks() == 5);
  CHECK_FALSE(p.planner.PlanRead(qf, 5 * 64 * kKiB, 6 * 64 * kKiB).neighbours.empty());
}

}  // namespace
}  // namespace ferry::fs
