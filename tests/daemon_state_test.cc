// ferryd end to end, its state: the node cache across restarts, capacity,
// on-disk corruption, kill -9 at random moments, a daemon killed under its
// users, a full disk, 1,000 mount cycles, the control socket, and starting a
// daemon. Part of daemon_test (main() is in daemon_test.cc).
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "snapshotter/api/control_client.h"
#include "snapshotter/api/daemon_client.h"
#include "tests/support/daemon.h"
#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"
#include "tests/support/tree_compare.h"
#include "tests/support/tree_gen.h"
#include "tests/daemon_fixture.h"
#include "tests/s3/test_servers.h"

namespace ferry::testing {
namespace {

TEST_CASE("the node cache survives a restart; prune empties it") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 1);
  std::string mnt = env.Dir("mnt");
  {
    ScopedDaemon d(env.root, {"--cache-size", "1G"});
    REQUIRE(env.Mount("img", mnt).exit_code == 0);
    CHECK(Mismatches(img, mnt) == 0);
    auto s = CacheStats(env.root);
    REQUIRE(s["images"].size() == 1);
    CHECK(U64(s["images"][0], "store_bytes") > 0);
    CHECK(U64(s["images"][0], "cache_hits") == 0);
    CHECK(env.Umount(mnt).exit_code == 0);
  }
  ScopedDaemon d(env.root, {"--cache-size", "1G"});
  REQUIRE(env.Mount("img", mnt).exit_code == 0);
  CHECK(Mismatches(img, mnt) == 0);
  auto s = CacheStats(env.root);
  REQUIRE(s["images"].size() == 1);
  CHECK(U64(s["images"][0], "store_bytes") == 0);  // everything came from the node cache
  CHECK(U64(s["images"][0], "cache_hits") > 0);
  CHECK(U64(s, "corrupt") == 0);
  CHECK(U64(s, "used_bytes") > 20u << 20);

  auto p = Ferry("/unused", {"cache", "prune", "--to", "0", "--daemon", env.root});
  INFO(p.err);
  CHECK(p.exit_code == 0);
  CHECK(U64(CacheStats(env.root), "used_bytes") == 0);
  CHECK(Ferry("/unused", {"cache", "prune", "--to", "lots", "--daemon", env.root}).exit_code == 2);
  CHECK(env.Umount(mnt).exit_code == 0);
}

