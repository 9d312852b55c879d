// Prefetch without and with a profile, through ImageFs and its ChunkReader
// (the plans alone are in fs/prefetch_planner_test.cc): what a miss brings
// in besides itself (PrefetchPlanner::LocalityRuns), and which range reads
// a profile replay issues (ImageFs::ReplayProfile), checked by which chunks
// are in memory or in flight, by the fetch counters and by the requests the
// store sees, never by timing. No FUSE: ImageFs is called directly.
#include <catch2/catch.hpp>
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
#include "tests/locality_fixture.h"
#include "tests/support/fs_util.h"

namespace ferry::testing {
namespace {

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
  // Not in the batch: files over the small-file bound, and subdirectories.
  // (Checked before the reads below: reading m0, m1, ... in order streams
  // through the pack, and streaming readahead may then fetch them.)
  CHECK(fx.Absent("pkg/big") > 0);
  CHECK(fx.Absent("pkg/a_sub/x") > 0);
  uint64_t before = fx.demand();
  for (int i = 0; i < 6; ++i) fx.Read("pkg/m" + std::to_string(i), 0, 100'000);
  CHECK(fx.demand() == before);  // every module was there before it was read
}

// Copies host file `from` (following links) to `to`, creating directories.
void CopyHostFile(const std::string& from, const std::string& to) {
  std::filesystem::create_directories(std::filesystem::path(to).parent_path());
  std::filesystem::copy_file(std::filesystem::canonical(from), to,
                             std::filesystem::copy_options::overwrite_existing);
}

TEST_CASE("locality: a directory batch leaves out programs and libraries") {
  // d/: a copy of the host's /bin/sh (an ELF program: it has EARLY
  // records), first in pack order, then three small data files, read so
  // that nothing after a read (its neighbours, a readahead) is the program.
  Fixture fx([](const std::string& src) {
    CopyHostFile("/bin/sh", src + "/d/0prog");
    for (const char* name : {"a", "b", "c", "d"}) WriteFile(src + "/d/" + name, 20'000, name[0]);
  });
  REQUIRE(!fx.fs->image().Early(fx.Ino("d/0prog")).empty());
  REQUIRE(fx.fs->image().inode(fx.Ino("d/0prog")).size <= (256u << 10));  // small enough for a batch
  size_t prog_chunks = fx.fs->image().Extents(fx.Ino("d/0prog")).size();
  fx.Read("d/d", 0, 4096);
  fx.Read("d/c", 0, 4096);  // the second miss in d/: its other small files
  CHECK(fx.Arrives("d/a"));
  CHECK(fx.Arrives("d/b"));
  // Had the program been in the batch, it would be in flight with a and b
  // (the batch's chunks go out in runs of pack neighbours, first to last).
  CHECK(fx.Absent("d/0prog") == prog_chunks);
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


// The host's /bin/sh with its interpreter and libraries, each at the path
// the loader would find it: nothing else in their directories, and in
// other directories than the program. Sets `interp` and `libs` (image
// paths, without the leading '/').
std::function<void(const std::string&)> HostShell(std::string* interp_out, std::vector<std::string>* libs_out) {
  return [interp_out, libs_out](const std::string& src) {
    auto& interp = *interp_out;
    auto& libs = *libs_out;
    CopyHostFile("/bin/sh", src + "/usr/bin/sh");
    std::ifstream in("/bin/sh", std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto loads = builder::ReadElfLoads(std::move(bytes));
    REQUIRE(loads != nullptr);
    REQUIRE(!loads->interp.empty());
    interp = loads->interp.substr(1);
    CopyHostFile(loads->interp, src + loads->interp);
    for (const std::string& name : loads->needed) {
      for (const char* dir : {"/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/lib64", "/lib"}) {
        std::error_code ec;
        auto real = std::filesystem::canonical(std::string(dir) + "/" + name, ec);
        if (ec) continue;
        CopyHostFile(real, src + real.string());
        libs.push_back(real.string().substr(1));
        break;
      }
    }
    REQUIRE(!libs.empty());
  };
}

TEST_CASE("locality: a program's first miss prefetches what its loader opens (LOADS)") {
  std::vector<std::string> libs;
  std::string interp;
  Fixture fx(HostShell(&interp, &libs));
  uint64_t sh = fx.Ino("usr/bin/sh");
  CHECK(fx.fs->image().Loads(sh).size() == 1 + libs.size());  // interpreter + libraries (no ld.so.cache here)

  fx.Read("usr/bin/sh", 0, 4096);  // the kernel reading the ELF header at exec
  CHECK(fx.Arrives(interp));
  for (const auto& lib : libs) {
    INFO(lib);
    CHECK(fx.Arrives(lib));
  }
  uint64_t before = fx.demand();
  fx.Read(interp, 0, 4096);  // the loader, then the libraries: no more misses
  for (const auto& lib : libs) fx.Read(lib, 0, 4096);
  CHECK(fx.demand() == before);
}

TEST_CASE("locality: a program whose first chunk came with a neighbour's read still prefetches what it loads") {
  std::vector<std::string> libs;
  std::string interp;
  auto shell = HostShell(&interp, &libs);
  // usr/bin/a0 lies just before the program in pack order: its demand
  // read brings the program's first chunk along as a neighbour.
  Fixture fx([&](const std::string& src) {
    shell(src);
    WriteFile(src + "/usr/bin/a0", 1000, 7);
  });
  const auto& image = fx.fs->image();
  const uint32_t sh_first = image.Extents(fx.Ino("usr/bin/sh"))[0].chunk;
  REQUIRE(sh_first == image.Extents(fx.Ino("usr/bin/a0"))[0].chunk + 1);
  fx.Read("usr/bin/a0", 0, 1000);
  REQUIRE(fx.chunks->Present(image.Chunk(sh_first).digest));
  for (const auto& lib : libs) REQUIRE(fx.Absent(lib) > 0);

  fx.Read("usr/bin/sh", 0, 4096);  // no miss of its own, but its first read
  CHECK(fx.Arrives(interp));
  for (const auto& lib : libs) {
    INFO(lib);
    CHECK(fx.Arrives(lib));
  }
  uint64_t before = fx.demand();
  fx.Read(interp, 0, 4096);
  for (const auto& lib : libs) fx.Read(lib, 0, 4096);
  CHECK(fx.demand() == before);
}

TEST_CASE("locality: prefetch runs are up to 1 MiB from a remote store, 256 KiB from a local one") {
  Fixture f;
  uint64_t max_clen = 0;
  {
    auto image = fs::LoadImage(*f.store, f.image_id).value();
    for (uint32_t i = 0; i < image->chunks().size(); ++i) max_clen = std::max<uint64_t>(max_clen, image->Chunk(i).clen);
  }
  auto longest_read = [&](bool local) {
    Recorded r(f, local);
    auto& [rec, reader, fs] = r;
    uint64_t ino = f.Ino("pkg/big");  // 3 MiB: fetched whole on its first read
    REQUIRE(fs.Read(ino, 0, 4096).ok());
    bool all = false;
    for (int i = 0; i < 2000 && !all; ++i) {
      all = true;
      for (const auto& e : fs.image().Extents(ino)) all = all && reader.Present(fs.image().Chunk(e.chunk).digest);
      if (!all) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(all);
    uint64_t longest = 0;
    for (const auto& [off, len] : rec.ranges()) longest = std::max(longest, len);
    return longest;
  };
  // A run closes at the first chunk that takes it to the limit.
  uint64_t remote = longest_read(false), local = longest_read(true);
  CHECK(remote > (256u << 10) + max_clen);
  CHECK(remote <= (1u << 20) + max_clen);
  CHECK(local <= (256u << 10) + max_clen);
}

// usr/lib/python3.11 with compiled modules: top imports pkg_a (whose
// __init__ imports .sub, which imports pkg_b) and pkg_c.mod_c at module
// level, and aaa_lazy inside a function. A 300 KB file follows top's
// compiled file in pack order, so that a read of it brings no module as
// a neighbour.
void PythonTree(const std::string& src) {
  const std::string lib = src + "/usr/lib/python3.11";
  auto text = [](const std::string& path, const std::string& body) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << body;
  };
  text(lib + "/top.py", "import pkg_a\nfrom pkg_c import mod_c\ndef later():\n    import aaa_lazy\n");
  text(lib + "/aaa_lazy.py", "LAZY = 1\n");
  text(lib + "/pkg_a/__init__.py", "from . import sub\n");
  text(lib + "/pkg_a/sub.py", "import pkg_b\n");
  text(lib + "/pkg_b/__init__.py", "B = 2\n");
  text(lib + "/pkg_c/__init__.py", "C = 3\n");
  text(lib + "/pkg_c/mod_c.py", "MOD_C = 4\n");
  uint32_t seed = 100;
  for (const char* pyc : {"__pycache__/top", "__pycache__/aaa_lazy", "pkg_a/__pycache__/__init__",
                          "pkg_a/__pycache__/sub", "pkg_b/__pycache__/__init__", "pkg_c/__pycache__/__init__",
                          "pkg_c/__pycache__/mod_c"}) {
    WriteFile(lib + "/" + pyc + ".cpython-311.pyc", 60'000, ++seed);
  }
  WriteFile(lib + "/__pycache__/zz_pad.bin", 300'000, 99);
}

const char* const kPyc = "usr/lib/python3.11/__pycache__/top.cpython-311.pyc";
const std::vector<std::string> kImported = {
    "usr/lib/python3.11/pkg_a/__pycache__/__init__.cpython-311.pyc",
    "usr/lib/python3.11/pkg_a/__pycache__/sub.cpython-311.pyc",
    "usr/lib/python3.11/pkg_b/__pycache__/__init__.cpython-311.pyc",
    "usr/lib/python3.11/pkg_c/__pycache__/__init__.cpython-311.pyc",
    "usr/lib/python3.11/pkg_c/__pycache__/mod_c.cpython-311.pyc"};

TEST_CASE("locality: a Python module's first read prefetches what it imports, and what that imports") {
  Fixture fx(PythonTree);
  const auto& image = fx.fs->image();
  // The builder recorded top's imports on its compiled file.
  std::vector<uint64_t> deps;
  for (const auto& r : image.Loads(fx.Ino(kPyc))) deps.push_back(r.dep);
  CHECK(deps == std::vector<uint64_t>{fx.Ino(kImported[0]), fx.Ino(kImported[3]), fx.Ino(kImported[4])});

  fx.Read(kPyc, 0, 4096);
  for (const auto& m : kImported) {
    INFO(m);
    CHECK(fx.Arrives(m));  // pkg_a.sub and pkg_b through pkg_a's own records
  }
  CHECK(fx.Absent("usr/lib/python3.11/__pycache__/aaa_lazy.cpython-311.pyc") > 0);  // imported later, if ever
  uint64_t before = fx.demand();
  for (const auto& m : kImported) fx.Read(m, 0, 60'000);
  CHECK(fx.demand() == before);
}

TEST_CASE("locality: from a remote store, runs a short gap apart are one range read") {
  Fixture f(PythonTree);
  // pkg_a's and pkg_c's compiled files lie a few small files apart in one pack.
  auto requests = [&](bool local) {
    Recorded r(f, local);
    auto& [rec, reader, fs] = r;
    REQUIRE(fs.Read(f.Ino(kPyc), 0, 4096).ok());
    std::set<int> used;
    for (const auto& m : kImported) {
      for (const auto& e : fs.image().Extents(f.Ino(m))) {
        auto loc = fs.image().Chunk(e.chunk);
        for (int i = 0; i < 2000 && !reader.Present(loc.digest); ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        REQUIRE(reader.Read(loc).ok());
        used.insert(rec.RequestOf(loc));
      }
    }
    return used;
  };
  auto remote = requests(false), local = requests(true);
  CHECK(remote.size() == 1);
  CHECK(remote.count(-1) == 0);
  CHECK(local.size() >= 3);  // pkg_a, pkg_b, pkg_c at least
}

TEST_CASE("locality: readahead stops at the end of a file read front to back, unless reads go on into the next") {
  // Three 12 MiB files (over the whole-file bound, so only readahead
  // brings their later parts), next to each other in the pack.
  Fixture fx([](const std::string& src) {
    // (Random's streams for nearby seeds overlap: distinct bytes, no dedup.)
    auto data = Random(12 << 20, 5);
    std::filesystem::create_directories(src + "/d");
    for (const char* name : {"a", "b", "c"}) {
      for (auto& byte : data) byte ^= static_cast<uint8_t>(name[0]);
      std::ofstream(src + "/d/" + name, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
    }
  });
  const uint64_t size = 12 << 20, step = 1 << 20;
  auto read_through = [&](const std::string& path) {
    for (uint64_t off = 0; off < size; off += step) fx.Read(path, off, step);
  };
  read_through("d/a");
  REQUIRE(fx.chunks->WaitIdle());  // whatever a's reads queued has been fetched
  CHECK(fx.Absent("d/b") == fx.fs->image().Extents(fx.Ino("d/b")).size());  // nothing of b
  read_through("d/b");  // from a's end into b's start: now streaming across files
  CHECK(fx.ArrivesAny("d/c"));
}

TEST_CASE("locality: reading, one after another, modules that came as imports opens no readahead window") {
  Fixture fx([](const std::string& src) {
    PythonTree(src);
    WriteFile(src + "/zzz/after", 300'000, 7);  // after every module in pack order
  });
  fx.Read(kPyc, 0, 60'000);
  for (const auto& m : kImported) REQUIRE(fx.Arrives(m));
  for (const auto& m : kImported) fx.Read(m, 0, 60'000);  // in pack order, each whole
  REQUIRE(fx.chunks->WaitIdle());  // whatever the reads queued has been fetched
  CHECK(fx.Absent("zzz/after") == fx.fs->image().Extents(fx.Ino("zzz/after")).size());
}

TEST_CASE("profile replay: the first MiB in short reads, then long ones, in the profile's order") {
  Fixture f;
  Recorded r(f);
  auto& [rec, reader, fs] = r;
  // The profile: all of data/huge (12 MiB), in file order.
  std::vector<uint32_t> order;
  uint64_t ino = f.Ino("data/huge");
  for (const auto& e : fs.image().Extents(ino)) order.push_back(e.chunk);
  REQUIRE(order.size() > 40);
  fs.ReplayProfile(order);
  REQUIRE(Arrive(reader, fs, order));
  auto ranges = rec.ranges();
  REQUIRE(ranges.size() >= 3);
  // The first read starts at the profile's first chunk and is short; the
  // reads covering the first MiB are all short; a later one is long.
  CHECK(ranges.front().first == fs.image().Chunk(order.front()).offset);
  uint64_t covered = 0;
  size_t k = 0;
  for (; k < ranges.size() && covered < (1u << 20); ++k) {
    INFO("read " << k << ": " << ranges[k].second << " bytes");
    CHECK(ranges[k].second <= (256u << 10) + 4096);  // frame headers on incompressible data
    covered += ranges[k].second;
  }
  uint64_t longest = 0;
  for (; k < ranges.size(); ++k) longest = std::max(longest, ranges[k].second);
  CHECK(longest > (2u << 20));
  // Each range was read once: no chunk twice.
  uint64_t total = 0;
  for (const auto& r : ranges) total += r.second;
  uint64_t clen = 0;
  for (uint32_t c : order) clen += fs.image().Chunk(c).clen;
  CHECK(total == clen);
}

TEST_CASE("locality: a program's first miss fetches what its loader touches first (EARLY) before the rest") {
  std::vector<std::string> libs;
  std::string interp;
  Fixture f(HostShell(&interp, &libs));
  Recorded r(f);
  auto& [rec, reader, fs] = r;
  const fs::ImageReader& image = fs.image();
  auto ino = [&](const std::string& path) {
    uint64_t i = fs::kRootIno;
    for (const auto& part : std::filesystem::path(path)) i = fs.Lookup(i, part.string()).value();
    return i;
  };
  uint64_t sh = ino("usr/bin/sh");
  // The builder recorded /bin/sh's early ranges (builder_test checks them
  // against readelf); the last one is its writable segment, far from the
  // start of the file.
  auto early = image.Early(sh);
  REQUIRE(!early.empty());
  REQUIRE(early.back().offset > (64u << 10));
  REQUIRE(fs.Read(sh, 0, 4096).ok());  // the kernel reading the ELF header at exec
  // Everything comes in, one request after another.
  // A chunk is early if it overlaps an early range, other if it lies
  // farther than the read-around (64 KiB, which goes with the early ranges)
  // from all of them.
  std::vector<std::pair<uint32_t, int>> all;  // (chunk, 1 early, 0 neither, -1 other)
  auto collect = [&](uint64_t file) {
    constexpr uint64_t kAround = 64u << 10;
    for (const auto& e : image.Extents(file)) {
      uint64_t end = e.file_offset + image.Chunk(e.chunk).ulen;
      int kind = -1;
      for (const auto& r : image.Early(file)) {
        if (e.file_offset < r.offset + r.length && end > r.offset) kind = 1;
        if (kind < 0 && e.file_offset < r.offset + r.length + kAround && end + kAround > r.offset) kind = 0;
      }
      all.emplace_back(e.chunk, kind);
    }
  };
  collect(sh);
  for (const auto& lib : libs) collect(ino(lib));
  collect(ino(interp));
  bool done = false;
  for (int i = 0; i < 2000 && !done; ++i) {
    done = true;
    for (auto [c, e] : all) done = done && rec.RequestOf(image.Chunk(c)) >= 0;
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  REQUIRE(done);
  // The read's own request (on a demand thread, so it may reach the store
  // before or after the first prefetch) aside, every early chunk (the
  // program's and its libraries') went out before any other chunk of these
  // files: prefetch requests reach the store in queue order (one thread).
  const int own = rec.RequestOf(image.Chunk(image.Extents(sh).front().chunk));
  REQUIRE(own >= 0);
  int last_early = -1, first_other = 1 << 30;
  size_t early_chunks = 0;
  for (auto [c, kind] : all) {
    int req = rec.RequestOf(image.Chunk(c));
    if (req == own) continue;
    if (kind > 0) {
      last_early = std::max(last_early, req);
      ++early_chunks;
    } else if (kind < 0) {
      first_other = std::min(first_other, req);
    }
  }
  CHECK(early_chunks > 0);
  CHECK(first_other < (1 << 30));
  CHECK(last_early < first_other);
}

}  // namespace
}  // namespace ferry::testing
