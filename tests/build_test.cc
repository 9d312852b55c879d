// ferry build end to end: deduplication figures, layers with whiteouts,
// and refusals (hostile archives, unreadable files, damaged images/packs).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/wait.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"
#include "tests/support/tar_writer.h"

namespace ferry::testing {
namespace {

namespace stdfs = std::filesystem;

void WriteFile(const std::string& path, const std::string& data) {
  stdfs::create_directories(stdfs::path(path).parent_path());
  std::ofstream(path, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string RandomData(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// "chunks: 12 total, 3 new" -> {12, 3}
std::pair<long, long> ChunkFigures(const std::string& err) {
  std::smatch m;
  REQUIRE(std::regex_search(err, m, std::regex("chunks: (\\d+) total, (\\d+) new")));
  return {std::stol(m[1]), std::stol(m[2])};
}

size_t CountFiles(const std::string& dir) {
  if (!stdfs::exists(dir)) return 0;
  size_t n = 0;
  for (auto& e : stdfs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

TEST_CASE("dedup: the same tree twice writes nothing new; one changed file writes only its chunks") {
  ScopedTempDir tmp("ferry-dedup");
  std::string src = tmp.path() + "/src", store = tmp.path() + "/store";
  for (int i = 0; i < 8; ++i) WriteFile(src + "/f" + std::to_string(i), RandomData(2 << 20, i));
  auto first = Ferry(store, {"build", src, "--tag", "a"});
  REQUIRE(first.exit_code == 0);
  auto [total1, new1] = ChunkFigures(first.err);
  CHECK(new1 == total1);
  size_t packs = CountFiles(store + "/packs");

  auto again = Ferry(store, {"build", src, "--tag", "b"});
  REQUIRE(again.exit_code == 0);
  auto [total2, new2] = ChunkFigures(again.err);
  CHECK(total2 == total1);
  CHECK(new2 == 0);
  CHECK(CountFiles(store + "/packs") == packs);  // no new pack at all

  // Change a few bytes in the middle of one 2 MiB file.
  std::string f3 = ReadFile(src + "/f3");
  f3.replace(1 << 20, 5, "HELLO");
  WriteFile(src + "/f3", f3);
  auto changed = Ferry(store, {"build", src, "--tag", "c"});
  REQUIRE(changed.exit_code == 0);
  auto [total3, new3] = ChunkFigures(changed.err);
  CHECK(new3 >= 1);
  CHECK(new3 <= 2);  // the chunk holding the change (and at most a neighbour)
  CHECK(total3 >= total1 - 1);
}

TEST_CASE("inspect --chunks lists every chunk in layout order with the file that uses it") {
  ScopedTempDir tmp("ferry-inspect");
  std::string src = tmp.path() + "/src", store = tmp.path() + "/store";
  WriteFile(src + "/b/two", RandomData(1 << 20, 2));
  WriteFile(src + "/a/one", RandomData(5000, 1));
  WriteFile(src + "/a/new\nline", RandomData(3000, 3));
  REQUIRE(Ferry(store, {"build", src, "--tag", "t", "-q"}).exit_code == 0);
  auto r = Ferry(store, {"inspect", "--chunks", "t"});
  REQUIRE(r.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(r.out, m, std::regex("chunks +(\\d+) unique")));
  const long count = std::stol(m[1]);
  std::istringstream lines(r.out.substr(r.out.find("chunk\tpack\t")));
  std::string line;
  std::getline(lines, line);  // the header
  std::vector<std::string> owners;
  uint64_t last_offset_two = 0;
  while (std::getline(lines, line)) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string x; std::getline(fields, x, '\t');) f.push_back(x);
    REQUIRE(f.size() == 7);
    CHECK(std::stol(f[0]) == static_cast<long>(owners.size()));  // in index order
    if (f[6] == "/b/two") {
      CHECK((owners.empty() || owners.back() != "/b/two" || std::stoull(f[5]) > last_offset_two));
      last_offset_two = std::stoull(f[5]);
    }
    owners.push_back(f[6]);
  }
  CHECK(static_cast<long>(owners.size()) == count);
  // Sorted depth-first: a/ before b/; the newline is escaped, one line each.
  REQUIRE(owners.size() >= 3);
  CHECK(owners[0] == "/a/new\\x0aline");
  CHECK(owners[1] == "/a/one");
  CHECK(owners.back() == "/b/two");
}

TEST_CASE("inspect --loads: a program's interpreter and libraries, a module's imports, from a directory or a tar") {
  // The host's /bin/sh, its interpreter and libc, at the paths it asks for.
  ScopedTempDir tmp("ferry-loads");
  std::string src = tmp.path() + "/src", store = tmp.path() + "/store";
  auto copy = [&](const std::string& host, const std::string& at) {
    stdfs::create_directories(stdfs::path(src + at).parent_path());
    stdfs::copy_file(stdfs::canonical(host), src + at);
  };
  copy("/bin/sh", "/usr/bin/sh");
  auto interp = Run({"sh", "-c", "readelf -l /bin/sh | sed -n 's/.*interpreter: \\(.*\\)]/\\1/p'"});
  REQUIRE(interp.exit_code == 0);
  std::string ld = interp.out.substr(0, interp.out.find('\n'));
  REQUIRE(!ld.empty());
  copy(ld, ld);
  std::string libc = stdfs::canonical("/lib/x86_64-linux-gnu/libc.so.6").string();
  copy(libc, libc);
  // A Python module importing another, both compiled.
  const std::string py = src + "/usr/lib/python3.11";
  stdfs::create_directories(py + "/__pycache__");
  std::ofstream(py + "/mod_a.py") << "import mod_b\ndef f():\n    import lazy\n";
  std::ofstream(py + "/mod_b.py") << "B = 1\n";
  std::ofstream(py + "/lazy.py") << "L = 1\n";
  std::ofstream(py + "/__pycache__/mod_a.cpython-311.pyc") << "compiled a";
  std::ofstream(py + "/__pycache__/mod_b.cpython-311.pyc") << "compiled b";
  REQUIRE(Run({"tar", "-C", src, "-cf", tmp.path() + "/t.tar", "."}).exit_code == 0);
  for (const std::string& from : {src, tmp.path() + "/t.tar"}) {
    INFO("built from " << from);
    REQUIRE(Ferry(store, {"build", from, "--tag", "t", "-q"}).exit_code == 0);
    auto r = Ferry(store, {"inspect", "--loads", "t"});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("loads      3 files with what they load or import recorded (4 records)") != std::string::npos);
    CHECK(r.out.find("/usr/lib/python3.11/__pycache__/mod_a.cpython-311.pyc\t"
                     "/usr/lib/python3.11/__pycache__/mod_b.cpython-311.pyc\n") != std::string::npos);
    // In the loader's order: the interpreter, then libc; libc loads the interpreter.
    CHECK(r.out.find("/usr/bin/sh\t" + ld + "\n/usr/bin/sh\t" + libc + "\n") != std::string::npos);
    CHECK(r.out.find(libc + "\t" + ld + "\n") != std::string::npos);
    // sh and libc have early ranges (builder_test checks them against
    // readelf); the interpreter names no library, so it has none.
    CHECK(r.out.find(" ranges of 2 ELF files, ") != std::string::npos);
  }
}

TEST_CASE("layers: tar layers flatten with whiteouts and opaque directories") {
  ScopedTempDir tmp("ferry-layers");
  std::string store = tmp.path() + "/store", mnt = tmp.path() + "/mnt";
  stdfs::create_directories(mnt);
  WriteTar(tmp.path() + "/base.tar.gz",
           {{TarEntry::kDir, "etc/"}, {TarEntry::kFile, "etc/keep", "keep"},
            {TarEntry::kFile, "etc/gone", "gone"}, {TarEntry::kDir, "opt/"},
            {TarEntry::kFile, "opt/old", "old"}, {TarEntry::kFile, "bin/tool", "v1", "", 0755}},
           "gzip");
  WriteTar(tmp.path() + "/top.tar.zst",
           {{TarEntry::kFile, "etc/.wh.gone"}, {TarEntry::kDir, "opt/"},
            {TarEntry::kFile, "opt/.wh..wh..opq"}, {TarEntry::kFile, "opt/new", "new"},
            {TarEntry::kFile, "bin/tool", "v2", "", 0755}},
           "zstd");
  auto b = Ferry(store, {"build", "--layer", tmp.path() + "/base.tar.gz", "--layer",
                         tmp.path() + "/top.tar.zst", "--tag", "layered"});
  INFO(b.err);
  REQUIRE(b.exit_code == 0);
  ScopedMount m(store, "layered", mnt);
  REQUIRE(m.ok());
  CHECK(ReadFile(mnt + "/etc/keep") == "keep");
  CHECK_FALSE(stdfs::exists(mnt + "/etc/gone"));
  CHECK_FALSE(stdfs::exists(mnt + "/etc/.wh.gone"));
  CHECK_FALSE(stdfs::exists(mnt + "/opt/old"));
  CHECK(ReadFile(mnt + "/opt/new") == "new");
  CHECK_FALSE(stdfs::exists(mnt + "/opt/.wh..wh..opq"));
  CHECK(ReadFile(mnt + "/bin/tool") == "v2");
}

TEST_CASE("a build killed half-way publishes nothing a mount could see") {
  ScopedTempDir tmp("ferry-kill");
  std::string src = tmp.path() + "/src", store = tmp.path() + "/store";
  for (int i = 0; i < 12; ++i) WriteFile(src + "/f" + std::to_string(i), RandomData(6 << 20, 300 + i));
  // A slow store (40 MB/s) keeps the build busy long enough to be killed.
  const std::string slow = "fault+file://" + store + "?bandwidth=40MB";
  std::mt19937_64 rng(20261123);
  for (int round = 0; round < 3; ++round) {
    int delay_ms = 150 + static_cast<int>(rng() % 900);
    INFO("round " << round << ": killed after " << delay_ms << " ms");
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      execl(FerryBinary().c_str(), "ferry", "--store", slow.c_str(), "build", src.c_str(), "--tag",
            "big", static_cast<char*>(nullptr));
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status));  // still building when killed
    CHECK_FALSE(stdfs::exists(store + "/refs/big"));
    CHECK(CountFiles(store + "/images") == 0);
    CHECK(Ferry(store, {"inspect", "big"}).exit_code == 3);
  }
  auto b = Ferry(store, {"build", src, "--tag", "big", "-q"});
  INFO(b.err);
  REQUIRE(b.exit_code == 0);
  CHECK(Ferry(store, {"inspect", "big"}).exit_code == 0);
}

TEST_CASE("hostile archives are refused, naming the entry, and nothing is published") {
  ScopedTempDir tmp("ferry-hostile");
  std::string store = tmp.path() + "/store";
  std::string outside = tmp.path() + "/outside";
  struct Case {
    std::string name;
    std::vector<TarEntry> entries;
    std::string entry;  // expected in the message
  };
  std::vector<Case> cases = {
      {"dotdot", {{TarEntry::kFile, "../outside", "x"}}, "../outside"},
      {"nested-dotdot", {{TarEntry::kFile, "a/../../outside", "x"}}, "a/../../outside"},
      {"absolute", {{TarEntry::kFile, outside, "x"}}, outside},
      {"symlink-escape",
       {{TarEntry::kSymlink, "evil", "", tmp.path()}, {TarEntry::kFile, "evil/outside", "x"}},
       "evil/outside"},
      {"hardlink-escape", {{TarEntry::kHardlink, "h", "", "", 0644}}, "h"},
  };
  cases[4].entries[0].target = "../../etc/passwd";
  for (const Case& c : cases) {
    SECTION(c.name) {
      std::string tar = tmp.path() + "/" + c.name + ".tar";
      WriteTar(tar, c.entries);
      auto r = Ferry(store, {"build", tar, "--tag", "evil"});
      INFO(r.err);
      CHECK(r.exit_code == 1);
      CHECK(r.err.find(c.entry) != std::string::npos);
      CHECK(r.err.find("nothing was published") != std::string::npos);
      CHECK_FALSE(stdfs::exists(outside));
      CHECK(CountFiles(store + "/refs") == 0);
      CHECK(CountFiles(store + "/images") == 0);
    }
  }
  SECTION("absurd sizes") {
    for (unsigned long long size : {1ull << 40, 1ull << 62}) {
      std::string tar = tmp.path() + "/absurd.tar";
      std::string raw = RawTarHeader("big", size) + std::string(4096, 'x');
      WriteFile(tar, raw);
      auto r = Ferry(store, {"build", tar, "--tag", "evil"});
      INFO(r.err);
      CHECK(r.exit_code == 1);
      CHECK(r.err.find("big") != std::string::npos);
      CHECK(CountFiles(store + "/refs") == 0);
    }
  }
  SECTION("garbage instead of an archive") {
    WriteFile(tmp.path() + "/junk.tar", RandomData(10000, 3));
    auto r = Ferry(store, {"build", tmp.path() + "/junk.tar", "--tag", "evil"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("junk.tar") != std::string::npos);
  }
}

TEST_CASE("inputs the fuzzers once broke ferry with are refused cleanly") {
  ScopedTempDir tmp("ferry-regress");
  std::string store = tmp.path() + "/store", mnt = tmp.path() + "/mnt";
  stdfs::create_directories(mnt);
  std::string dir = std::string(FERRY_SOURCE_DIR) + "/tests/fuzz/regressions";
  size_t seen = 0;
  for (auto& e : stdfs::directory_iterator(dir + "/tar_import_fuzz")) {
    INFO(e.path());
    auto r = Ferry(store, {"build", e.path(), "--tag", "fuzz"});
    CHECK(r.exit_code == 1);  // a clear failure, not a crash (>= 128)
    CHECK(r.err.find(e.path().string()) != std::string::npos);
    ++seen;
  }
  for (auto& e : stdfs::directory_iterator(dir + "/image_reader_fuzz")) {
    INFO(e.path());
    // Publish the bytes under their own id so that only the format checks
    // can refuse them.
    std::string bytes = ReadFile(e.path());
    auto id = Run({"sh", "-c", "sha256sum < '" + e.path().string() + "' | cut -c1-64"});
    std::string hex = id.out.substr(0, 64);
    WriteFile(store + "/images/" + hex, bytes);
    auto r = Ferry(store, {"mount", hex, mnt, "--no-daemon"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("Corruption") != std::string::npos);
    ++seen;
  }
  CHECK(seen >= 3);
}

// `ferry build SRC --tag x` into STORE as an unprivileged user, so that
// file permissions apply (the tests run as root).
CommandResult BuildAsNobody(const ScopedTempDir& tmp, const std::string& src, const std::string& store) {
  stdfs::create_directories(store);
  chmod(store.c_str(), 0777);
  chmod(tmp.path().c_str(), 0755);
  return Run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", FerryBinary(),
              "--store", store, "build", src, "--tag", "x"});
}

TEST_CASE("a file that cannot be read fails the build, naming it") {
  ScopedTempDir tmp("ferry-unreadable");
  std::string src = tmp.path() + "/src", store = tmp.path() + "/store";
  WriteFile(src + "/ok", "fine");
  WriteFile(src + "/secret", "no");
  chmod((src + "/secret").c_str(), 0000);
  auto r = BuildAsNobody(tmp, src, store);
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(src + "/secret") != std::string::npos);
  CHECK(r.err.find("Permission denied") != std::string::npos);
  CHECK(CountFiles(store + "/refs") == 0);
}

TEST_CASE("a directory that cannot be read fails the build, naming it, wherever it is") {
  ScopedTempDir tmp("ferry-unreadable-dir");
  std::string src = tmp.path() + "/src", store = tmp.path() + "/store";
  // Many directories, so that the scan's threads are all busy when one of
  // them meets the unreadable one.
  for (int i = 0; i < 64; ++i) {
    for (int j = 0; j < 4; ++j) {
      WriteFile(src + "/d" + std::to_string(i) + "/e" + std::to_string(j) + "/f", "x");
    }
  }
  std::string locked = src + "/d41/e2";
  WriteFile(locked + "/deeper/g", "y");
  chmod(locked.c_str(), 0000);
  auto r = BuildAsNobody(tmp, src, store);
  chmod(locked.c_str(), 0755);
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(locked) != std::string::npos);
  CHECK(r.err.find("Permission denied") != std::string::npos);
  CHECK(CountFiles(store + "/refs") == 0);
  CHECK(CountFiles(store + "/images") == 0);
}