TEST_CASE("a cache smaller than the images: concurrent reads of two images are exact, the bound holds") {
  Env env;
  Image a = MakeImage(env.Dir("a"), env.store, "a", 2);
  Image b = MakeImage(env.Dir("b"), env.store, "b", 3);
  ScopedDaemon d(env.root, {"--cache-size", "8M", "--memory-cache-mb", "2"});
  std::string ma = env.Dir("ma"), mb = env.Dir("mb");
  REQUIRE(env.Mount("a", ma).exit_code == 0);
  REQUIRE(env.Mount("b", mb).exit_code == 0);
  for (int pass = 0; pass < 2; ++pass) CHECK(Mismatches(a, ma) == 0);
  // 8 threads, random ranges of random files of both images, with eviction
  // racing the reads; pages are dropped so that reads reach the daemon.
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      for (int i = 0; i < 60; ++i) {
        const Image& img = rng() % 2 ? a : b;
        const std::string& f = img.files[rng() % img.files.size()];
        std::string want = ReadAll(img.src + "/" + f);
        if (want.empty()) continue;
        size_t off = rng() % want.size(), len = 1 + rng() % std::min<size_t>(want.size() - off, 300000);
        int fd = open(((&img == &a ? ma : mb) + "/" + f).c_str(), O_RDONLY);
        std::string got(len, '\0');
        ssize_t n = fd < 0 ? -1 : pread(fd, got.data(), len, off);
        if (fd >= 0) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        if (fd >= 0) close(fd);
        if (n != static_cast<ssize_t>(len) || got != want.substr(off, len)) ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(bad == 0);
  CHECK(Mismatches(b, mb) == 0);
  auto s = CacheStats(env.root);
  CHECK(U64(s, "used_bytes") <= 8u << 20);
  CHECK(U64(s, "evicted") > 0);
  uint64_t on_disk = 0;
  for (const auto& e : stdfs::recursive_directory_iterator(env.root + "/cache/segments")) {
    if (e.is_regular_file()) on_disk += e.file_size();
  }
  CHECK(on_disk <= 8u << 20);
}

TEST_CASE("a flipped byte in a cache segment is detected, dropped and fetched again") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 4);
  std::string mnt = env.Dir("mnt");
  {
    ScopedDaemon d(env.root);
    REQUIRE(env.Mount("img", mnt).exit_code == 0);
    CHECK(Mismatches(img, mnt) == 0);
    CHECK(env.Umount(mnt).exit_code == 0);
  }
  // Flip one byte in the middle of every segment file.
  int flipped = 0;
  for (const auto& e : stdfs::directory_iterator(env.root + "/cache/segments")) {
    if (!e.is_regular_file() || e.file_size() < 2) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(e.file_size() / 2);
    char c;
    f.get(c);
    f.seekp(e.file_size() / 2);
    f.put(static_cast<char>(c ^ 0x20));
    ++flipped;
  }
  REQUIRE(flipped > 0);
  ScopedDaemon d(env.root);
  REQUIRE(env.Mount("img", mnt).exit_code == 0);
  CHECK(Mismatches(img, mnt) == 0);
  auto s = CacheStats(env.root);
  CHECK(U64(s, "corrupt") >= 1);
  CHECK(U64(s["images"][0], "store_bytes") > 0);  // the dropped chunks came from the store
  CHECK(env.Umount(mnt).exit_code == 0);
}

TEST_CASE("kill -9 while the cache fills: after restart every file is exact and nothing corrupt") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 5);
  std::string mnt = env.Dir("mnt");
  const uint64_t seed = 20261123;
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  for (int iteration = 0; iteration < 5; ++iteration) {
    ScopedDaemon d(env.root, {"--cache-size", "16M"});
    auto m = env.Mount("img", mnt);
    INFO(m.err);
    REQUIRE(m.exit_code == 0);
    if (iteration > 0) {
      // What the last daemon left durable is served exactly.
      CHECK(Mismatches(img, mnt) == 0);
      CHECK(U64(CacheStats(env.root), "corrupt") == 0);
    }
    // Heavy filling: prune, then readers in the background, killed at a
    // seeded random moment.
    REQUIRE(Ferry("/unused", {"cache", "prune", "--to", "0", "--daemon", env.root}).exit_code == 0);
    std::atomic<bool> stop{false};
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t) {
      readers.emplace_back([&, t] {
        for (size_t i = t; !stop && i < img.files.size(); i += 3) {
          int fd = open((mnt + "/" + img.files[i]).c_str(), O_RDONLY);
          if (fd < 0) continue;
          char buf[65536];
          while (!stop && read(fd, buf, sizeof(buf)) > 0) {
          }
          posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
          close(fd);
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 400));
    d.Signal(SIGKILL);
    stop = true;
    for (auto& t : readers) t.join();  // they get errors, not hangs
  }
  ScopedDaemon d(env.root, {"--cache-size", "16M"});
  REQUIRE(env.Mount("img", mnt).exit_code == 0);
  CHECK(Mismatches(img, mnt) == 0);
  auto s = CacheStats(env.root);
  CHECK(U64(s, "corrupt") == 0);
  CHECK(U64(s, "used_bytes") <= 16u << 20);
  CHECK(d.Log().find("removed stale mount") != std::string::npos);
  CHECK(env.Umount(mnt).exit_code == 0);
}

