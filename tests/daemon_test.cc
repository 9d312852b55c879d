// ferryd end to end, mounts and stores: shared and writable mounts, a fetch
// held for one image, flaky and unreachable stores, start-up profiles, s3://.
// The node cache, restarts, limits and the control socket are in
// daemon_state_test.cc (the same program). Runs the real ferryd and ferry
// binaries against real FUSE, bind and overlay mounts.
#define CATCH_CONFIG_RUNNER
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

TEST_CASE("shared and writable mounts share one FUSE session and match the source") {
  Env env;
  std::string src = env.tmp.path() + "/edge";
  GenerateEdgeCaseTree(src, GenOptions{});
  REQUIRE(Ferry(env.store, {"build", src, "--tag", "edge", "-q"}).exit_code == 0);
  ScopedDaemon d(env.root);
  std::string m1 = env.Dir("m1"), m2 = env.Dir("m2"), m3 = env.Dir("m3");
  auto r1 = env.Mount("edge", m1);
  INFO(r1.err);
  REQUIRE(r1.exit_code == 0);
  auto r2 = env.Mount("edge", m2);
  REQUIRE(r2.exit_code == 0);
  CHECK(r2.out.find("shared session") != std::string::npos);
  auto r3 = env.Mount("edge", m3, /*writable=*/true);
  INFO(r3.err);
  REQUIRE(r3.exit_code == 0);
  CHECK(DistinctDevices(env.tmp.path(), "fuse.ferry") == 1);  // one session behind three targets

  CHECK(CompareTrees(src, m1, CompareOptions{}).empty());
  CompareOptions overlay;
  overlay.compare_dir_nlink = false;  // overlayfs reports 1 for merged directories
  auto diffs = CompareTrees(src, m3, overlay);
  for (const auto& l : diffs) UNSCOPED_INFO(l);
  CHECK(diffs.empty());

  // Writes land in the sandbox's upper directory only.
  std::ofstream(m3 + "/new-file") << "written in the sandbox\n";
  CHECK(stdfs::exists(m3 + "/new-file"));
  CHECK_FALSE(stdfs::exists(m1 + "/new-file"));
  CHECK(mkdir((m1 + "/x").c_str(), 0755) != 0);
  CHECK(errno == EROFS);
  CHECK(Ferry(env.store, {"mount", "edge", m1, "--daemon", env.root}).exit_code != 0);  // taken

  CHECK(env.Umount(m3).exit_code == 0);
  CHECK(stdfs::is_empty(env.root + "/sandboxes"));
  CHECK(env.Umount(m2).exit_code == 0);
  CHECK(DistinctDevices(env.tmp.path(), "fuse.ferry") == 1);
  CHECK(env.Umount(m1).exit_code == 0);
  for (int i = 0; i < 100 && !MountsUnder(env.tmp.path(), "fuse.ferry").empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(MountsUnder(env.tmp.path(), "fuse.ferry").empty());
  CHECK(MountsUnder(env.tmp.path()).empty());
  CHECK(env.Umount(m1).exit_code != 0);  // no longer mounted
}

TEST_CASE("a fetch held in flight for one image does not stall reads of another") {
  Env env;
  Image a = MakeImage(env.Dir("a"), env.store, "a", 10);
  std::string store_b = env.tmp.path() + "/store-b", gate = env.tmp.path() + "/gate";
  Image b = MakeImage(env.Dir("b"), store_b, "b", 11);
  ScopedDaemon d(env.root);
  std::string ma = env.Dir("ma"), mb = env.Dir("mb");
  REQUIRE(env.Mount("a", ma).exit_code == 0);
  // Image b's store holds every range read until the gate file exists.
  auto m = Ferry("fault+file://" + store_b + "?gate=" + gate, {"mount", "b", mb, "--daemon", env.root});
  INFO(m.err);
  REQUIRE(m.exit_code == 0);
  std::atomic<bool> b_done{false};
  std::string got;
  std::thread reader([&] {
    got = ReadAll(mb + "/big");
    b_done = true;
  });
  CHECK(Mismatches(a, ma) == 0);
  CHECK_FALSE(b_done);  // still held: a's reads did not wait for it
  std::ofstream(gate) << "open";
  reader.join();
  CHECK(got == ReadAll(b.src + "/big"));
  CHECK(env.Umount(mb).exit_code == 0);
  CHECK(env.Umount(ma).exit_code == 0);
}

TEST_CASE("a flaky store: every byte right despite failures; corruption is never served") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 12);
  ScopedDaemon d(env.root, {"--cache-size", "1G"});
  std::string flaky = env.Dir("flaky"), bad = env.Dir("bad");
  // 20% of requests fail and some take up to 30 ms longer: retries hide it.
  // The fault store retries what it injects, as a network store's transport
  // would (up to 8 tries here: a request then fails for good once in 400,000).
  auto m = Ferry("fault+file://" + env.store + "?fail=0.2&jitter=30ms&seed=5&attempts=8",
                 {"mount", "img", flaky, "--daemon", env.root});
  INFO(m.err);
  REQUIRE(m.exit_code == 0);
  CHECK(Mismatches(img, flaky) == 0);
  auto s = CacheStats(env.root);
  REQUIRE(s["images"].size() == 1);
  CHECK(U64(s["images"][0], "read_errors") == 0);
  CHECK(Ferry("/unused", {"cache", "prune", "--to", "0", "--daemon", env.root}).exit_code == 0);
  CHECK(env.Umount(flaky).exit_code == 0);

  // A third of all reads come back with a flipped byte: a read either
  // returns the source bytes or fails with EIO, and every bad chunk counts.
  m = Ferry("fault+file://" + env.store + "?corrupt=0.35&seed=9",
            {"mount", "img", bad, "--daemon", env.root});
  INFO(m.err);
  REQUIRE(m.exit_code == 0);
  int wrong = 0, eio = 0, right = 0;
  for (const auto& f : img.files) {
    std::string want = ReadAll(img.src + "/" + f), got(want.size(), '\0');
    int fd = open((bad + "/" + f).c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    size_t done = 0;
    while (done < want.size()) {
      ssize_t n = pread(fd, got.data() + done, want.size() - done, done);
      if (n <= 0) break;
      done += n;
    }
    if (done < want.size()) {
      CHECK(errno == EIO);
      ++eio;
    } else if (got != want) {
      ++wrong;
    } else {
      ++right;
    }
    close(fd);
  }
  CHECK(wrong == 0);
  CHECK(right > 0);
  s = CacheStats(env.root);
  CHECK(U64(s["images"][0], "corrupt") > 0);
  INFO("files read right " << right << ", failed with EIO " << eio);
  CHECK(env.Umount(bad).exit_code == 0);
}

