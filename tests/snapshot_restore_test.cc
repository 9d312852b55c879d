// Snapshots of a running sandbox and what is done with them, end to end
// with the real ferryd, overlayfs and FUSE:
//  - a writer that keeps rewriting files in the sandbox while it is
//    snapshotted, with and without --freeze (cgroup v2 freezer): every file
//    in a snapshot is a version that existed;
//  - directory snapshots (a directory of a writable mount, of a read-only
//    mount, a plain directory);
//  - ferryd killed with SIGKILL in the middle of a snapshot: no ref, no
//    image, no partial object; the sandbox's changes intact, snapshotted
//    and resumed after the restart;
//  - restore on a second ferryd (own root, own node cache) sharing one
//    s3:// store, continuing the sandbox there and back;
//  - a chain of 50 snapshots, each of the one before, mounted as one image;
//  - a snapshot inherits its base's start-up profile.
// Needs root, /dev/fuse, a cgroup2 mount and s3rver (all present in CI).
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>

#include "snapshotter/api/control_client.h"
#include "tests/s3/test_servers.h"
#include "tests/snapshot_fixture.h"
#include "tests/support/bytes.h"
#include "tests/support/daemon.h"

namespace ferry::testing {
namespace {

using Clock = std::chrono::steady_clock;

// The mount point of the cgroup v2 hierarchy ("/sys/fs/cgroup", or
// "/sys/fs/cgroup/unified" on a hybrid host); empty if there is none.
std::string Cgroup2Root() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    auto sep = line.find(" - ");
    if (sep == std::string::npos || line.compare(sep + 3, 8, "cgroup2 ") != 0) continue;
    std::istringstream fields(line);
    std::string id, parent, dev, root, mnt;
    fields >> id >> parent >> dev >> root >> mnt;
    return mnt;
  }
  return "";
}