TEST_CASE("a daemon killed under its users: errors, not hangs; restart cleans up, keeps what was written, and mounts again") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 6);
  std::string ro = env.Dir("ro"), rw = env.Dir("rw");
  auto d = std::make_unique<ScopedDaemon>(env.root);
  REQUIRE(env.Mount("img", ro).exit_code == 0);
  REQUIRE(env.Mount("img", rw, true).exit_code == 0);
  { std::ofstream(rw + "/written") << "by the sandbox\n"; }
  int fd = open((ro + "/big").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  char buf[4096];
  REQUIRE(pread(fd, buf, sizeof(buf), 0) == sizeof(buf));
  d->Signal(SIGKILL);
  errno = 0;
  CHECK(pread(fd, buf, sizeof(buf), 3 << 20) < 0);  // not yet read: must fail, not hang
  CHECK((errno == ENOTCONN || errno == EIO));
  close(fd);
  struct stat st;
  CHECK(stat((rw + "/big").c_str(), &st) != 0);

  d = std::make_unique<ScopedDaemon>(env.root);
  CHECK(d->Log().find("removed stale mount") != std::string::npos);
  CHECK(MountsUnder(env.tmp.path()).empty());
  CHECK(d->Log().find("kept the changes of " + rw) != std::string::npos);
  // The writable mount's changes are kept, and listed as such.
  auto list = api::CallDaemon(env.root, "ListMounts", nlohmann::json::object(), std::chrono::seconds(10));
  REQUIRE(list.ok());
  INFO(list->dump());
  REQUIRE((*list)["mounts"].size() == 1);
  CHECK((*list)["mounts"][0]["target"] == rw);
  CHECK((*list)["mounts"][0]["kept"] == true);
  REQUIRE(env.Mount("img", ro).exit_code == 0);
  // A writable mount of the same image there resumes them.
  auto resumed = env.Mount("img", rw, true);
  CHECK(resumed.exit_code == 0);
  CHECK(resumed.out.find("resumed") != std::string::npos);
  CHECK(ReadAll(rw + "/written") == "by the sandbox\n");
  CHECK(Mismatches(img, ro) == 0);
  CHECK(Mismatches(img, rw) == 0);
  CHECK(env.Umount(rw).exit_code == 0);
  CHECK(env.Umount(ro).exit_code == 0);
  CHECK(stdfs::is_empty(env.root + "/sandboxes"));
}

TEST_CASE("disk full: with the cache on a full tmpfs, reads are still exact") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 7);
  std::string small = env.Dir("small"), mnt = env.Dir("mnt");
  REQUIRE(mount("tmpfs", small.c_str(), "tmpfs", 0, "size=6m") == 0);
  struct Unmounter {
    std::string p;
    ~Unmounter() { umount2(p.c_str(), MNT_DETACH); }
  } unmount_small{small};
  {
    ScopedDaemon d(env.root, {"--cache-dir", small + "/cache", "--cache-size", "1G"});
    REQUIRE(env.Mount("img", mnt).exit_code == 0);
    CHECK(Mismatches(img, mnt) == 0);
    auto s = CacheStats(env.root);
    CHECK(U64(s, "dropped") > 0);
    CHECK(U64(s["images"][0], "read_errors") == 0);
    CHECK(env.Umount(mnt).exit_code == 0);
    INFO(d.Log());
    CHECK(d.Log().find(small + "/cache") != std::string::npos);  // the log names the full disk
  }
  ScopedDaemon d(env.root, {"--cache-dir", small + "/cache", "--cache-size", "1G"});
  REQUIRE(env.Mount("img", mnt).exit_code == 0);
  CHECK(Mismatches(img, mnt) == 0);
  CHECK(U64(CacheStats(env.root), "corrupt") == 0);
  CHECK(env.Umount(mnt).exit_code == 0);
}