TEST_CASE("store unreachable: cached files are served, uncached reads fail at the deadline") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 13);
  ScopedDaemon d(env.root, {"--fetch-deadline", "1"});
  std::string up = env.Dir("up"), down = env.Dir("down");
  REQUIRE(env.Mount("img", up).exit_code == 0);
  for (int i = 0; i < 10; ++i) CHECK(ReadAll(up + "/" + img.files[i]) == ReadAll(img.src + "/" + img.files[i]));
  CHECK(env.Umount(up).exit_code == 0);
  // The same image from a store whose range reads never answer.
  auto m = Ferry("fault+file://" + env.store + "?gate=" + env.tmp.path() + "/never",
                 {"mount", "img", down, "--daemon", env.root});
  INFO(m.err);
  REQUIRE(m.exit_code == 0);
  for (int i = 0; i < 10; ++i) CHECK(ReadAll(down + "/" + img.files[i]) == ReadAll(img.src + "/" + img.files[i]));
  int fd = open((down + "/big").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  char buf[4096];
  errno = 0;
  CHECK(pread(fd, buf, sizeof(buf), 0) < 0);  // after the 1 s deadline, not never
  CHECK(errno == EIO);
  close(fd);
  CHECK(d.Log().find("no answer from") != std::string::npos);
  CHECK(env.Umount(down, true).exit_code == 0);
}