std::string ReadSmall(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteSmall(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  REQUIRE(out.good());
}

// ---------------------------------------------------------------------------
// Self-checking contents. A version of file i at generation g is
// [g:8][i:8][payload][xxh64 of all before:8], its length varying with g, so
// a mix of two versions, a prefix or a tail fails the check. The log gets
// one 4 KiB record per generation, appended in one write(2):
// [g:8][xxh64 of the rest of the record:8][filler].

constexpr size_t kRecord = 4096;

std::string Version(uint64_t gen, uint64_t file) {
  size_t payload = 1000 + (gen * 7919 + file * 104729) % 60000;
  std::string v(16, '\0');
  std::memcpy(v.data(), &gen, 8);
  std::memcpy(v.data() + 8, &file, 8);
  v += RandomString(payload, gen * 1000 + file);
  uint64_t h = XXH64(v.data(), v.size(), 0);
  v.append(reinterpret_cast<const char*>(&h), 8);
  return v;
}

// "" if `data` is a whole version of file `file`, else what is wrong.
std::string CheckVersion(const std::string& data, uint64_t file) {
  if (data.size() < 24) return "too short (" + std::to_string(data.size()) + " bytes)";
  uint64_t h, f;
  std::memcpy(&h, data.data() + data.size() - 8, 8);
  std::memcpy(&f, data.data() + 8, 8);
  if (XXH64(data.data(), data.size() - 8, 0) != h) return "checksum does not match (torn)";
  if (f != file) return "holds file " + std::to_string(f) + "'s contents";
  return "";
}

std::string Record(uint64_t gen) {
  std::string r = RandomString(kRecord, gen + 7);
  std::memcpy(r.data(), &gen, 8);
  uint64_t h = XXH64(r.data() + 16, kRecord - 16, gen);
  std::memcpy(r.data() + 8, &h, 8);
  return r;
}

// "" if `log` is whole records of generations 0, 1, 2, ... in order.
std::string CheckLog(const std::string& log) {
  if (log.size() % kRecord != 0) return "size " + std::to_string(log.size()) + " is not whole records";
  for (size_t at = 0; at < log.size(); at += kRecord) {
    uint64_t gen, h;
    std::memcpy(&gen, log.data() + at, 8);
    std::memcpy(&h, log.data() + at + 8, 8);
    if (gen != at / kRecord) return "record " + std::to_string(at / kRecord) + " out of order";
    if (XXH64(log.data() + at + 16, kRecord - 16, gen) != h) {
      return "record " + std::to_string(at / kRecord) + " torn";
    }
  }
  return "";
}

constexpr int kWriterFiles = 12;

// A child process that rewrites DIR/w/f0..f11 (each version written to a
// temporary name and renamed over the file, as editors and package
// managers do) and appends to DIR/w/log, generation after generation,
// until killed. `generation` (shared memory) is the last one finished.
// Joins `cgroup` (if given) before its first write.
class Writer {
 public:
  Writer(const std::string& dir, const std::string& cgroup) {
    void* p = mmap(nullptr, sizeof(std::atomic<uint64_t>), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    generation_ = new (p) std::atomic<uint64_t>(0);
    stdfs::create_directories(dir + "/w");
    // Generation 0 exists before the writer starts.
    for (int i = 0; i < kWriterFiles; ++i) WriteSmall(Name(dir, i), Version(0, i));
    WriteSmall(dir + "/w/log", Record(0));
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) Run(dir, cgroup);
  }
  ~Writer() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    munmap(generation_, sizeof(*generation_));
  }
  pid_t pid() const { return pid_; }
  uint64_t generation() const { return generation_->load(); }
  // Waits until the writer has finished `n` more generations (true), or
  // 60 s have passed (false): it is alive and not frozen.
  bool Advances(uint64_t n = 2) const {
    uint64_t from = generation();
    auto until = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < until) {
      if (generation() >= from + n) return true;
      poll(nullptr, 0, 5);
    }
    return false;
  }
  static std::string Name(const std::string& dir, int i) {
    return dir + "/w/f" + std::to_string(i);
  }

 private:
  [[noreturn]] void Run(const std::string& dir, const std::string& cgroup) {
    if (!cgroup.empty()) {
      std::ofstream procs(cgroup + "/cgroup.procs");
      procs << getpid() << "\n";
      procs.close();
      if (!procs.good()) _exit(3);
    }
    int log = open((dir + "/w/log").c_str(), O_WRONLY | O_APPEND);
    if (log < 0) _exit(4);
    for (uint64_t gen = 1;; ++gen) {
      for (int i = 0; i < kWriterFiles; ++i) {
        std::string v = Version(gen, i), tmp = Name(dir, i) + ".tmp";
        int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, v.data(), v.size()) != static_cast<ssize_t>(v.size())) _exit(5);
        close(fd);
        if (rename(tmp.c_str(), Name(dir, i).c_str()) != 0) _exit(6);
      }
      std::string r = Record(gen);
      if (write(log, r.data(), r.size()) != static_cast<ssize_t>(r.size())) _exit(7);
      generation_->store(gen);
    }
  }

  pid_t pid_ = -1;
  std::atomic<uint64_t>* generation_ = nullptr;
};

// A fresh cgroup under the cgroup2 root, removed (thawed, emptied) at the end.
struct ScopedCgroup {
  std::string path;
  explicit ScopedCgroup(const std::string& root) {
    path = root + "/ferry-test-" + std::to_string(getpid());
    stdfs::create_directory(path);
  }
  ~ScopedCgroup() {
    std::ofstream(path + "/cgroup.freeze") << "0\n";
    // Its processes are killed by their owners first; wait until it is empty.
    auto until = Clock::now() + std::chrono::seconds(20);
    while (rmdir(path.c_str()) != 0 && errno == EBUSY && Clock::now() < until) poll(nullptr, 0, 10);
  }
};

// Every file of the writer in the mounted snapshot `snap` is a whole
// version; returns the generations of the files (for figures).
std::vector<uint64_t> CheckWriterFiles(const std::string& snap) {
  std::vector<uint64_t> gens;
  for (int i = 0; i < kWriterFiles; ++i) {
    std::string data = Slurp(Writer::Name(snap, i));
    INFO("file f" << i << " of the snapshot");
    CHECK(CheckVersion(data, i) == "");
    uint64_t g = 0;
    if (data.size() >= 8) std::memcpy(&g, data.data(), 8);
    gens.push_back(g);
  }
  std::string log = Slurp(snap + "/w/log");
  INFO("the log of the snapshot");
  CHECK(CheckLog(log) == "");
  return gens;
}

