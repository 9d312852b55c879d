// What the `ferry snapshot` end-to-end tests share: a store, a ferryd root
// and the mounts made through it (unmounted before the daemon stops, also
// when a test fails), and the comparison of a mounted snapshot with the
// live tree it was taken from.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"
#include "tests/support/tree_compare.h"

#include <catch2/catch.hpp>

namespace ferry::testing {

namespace stdfs = std::filesystem;
constexpr uint64_t kMiB = 1 << 20;

inline void Sh(const std::string& cmd) {
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
}

inline void PWrite(const std::string& path, const std::string& data, off_t at) {
  int fd = open(path.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  CHECK(pwrite(fd, data.data(), data.size(), at) == static_cast<ssize_t>(data.size()));
  close(fd);
}

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `store` is a file:// path unless a test sets a URL (s3://) before use;
// `root` is the ferryd root the CLI calls go to.
struct SnapshotEnv {
  ScopedTempDir tmp{"ferry-snap"};
  std::string store = tmp.path() + "/store";
  std::string root = tmp.path() + "/ferryd";
  std::vector<std::pair<std::string, std::string>> mounts;  // (dir, daemon root)

  ~SnapshotEnv() {
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
      Ferry(store, {"umount", it->first, "--lazy", "--daemon", it->second});
    }
  }
  // Mounts `image` at tmp/NAME through the ferryd at `daemon_root` (default: root).
  std::string Mount(const std::string& image, const std::string& name, bool writable,
                    std::string daemon_root = "") {
    if (daemon_root.empty()) daemon_root = root;
    std::string dir = tmp.path() + "/" + name;
    stdfs::create_directories(dir);
    std::vector<std::string> args = {"mount", image, dir, "--daemon", daemon_root};
    if (writable) args.push_back("--writable");
    auto r = Ferry(store, args);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    mounts.emplace_back(dir, daemon_root);
    return dir;
  }
  // Unmounts a mount made by Mount (and forgets it).
  void Umount(const std::string& dir) {
    for (auto it = mounts.begin(); it != mounts.end(); ++it) {
      if (it->first != dir) continue;
      auto r = Ferry(store, {"umount", dir, "--daemon", it->second});
      INFO(r.err);
      CHECK(r.exit_code == 0);
      mounts.erase(it);
      return;
    }
    FAIL("not mounted by the test: " << dir);
  }
  nlohmann::json Snapshot(const std::string& dir, const std::string& tag,
                          std::vector<std::string> extra = {}, std::string daemon_root = "") {
    if (daemon_root.empty()) daemon_root = root;
    std::vector<std::string> args = {"snapshot", dir, "--tag", tag, "--json", "--daemon",
                                     daemon_root};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = Ferry(store, args);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    UNSCOPED_INFO("snapshot " << tag << ": " << r.out);
    return nlohmann::json::parse(r.out);
  }
};

inline uint64_t U64(const nlohmann::json& j, const char* key) { return j.at(key).get<uint64_t>(); }

// The snapshot mounted read-only equals the live tree, but for the
// differences in `allowed` (whole lines of CompareTrees).
inline void CheckSameTree(const std::string& live, const std::string& snapshot,
                          const std::set<std::string>& allowed = {}) {
  CompareOptions opt;
  opt.compare_dir_nlink = false;  // overlayfs reports 1 for merged directories
  std::vector<std::string> diffs;
  for (std::string& d : CompareTrees(live, snapshot, opt)) {
    if (!allowed.contains(d)) diffs.push_back(std::move(d));
  }
  for (const auto& d : diffs) UNSCOPED_INFO(d);
  CHECK(diffs.empty());
}

inline struct stat Stat(const std::string& path) {
  struct stat st;
  REQUIRE(lstat(path.c_str(), &st) == 0);
  return st;
}

}  // namespace ferry::testing