TEST_CASE("a recorded start-up profile is fetched before the workload asks for it") {
  Env env;
  Image img = MakeImage(env.Dir("src"), env.store, "img", 14);
  const std::string workload = "cat d1/f1 d2/f7 big d0/f10 > /dev/null";
  auto rec = Ferry(env.store, {"profile", "record", "img", "--no-chroot", "--", "sh", "-c", workload});
  INFO(rec.err);
  REQUIRE(rec.exit_code == 0);
  CHECK(rec.out.find("recorded") != std::string::npos);
  auto show = Ferry(env.store, {"profile", "show", "img"});
  REQUIRE(show.exit_code == 0);
  CHECK(Ferry(env.store, {"profile", "record", "img", "--no-chroot", "--", "false"}).exit_code == 1);

  // Reads the workload's files and returns the image's counters.
  auto run = [&](const std::string& mnt, bool wait_for_profile) {
    auto s = CacheStats(env.root);
    REQUIRE(s["images"].size() == 1);
    uint64_t profile = U64(s["images"][0], "profile_chunks");
    for (int i = 0; wait_for_profile && i < 400; ++i) {
      s = CacheStats(env.root);
      if (U64(s["images"][0], "cache_misses") >= profile) break;  // all of it fetched
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    for (const char* f : {"d1/f1", "d2/f7", "big", "d0/f10"}) {
      CHECK(ReadAll(mnt + "/" + f) == ReadAll(img.src + "/" + f));
    }
    return CacheStats(env.root)["images"][0];
  };
  std::string mnt = env.Dir("mnt");
  {
    ScopedDaemon d(env.root);  // a cold host: empty node cache
    REQUIRE(env.Mount("img", mnt).exit_code == 0);
    auto s = run(mnt, true);
    CHECK(U64(s, "profile_chunks") > 0);
    CHECK(U64(s, "demand_misses") == 0);  // every chunk was there before it was asked for
    CHECK(d.Log().find("start-up profile") != std::string::npos);
    // A version 3 profile: its start-up pack was asked for on the profile
    // alone, while the image metadata was still loading.
    CHECK(d.Log().find("sent for before the image metadata was in") != std::string::npos);
    CHECK(env.Umount(mnt).exit_code == 0);
  }
  {
    // A warm host (ferryd restarted on the same node cache): the profile is
    // replayed from the cache, and nothing is asked of the store.
    ScopedDaemon d(env.root);
    REQUIRE(env.Mount("img", mnt).exit_code == 0);
    auto s = run(mnt, false);
    // The replay is over once every profile chunk has come from the node
    // cache (each is read from it once, by the replay or by a read): a
    // chunk it had to ask the store for would never get there.
    for (int i = 0; i < 400 && U64(s, "cache_hits") < U64(s, "profile_chunks"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
      s = CacheStats(env.root)["images"][0];
    }
    CHECK(U64(s, "profile_chunks") > 0);
    CHECK(U64(s, "cache_hits") >= U64(s, "profile_chunks"));
    CHECK(U64(s, "store_fetches") == 0);
    CHECK(U64(s, "store_bytes") == 0);
    CHECK(env.Umount(mnt).exit_code == 0);
  }
  // Without the profile, the same workload on a cold host asks the store itself.
  REQUIRE(Ferry(env.store, {"profile", "rm", "img"}).exit_code == 0);
  CHECK(Ferry(env.store, {"profile", "show", "img"}).exit_code == 3);
  {
    // Recording on a ferryd mount gives a profile too.
    ScopedDaemon d(env.root);
    REQUIRE(env.Mount("img", mnt).exit_code == 0);
    CHECK(Ferry(env.store, {"profile", "stop", mnt, "--daemon", env.root}).exit_code == 1);
    REQUIRE(Ferry(env.store, {"profile", "start", mnt, "--daemon", env.root}).exit_code == 0);
    CHECK(ReadAll(mnt + "/d1/f1") == ReadAll(img.src + "/d1/f1"));
    auto stop = Ferry(env.store, {"profile", "stop", mnt, "--daemon", env.root});
    INFO(stop.err);
    CHECK(stop.exit_code == 0);
    CHECK(stop.out.find("stored a profile of") != std::string::npos);
    CHECK(Ferry(env.store, {"profile", "show", "img"}).exit_code == 0);
    CHECK(env.Umount(mnt).exit_code == 0);
  }
  REQUIRE(Ferry(env.store, {"profile", "rm", "img"}).exit_code == 0);
  CHECK(Ferry(env.store, {"profile", "show", "img"}).exit_code == 3);
  stdfs::remove_all(env.root + "/cache");
  ScopedDaemon d(env.root);
  REQUIRE(env.Mount("img", mnt).exit_code == 0);
  auto s = run(mnt, false);
  CHECK(U64(s, "profile_chunks") == 0);
  CHECK(U64(s, "demand_misses") > 0);
  CHECK(env.Umount(mnt).exit_code == 0);
}

TEST_CASE("an s3:// store through ferryd; server stopped: cached files served, the rest fail at the deadline") {
  UseTestCredentials();
  Env env;
  auto s3 = std::make_unique<ScopedS3rver>();
  const std::string url = std::string("s3://") + ScopedS3rver::kBucket + "/images?endpoint=" +
                          s3->endpoint() + "&path_style=1";
  Image img = MakeImage(env.Dir("src"), url, "img", 15);
  ScopedDaemon d(env.root, {"--fetch-deadline", "2"});
  std::string mnt = env.Dir("mnt");
  auto m = Ferry(url, {"mount", "img", mnt, "--daemon", env.root});
  INFO(m.err);
  REQUIRE(m.exit_code == 0);
  auto drop_pages = [&](const std::string& f) {
    int fd = open((mnt + "/" + f).c_str(), O_RDONLY);
    if (fd >= 0) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (fd >= 0) close(fd);
  };
  for (int i = 0; i < 10; ++i) {
    CHECK(ReadAll(mnt + "/" + img.files[i]) == ReadAll(img.src + "/" + img.files[i]));
  }
  REQUIRE(Ferry("/unused", {"cache", "stats", "--daemon", env.root}).exit_code == 0);
  s3.reset();  // the server is gone
  for (int i = 0; i < 10; ++i) {
    drop_pages(img.files[i]);
    CHECK(ReadAll(mnt + "/" + img.files[i]) == ReadAll(img.src + "/" + img.files[i]));
  }
  int fd = open((mnt + "/big").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  char buf[4096];
  errno = 0;
  CHECK(pread(fd, buf, sizeof(buf), 0) < 0);
  CHECK(errno == EIO);
  close(fd);
  CHECK(env.Umount(mnt, true).exit_code == 0);
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  ferry::testing::RequireFuseOrSkip();
  return Catch::Session().run(argc, argv);
}