std::string BuildSmallBase(SnapshotEnv& env, const std::string& tag) {
  std::string src = env.tmp.path() + "/base-src";
  stdfs::create_directories(src + "/etc");
  stdfs::create_directories(src + "/sub/deeper");
  WriteSmall(src + "/etc/config", "setting=1\n");
  WriteSmall(src + "/sub/notes", "notes\n");
  WriteSmall(src + "/sub/deeper/blob", RandomString(3 * kMiB + 17, 31));
  WriteSmall(src + "/sub/deeper/small", RandomString(5000, 32));
  Sh("ln -s deeper/small " + src + "/sub/link");
  auto b = Ferry(env.store, {"build", src, "--tag", tag, "-q"});
  INFO(b.err);
  REQUIRE(b.exit_code == 0);
  return src;
}

TEST_CASE("snapshots of a sandbox that keeps writing: every file a version that existed; --freeze pauses it") {
  const std::string cg_root = Cgroup2Root();
  if (cg_root.empty()) SkipOrFail("a cgroup2 mount (for ferry snapshot --freeze)");
  SnapshotEnv env;
  BuildSmallBase(env, "base");
  ScopedDaemon daemon(env.root);
  const std::string m = env.Mount("base", "live", /*writable=*/true);
  ScopedCgroup cg(cg_root);
  Writer writer(m, cg.path);
  REQUIRE(writer.Advances());

  // Frozen: the snapshot is one instant's tree, and the writer goes on.
  std::vector<uint64_t> frozen_ms;
  for (int round = 0; round < 3; ++round) {
    const std::string tag = "frozen" + std::to_string(round);
    nlohmann::json s = env.Snapshot(m, tag, {"--freeze", cg.path});
    frozen_ms.push_back(U64(s, "frozen_ms"));
    CHECK(s.contains("frozen_ms"));
    CHECK(ReadSmall(cg.path + "/cgroup.events").find("frozen 0") != std::string::npos);
    CHECK(writer.Advances());  // thawed: it writes again
    const std::string r = env.Mount(tag, tag, /*writable=*/false);
    std::vector<uint64_t> gens = CheckWriterFiles(r);
    // One instant: a generation is finished file by file, so the files
    // hold at most two adjacent generations.
    auto [lo, hi] = std::minmax_element(gens.begin(), gens.end());
    CHECK(*hi - *lo <= 1);
    env.Umount(r);
  }
  std::string figures;
  for (uint64_t ms : frozen_ms) figures += std::to_string(ms) + " ";
  WARN("sandbox paused for (ms): " << figures);

  // Not frozen: each snapshot either holds whole versions only or fails,
  // naming the file, with nothing published.
  int published = 0, refused = 0;
  for (int round = 0; round < 4; ++round) {
    const std::string tag = "live" + std::to_string(round);
    auto res = Ferry(env.store, {"snapshot", m, "--tag", tag, "--json", "--daemon", env.root});
    if (res.exit_code == 0) {
      ++published;
      const std::string r = env.Mount(tag, tag, /*writable=*/false);
      CheckWriterFiles(r);
      env.Umount(r);
    } else {
      ++refused;
      INFO(res.err);
      CHECK(res.exit_code == 1);
      CHECK(res.err.find("/w/") != std::string::npos);  // names the file
      CHECK(!stdfs::exists(env.store + "/refs/" + tag));
    }
  }
  WARN("without --freeze: " << published << " snapshots published, " << refused
                            << " refused (a file changed while read)");
  CHECK(writer.Advances());

  // A directory that is not a cgroup v2 is refused before anything is read.
  auto bad = Ferry(env.store, {"snapshot", m, "--tag", "bad", "--freeze", env.tmp.path(),
                               "--daemon", env.root});
  CHECK(bad.exit_code == 1);
  CHECK(bad.err.find(env.tmp.path()) != std::string::npos);
  CHECK(!stdfs::exists(env.store + "/refs/bad"));
}