TEST_CASE("a wide tree with hard links across directories builds to the same image every time") {
  ScopedTempDir tmp("ferry-scan-same");
  std::string src = tmp.path() + "/src", store = tmp.path() + "/store";
  for (int i = 0; i < 10; ++i) stdfs::create_directories(src + "/d" + std::to_string(i));
  for (int i = 0; i < 100; ++i) {
    std::string d = src + "/d" + std::to_string(i % 10) + "/s" + std::to_string(i);
    WriteFile(d + "/f", RandomData(1000 + i, i));
    // Each file has names in two other directories, found by different
    // threads in different orders from one build to the next.
    for (int k : {3, 7}) {
      std::string other = src + "/d" + std::to_string((i + k) % 10) + "/link" + std::to_string(i);
      stdfs::create_hard_link(d + "/f", other);
    }
  }
  // The first build reads the files, which moves their access times
  // (relatime): it is the one build not compared.
  REQUIRE(Ferry(store, {"build", src, "-q"}).exit_code == 0);
  std::set<std::string> ids;
  for (int run = 0; run < 5; ++run) {
    auto r = Ferry(store, {"build", src});
    REQUIRE(r.exit_code == 0);
    INFO(r.err);
    // The three names of each file are one inode: 100 files, not 300.
    CHECK(r.err.find(": 100 files, 111 dirs,") != std::string::npos);
    ids.insert(r.out);
  }
  CHECK(ids.size() == 1);
}