TEST_CASE("1,000 mount/umount cycles leave no mounts, descriptors, threads or memory behind") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 8);
  ScopedDaemon d(env.root);
  api::DaemonClient client(env.root);
  std::string pin = env.Dir("pin"), mnt = env.Dir("mnt");
  auto store_url = "file://" + env.store;
  auto cycle = [&](bool writable) {
    daemon::MountRequest req;
    req.set_store_url(store_url);
    req.set_image("img");
    req.set_target(mnt);
    req.set_writable(writable);
    auto m = client.Mount(req);
    if (!m.ok()) FAIL(m.status().ToString());
    if (writable) std::ofstream(mnt + "/scratch") << "x";
    else if (ReadAll(mnt + "/d1/f1") != ReadAll(img.src + "/d1/f1")) FAIL("wrong bytes");
    daemon::UnmountRequest u;
    u.set_target(mnt);
    auto r = client.Unmount(u);
    if (!r.ok()) FAIL(r.status().ToString());
  };
  auto settle = [&] {  // ended sessions are reaped in the background
    for (int i = 0; i < 100 && stdfs::directory_iterator(env.root + "/mnt") != stdfs::directory_iterator(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };
  for (int i = 0; i < 20; ++i) cycle(i % 2);  // warm up allocators and gRPC
  settle();
  size_t fds = d.OpenFds(), threads = d.Threads(), rss = d.RssKib();
  for (int i = 0; i < 490; ++i) cycle(i % 2);  // each one starts and ends a session
  REQUIRE(env.Mount("img", pin).exit_code == 0);
  for (int i = 0; i < 490; ++i) cycle(i % 2);  // shared with the pinned session
  CHECK(env.Umount(pin).exit_code == 0);
  settle();
  CHECK(MountsUnder(env.tmp.path()).empty());
  CHECK(MountsUnder(env.tmp.path(), "fuse.ferry").empty());
  CHECK(stdfs::is_empty(env.root + "/mnt"));
  CHECK(stdfs::is_empty(env.root + "/sandboxes"));
  CHECK(d.OpenFds() <= fds + 2);
  CHECK(d.Threads() <= threads + 2);
  INFO("RSS before " << rss << " KiB, after " << d.RssKib() << " KiB");
  CHECK(d.RssKib() < rss + 32 * 1024);
}

// Sends `payload` as it is to ferryd's control socket; returns the answer.
std::string RawControl(const std::string& root, const std::string& payload) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = api::ControlSocketPath(root);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  // ferryd stops reading an oversized request, so a send may end early.
  for (size_t done = 0; done < payload.size();) {
    ssize_t n = send(fd, payload.data() + done, payload.size() - done, MSG_NOSIGNAL);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  std::string in;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) in.append(buf, static_cast<size_t>(n));
  close(fd);
  return in;
}

TEST_CASE("the control socket: the API of the gRPC socket, one state, clear errors") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 10);
  ScopedDaemon d(env.root);
  api::DaemonClient grpc_client(env.root);
  std::string a = env.Dir("a"), b = env.Dir("b");
  const auto minute = std::chrono::minutes(1);

  // Two spellings of one store (a trailing slash; a plain path) are one
  // store to ferryd: one session, recorded under the store's own URL.
  auto m1 = api::CallDaemon(env.root, "Mount",
                           {{"store_url", "file://" + env.store + "/"}, {"image", "img"}, {"target", a}}, minute);
  REQUIRE(m1.ok());
  CHECK(m1->at("image_id").get<std::string>().size() == 64);
  CHECK(m1->at("shared") == false);
  auto m2 = api::CallDaemon(env.root, "Mount", {{"store_url", env.store}, {"image", "img"}, {"target", b}}, minute);
  REQUIRE(m2.ok());
  CHECK(m2->at("shared") == true);
  CHECK(Mismatches(img, b) == 0);
  auto list = grpc_client.ListMounts();  // the other transport sees the same mounts
  REQUIRE(list.ok());
  REQUIRE(list->mounts_size() == 2);
  for (const auto& m : list->mounts()) CHECK(m.store_url() == "file://" + env.store);

  // Errors come back with a code and a message naming what is wrong.
  auto missing = api::CallDaemon(env.root, "Mount",
                                {{"store_url", env.store}, {"image", "nope"}, {"target", env.Dir("c")}}, minute);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK(missing.status().message().find("nope") != std::string::npos);
  auto unknown = api::CallDaemon(env.root, "Explode", nlohmann::json::object(), minute);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.status().code() == StatusCode::kInvalidArgument);
  CHECK(unknown.status().message().find("no method 'Explode'") != std::string::npos);
  auto wrong_type = api::CallDaemon(env.root, "Unmount", {{"target", 42}}, minute);
  REQUIRE_FALSE(wrong_type.ok());
  CHECK(wrong_type.status().code() == StatusCode::kInvalidArgument);
  CHECK(wrong_type.status().message().find("UnmountRequest") != std::string::npos);
  for (std::string junk : {std::string("not json\n"), std::string(), std::string("[1,2]\n"),
                           std::string(2 << 20, '{')}) {
    auto reply = nlohmann::json::parse(RawControl(env.root, junk), nullptr, false);
    REQUIRE(reply.is_object());
    CHECK(reply["code"] == static_cast<int>(StatusCode::kInvalidArgument));
    CHECK_FALSE(reply.contains("reply"));
  }

  // Still serving after all that; both targets unmount through the socket.
  for (const auto& t : {a, b}) {
    auto u = api::CallDaemon(env.root, "Unmount", {{"target", t}}, minute);
    INFO(t);
    CHECK(u.ok());
  }
  CHECK(MountsUnder(env.tmp.path()).empty());
}