TEST_CASE("directory snapshots: a directory of a writable mount, of a read-only mount, a plain directory") {
  SnapshotEnv env;
  const std::string src = BuildSmallBase(env, "base");
  ScopedDaemon daemon(env.root);

  // In a writable mount: the mount's tree cut to the directory, with the
  // sandbox's changes; the base's chunks are reused.
  const std::string m = env.Mount("base", "live", /*writable=*/true);
  WriteSmall(m + "/sub/new", "new in the sandbox\n");
  PWrite(m + "/sub/deeper/small", "changed", 100);
  Sh("rm " + m + "/sub/notes && mkdir " + m + "/sub/made && chmod 0700 " + m + "/sub/made");
  WriteSmall(m + "/etc/config", "setting=2\n");  // outside the directory
  nlohmann::json s1 = env.Snapshot(m + "/sub", "dir-rw");
  CHECK(U64(s1, "new_bytes") < 64 * 1024);  // the 3 MiB blob is the base's
  const std::string r1 = env.Mount("dir-rw", "dir-rw", /*writable=*/false);
  CheckSameTree(m + "/sub", r1);
  CHECK(!stdfs::exists(r1 + "/etc"));
  CHECK(!stdfs::exists(r1 + "/sub"));

  // In a read-only mount: nothing new at all.
  const std::string ro = env.Mount("base", "ro", /*writable=*/false);
  nlohmann::json s2 = env.Snapshot(ro + "/sub/deeper", "dir-ro");
  CHECK(U64(s2, "new_bytes") == 0);
  const std::string r2 = env.Mount("dir-ro", "dir-ro", /*writable=*/false);
  CheckSameTree(ro + "/sub/deeper", r2);
  CheckSameTree(src + "/sub/deeper", r2);

  // A plain directory (in no mount) goes to --store; what the store has
  // already is not written again.
  const std::string plain = env.tmp.path() + "/plain";
  Sh("cp -a " + src + "/sub " + plain);
  WriteSmall(plain + "/extra", RandomString(20000, 33));
  nlohmann::json s3 = env.Snapshot(plain, "dir-plain");
  CHECK(U64(s3, "new_bytes") <= 20000 + 4096);
  const std::string r3 = env.Mount("dir-plain", "dir-plain", /*writable=*/false);
  CheckSameTree(plain, r3);

  // A directory snapshot is an ordinary image: a writable mount of it
  // continues, and is snapshotted in turn.
  const std::string m2 = env.Mount("dir-rw", "live2", /*writable=*/true);
  WriteSmall(m2 + "/made/inside", "x\n");
  env.Snapshot(m2, "dir-rw-2");
  const std::string r4 = env.Mount("dir-rw-2", "dir-rw-2", /*writable=*/false);
  CheckSameTree(m2, r4);
}

// Files under the sandbox directories of a ferryd root, relative path -> bytes.
std::map<std::string, std::string> UpperFiles(const std::string& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : stdfs::recursive_directory_iterator(root + "/sandboxes")) {
    if (e.is_regular_file() && !e.is_symlink()) {
      out[stdfs::relative(e.path(), root).string()] = Slurp(e.path().string());
    }
  }
  return out;
}

// Every object under packs/ and images/ of the file store `store` is whole:
// its SHA-256 (of the decompressed bytes, for a zstd-framed image) is its name.
void CheckStoreObjectsWhole(const std::string& store) {
  for (const char* folder : {"packs", "images"}) {
    if (!stdfs::exists(store + "/" + folder)) continue;
    for (const auto& e : stdfs::directory_iterator(store + "/" + folder)) {
      const std::string path = e.path().string();
      // (a pack starts with its first chunk's zstd frame; only an image
      // can be stored as one zstd frame as a whole)
      bool zstd = std::string(folder) == "images" &&
                  Slurp(path).substr(0, 4) == std::string("\x28\xb5\x2f\xfd", 4);
      auto r = Run({"sh", "-c",
                    (zstd ? "zstd -dc '" + path + "' | sha256sum" : "sha256sum < '" + path + "'")});
      INFO(path);
      REQUIRE(r.exit_code == 0);
      CHECK(r.out.substr(0, 64) == e.path().filename().string());
    }
  }
}