TEST_CASE("damaged images and packs: clear mount errors, EIO on reads, never wrong bytes") {
  ScopedTempDir tmp("ferry-damage");
  std::string src = tmp.path() + "/src", store = tmp.path() + "/store", mnt = tmp.path() + "/mnt";
  stdfs::create_directories(mnt);
  std::string big = RandomData(600000, 11);
  WriteFile(src + "/big", big);
  WriteFile(src + "/small", "small file");
  auto b = Ferry(store, {"build", src, "--tag", "img", "-q"});
  REQUIRE(b.exit_code == 0);
  std::string id = b.out.substr(0, 64);
  std::string image_path = store + "/images/" + id;
  std::string original = ReadFile(image_path);

  SECTION("missing image") {
    auto r = Ferry(store, {"mount", "no-such-image", mnt, "--no-daemon"});
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("no-such-image") != std::string::npos);
  }
  SECTION("truncated metadata object") {
    WriteFile(image_path, original.substr(0, original.size() / 2));
    auto r = Ferry(store, {"mount", "img", mnt, "--no-daemon"});
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("Corruption") != std::string::npos);
    CHECK(r.err.find(id) != std::string::npos);
  }
  SECTION("garbage metadata object") {
    WriteFile(image_path, RandomData(original.size(), 5));
    auto r = Ferry(store, {"mount", "img", mnt, "--no-daemon"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("Corruption") != std::string::npos);
  }
  SECTION("a flipped bit in a pack: that read fails with EIO and a log line names the chunk") {
    std::string pack;
    for (auto& e : stdfs::directory_iterator(store + "/packs")) pack = e.path();
    std::string bytes = ReadFile(pack);
    bytes[1000] ^= 0x04;  // inside the first chunk's frame
    WriteFile(pack, bytes);
    std::string log = tmp.path() + "/mount.log";
    ScopedMount m(store, "img", mnt, {"--log-file", log});
    REQUIRE(m.ok());
    int fd = open((mnt + "/big").c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    // Read the whole file: whatever comes back before the error is right.
    std::string got;
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) got.append(buf, static_cast<size_t>(n));
    CHECK(n == -1);
    CHECK(errno == EIO);
    CHECK(got.size() < big.size());
    CHECK(big.compare(0, got.size(), got) == 0);
    errno = 0;
    CHECK(pread(fd, buf, 4096, 0) == -1);
    CHECK(errno == EIO);
    close(fd);
    CHECK(ReadFile(mnt + "/small") == "small file");  // other files still read
    std::string logged = ReadFile(log);
    CHECK(logged.find("Corruption") != std::string::npos);
    CHECK(std::regex_search(logged, std::regex("chunk [0-9a-f]{64}")));
  }
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  ferry::testing::RequireFuseOrSkip();
  return Catch::Session().run(argc, argv);
}