TEST_CASE("the control socket keeps serving after ferryd runs out of descriptors") {
  Env env;
  ScopedDaemon d(env.root);
  const auto second = std::chrono::seconds(1);
  REQUIRE(api::CallDaemon(env.root, "Ping", nlohmann::json::object(), second).ok());
  struct rlimit old;
  REQUIRE(prlimit(d.pid(), RLIMIT_NOFILE, nullptr, &old) == 0);
  struct rlimit tight = {d.OpenFds() + 2, old.rlim_max};
  REQUIRE(prlimit(d.pid(), RLIMIT_NOFILE, &tight, nullptr) == 0);
  // Clients that connect and say nothing: ferryd takes two, then accept
  // fails with EMFILE while the rest wait in the backlog.
  std::vector<int> idle;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path = api::ControlSocketPath(env.root);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  for (int i = 0; i < 8; ++i) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    idle.push_back(fd);
  }
  // ferryd hits the limit: it says so in its log.
  bool hit = false;
  for (int i = 0; i < 400 && !hit; ++i) {
    hit = d.Log().find("accept: Too many open files") != std::string::npos;
    if (!hit) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  CHECK(hit);
  for (int fd : idle) close(fd);
  REQUIRE(prlimit(d.pid(), RLIMIT_NOFILE, &old, nullptr) == 0);
  // Answered again (within the deadline, not after one).
  bool answered = false;
  for (int i = 0; i < 20 && !answered; ++i) {
    answered = api::CallDaemon(env.root, "Ping", nlohmann::json::object(), second).ok();
  }
  CHECK(answered);
}

TEST_CASE("without a daemon ferry mount says so; --start-daemon starts one") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 9);
  std::string mnt = env.Dir("mnt");
  auto r = env.Mount("img", mnt);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no ferryd is running") != std::string::npos);
  auto s = Ferry(env.store, {"mount", "img", mnt, "--daemon", env.root, "--start-daemon"});
  INFO(s.err);
  REQUIRE(s.exit_code == 0);
  CHECK(Mismatches(img, mnt) == 0);
  CHECK(env.Umount(mnt).exit_code == 0);
  api::DaemonClient client(env.root);
  auto ping = client.Ping();
  REQUIRE(ping.ok());
  kill(static_cast<pid_t>(ping->pid()), SIGTERM);
  for (int i = 0; i < 100 && client.Ping(std::chrono::milliseconds(200)).ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK_FALSE(client.Ping(std::chrono::milliseconds(200)).ok());
}

}  // namespace
}  // namespace ferry::testing