std::set<std::string> Listing(const std::string& dir) {
  std::set<std::string> names;
  if (stdfs::exists(dir)) {
    for (const auto& e : stdfs::directory_iterator(dir)) names.insert(e.path().filename());
  }
  return names;
}

TEST_CASE("ferryd killed in the middle of a snapshot: nothing published, nothing partial, the changes intact and snapshotted after the restart") {
  SnapshotEnv env;
  BuildSmallBase(env, "base");
  auto daemon = std::make_unique<ScopedDaemon>(env.root);
  const std::string m = env.Mount("base", "live", /*writable=*/true);
  // A big change: 24 files of 8 MiB, so the snapshot is reading and
  // uploading for a while when ferryd is killed.
  stdfs::create_directories(m + "/big");
  for (int i = 0; i < 24; ++i) {
    WriteSmall(m + "/big/f" + std::to_string(i), RandomString(8 * kMiB, 100 + i));
  }
  WriteSmall(m + "/etc/config", "setting=killed\n");
  Sh("sync");
  const auto upper_before = UpperFiles(env.root);
  REQUIRE(upper_before.size() >= 25);
  const auto images_before = Listing(env.store + "/images");

  // Killed as soon as ferryd reports 32 MiB read: packs are being written.
  bool killed = false;
  nlohmann::json last_progress;
  auto result = api::CallDaemonStreaming(
      env.root, "Snapshot", {{"path", m}, {"tag", "interrupted"}}, std::chrono::seconds(60),
      [&](const nlohmann::json& p) {
        last_progress = p;
        if (!killed && api::JsonU64(p, "bytes") >= 32 * kMiB) {
          daemon->Signal(SIGKILL);
          killed = true;
        }
      });
  INFO("last progress: " << last_progress.dump());
  REQUIRE(killed);
  CHECK(!result.ok());
  // No ref, no image; every object in the store is whole.
  CHECK(!stdfs::exists(env.store + "/refs/interrupted"));
  CHECK(Listing(env.store + "/images") == images_before);
  CheckStoreObjectsWhole(env.store);
  // The sandbox's upper directory is as it was.
  CHECK(UpperFiles(env.root) == upper_before);

  // After the restart the mount's changes are kept, and snapshotted.
  daemon = std::make_unique<ScopedDaemon>(env.root);
  nlohmann::json s = env.Snapshot(m, "after-restart");
  CHECK(U64(s, "files_read") >= 25);
  CheckStoreObjectsWhole(env.store);
  const std::string r = env.Mount("after-restart", "after-restart", /*writable=*/false);
  for (int i = 0; i < 24; ++i) {
    INFO("big/f" << i);
    CHECK(Slurp(r + "/big/f" + std::to_string(i)) == RandomString(8 * kMiB, 100 + i));
  }
  CHECK(ReadSmall(r + "/etc/config") == "setting=killed\n");
  CHECK(ReadSmall(r + "/sub/notes") == "notes\n");
  // ... and a writable mount of the base there resumes them.
  auto resumed = Ferry(env.store, {"mount", "base", m, "--writable", "--daemon", env.root});
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK(resumed.out.find("resumed") != std::string::npos);
  CheckSameTree(m, r);
  // The restarted ferryd (which found a stale socket and probed it) still
  // stops cleanly on SIGTERM: every mount gone, the changes kept.
  int status = daemon->Signal(SIGTERM);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(MountsUnder(env.tmp.path()).empty());
  CHECK(UpperFiles(env.root).size() >= 25);
}

TEST_CASE("restore elsewhere: a second ferryd with its own cache, sharing one s3:// store, continues the sandbox") {
  UseTestCredentials();
  ScopedS3rver s3;
  SnapshotEnv env;
  env.store = std::string("s3://") + ScopedS3rver::kBucket + "/ferry?endpoint=" + s3.endpoint() +
              "&path_style=1";
  const std::string host_a = env.tmp.path() + "/host-a", host_b = env.tmp.path() + "/host-b";
  BuildSmallBase(env, "base");
  ScopedDaemon a(host_a), b(host_b);

  const std::string ma = env.Mount("base", "sandbox-a", /*writable=*/true, host_a);
  WriteSmall(ma + "/etc/config", "setting=on-a\n");
  stdfs::create_directories(ma + "/work");
  WriteSmall(ma + "/work/data", RandomString(2 * kMiB, 41));
  Sh("rm " + ma + "/sub/notes && chmod 0600 " + ma + "/sub/deeper/small");
  REQUIRE(lsetxattr((ma + "/work/data").c_str(), "user.tag", "a", 1, 0) == 0);
  nlohmann::json s1 = env.Snapshot(ma, "moved", {}, host_a);
  CHECK(s1.at("store_url").get<std::string>().rfind("s3://", 0) == 0);

  // Host B has never seen the image: it is fetched from the store.
  const std::string mb = env.Mount("moved", "sandbox-b", /*writable=*/true, host_b);
  CheckSameTree(ma, mb);
  auto stats_b = Ferry("/unused", {"cache", "stats", "--json", "--flush", "--daemon", host_b});
  REQUIRE(stats_b.exit_code == 0);
  // (the comparison read every byte: at least the 2 MiB file came from the store)
  INFO(stats_b.out);
  const nlohmann::json stats = nlohmann::json::parse(stats_b.out);
  uint64_t fetched_b = 0;
  for (const auto& image : stats.at("images")) {
    fetched_b += api::JsonU64(image, "store_bytes");
  }
  CHECK(fetched_b >= 2 * kMiB);
  // The sandbox continues on B, and comes back to A.
  WriteSmall(mb + "/work/data2", "written on b\n");
  PWrite(mb + "/work/data", "changed on b", kMiB);
  Sh("rm -r " + mb + "/sub/deeper");
  env.Snapshot(mb, "moved-back", {}, host_b);
  const std::string back = env.Mount("moved-back", "back-on-a", /*writable=*/true, host_a);
  CheckSameTree(mb, back);
  CHECK(ReadSmall(back + "/etc/config") == "setting=on-a\n");
  CHECK(!stdfs::exists(back + "/sub/deeper"));
}

TEST_CASE("a chain of 50 snapshots, each of the one before, is one flat image") {
  SnapshotEnv env;
  BuildSmallBase(env, "base");
  ScopedDaemon daemon(env.root);
  std::string parent = "base";
  uint64_t first_metadata = 0, last_metadata = 0;
  std::string last_live;
  for (int i = 1; i <= 50; ++i) {
    const std::string m = env.Mount(parent, "c" + std::to_string(i), /*writable=*/true);
    stdfs::create_directories(m + "/gen");
    WriteSmall(m + "/gen/" + std::to_string(i), "generation " + std::to_string(i) + "\n");
    WriteSmall(m + "/etc/config", "setting=" + std::to_string(i) + "\n");
    if (i % 10 == 0) Sh("rm " + m + "/gen/" + std::to_string(i - 5));
    parent = "chain" + std::to_string(i);
    nlohmann::json s = env.Snapshot(m, parent);
    (i == 1 ? first_metadata : last_metadata) = U64(s, "metadata_bytes");
    if (i < 50) env.Umount(m);
    else last_live = m;
  }
  const std::string r = env.Mount("chain50", "chain50", /*writable=*/false);
  CheckSameTree(last_live, r);
  CHECK(ReadSmall(r + "/etc/config") == "setting=50\n");
  for (int i = 1; i <= 50; ++i) {
    INFO("gen/" << i);
    CHECK(stdfs::exists(r + "/gen/" + std::to_string(i)) == (i % 10 != 5));
  }
  // Flat: the 50th image's metadata holds the tree as it is (45 more small
  // files than the first), not 50 layers to merge.
  WARN("metadata bytes: first snapshot " << first_metadata << ", fiftieth " << last_metadata);
  CHECK(last_metadata < first_metadata + 45 * 512);
}

// `ferry profile show NAME --chunks`: the "pack" line, and the (path,
// file offset) of each entry in profile order.
struct ShownProfile {
  std::string pack;
  std::vector<std::string> entries;
};
ShownProfile ShowProfile(const SnapshotEnv& env, const std::string& name) {
  auto r = Ferry(env.store, {"profile", "show", name, "--chunks"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  ShownProfile out;
  std::istringstream in(r.out);
  std::string line;
  bool table = false;
  while (std::getline(in, line)) {
    if (line.rfind("pack ", 0) == 0) out.pack = line;
    if (table && !line.empty()) {
      // position, chunk, ulen, file_offset, path: keep the last two.
      std::vector<std::string> f;
      std::istringstream cols(line);
      for (std::string c; std::getline(cols, c, '\t');) f.push_back(c);
      REQUIRE(f.size() == 5);
      out.entries.push_back(f[4] + "@" + f[3]);
    }
    if (line.rfind("position\t", 0) == 0) table = true;
  }
  return out;
}

TEST_CASE("a snapshot inherits its base's start-up profile, renumbered; its start-up pack while all of it is kept") {
  SnapshotEnv env;
  BuildSmallBase(env, "base");
  auto rec = Ferry(env.store, {"profile", "record", "base", "--no-chroot", "--", "sh", "-c",
                               "cat etc/config sub/deeper/small sub/deeper/blob > /dev/null"});
  INFO(rec.err);
  REQUIRE(rec.exit_code == 0);
  const ShownProfile base = ShowProfile(env, "base");
  REQUIRE(base.entries.size() >= 3);
  REQUIRE(base.pack.find("startup/") != std::string::npos);
  ScopedDaemon daemon(env.root);

  // A change that leaves every profiled chunk in place (a new file in a
  // new directory renumbers the image's chunks): the same entries, the
  // same start-up pack.
  const std::string m = env.Mount("base", "live", /*writable=*/true);
  stdfs::create_directories(m + "/aaa");
  WriteSmall(m + "/aaa/first", RandomString(70000, 41));
  nlohmann::json s1 = env.Snapshot(m, "kept");
  CHECK(U64(s1, "profile_chunks") == base.entries.size());
  CHECK(s1.value("profile_pack", false));
  const ShownProfile kept = ShowProfile(env, "kept");
  CHECK(kept.entries == base.entries);
  CHECK(kept.pack == base.pack);

  // One profiled file changed: its chunk leaves the profile, the rest
  // stays in order, replayed from the image's packs.
  WriteSmall(m + "/sub/deeper/small", "changed\n");
  nlohmann::json s2 = env.Snapshot(m, "changed");
  CHECK(U64(s2, "profile_chunks") == base.entries.size() - 1);
  CHECK_FALSE(s2.value("profile_pack", false));
  const ShownProfile changed = ShowProfile(env, "changed");
  std::vector<std::string> expect;
  for (const std::string& e : base.entries) {
    if (e.rfind("/sub/deeper/small@", 0) != 0) expect.push_back(e);
  }
  CHECK(expect.size() == base.entries.size() - 1);
  CHECK(changed.entries == expect);
  CHECK(changed.pack.find("none") != std::string::npos);
  // The profile is a hint: what the snapshot serves is the sandbox's.
  const std::string r = env.Mount("changed", "changed", /*writable=*/false);
  CHECK(ReadSmall(r + "/sub/deeper/small") == "changed\n");
  CheckSameTree(m, r);

  // A base without a profile: the snapshot has none either.
  REQUIRE(Ferry(env.store, {"profile", "rm", "base"}).exit_code == 0);
  nlohmann::json s3 = env.Snapshot(m, "plain");
  CHECK(U64(s3, "profile_chunks") == 0);
  CHECK(Ferry(env.store, {"profile", "show", "plain"}).exit_code == 3);
}

}  // namespace
}  // namespace ferry::testing
