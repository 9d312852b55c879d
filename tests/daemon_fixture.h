// What the ferryd end-to-end tests share: an environment (a temporary
// store, a daemon root) and images made from random files, compared through
// a mount.
#pragma once

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
#include "tests/s3/test_servers.h"

#include <catch2/catch.hpp>

namespace ferry::testing {

namespace stdfs = std::filesystem;

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) throw std::runtime_error("cannot read " + path);
  return ss.str();
}

// A tree of incompressible files (about 20 MB) plus one 4 MiB file, built
// into `store` as `tag`.
struct Image {
  std::string src, tag;
  std::vector<std::string> files;  // relative paths
};

inline Image MakeImage(const std::string& dir, const std::string& store, const std::string& tag,
                uint64_t seed) {
  Image img{dir, tag, {}};
  std::mt19937_64 rng(seed);
  auto write = [&](const std::string& rel, size_t size) {
    std::string data(size, '\0');
    for (size_t i = 0; i < size; i += 8) {
      uint64_t v = rng();
      std::memcpy(&data[i], &v, std::min<size_t>(8, size - i));
    }
    stdfs::create_directories(stdfs::path(dir + "/" + rel).parent_path());
    std::ofstream(dir + "/" + rel, std::ios::binary).write(data.data(), data.size());
    img.files.push_back(rel);
  };
  for (int i = 0; i < 40; ++i) {
    write("d" + std::to_string(i % 5) + "/f" + std::to_string(i),
          i % 4 == 0 ? rng() % 4000 : rng() % (1 << 20));
  }
  write("big", 4 << 20);
  auto b = Ferry(store, {"build", dir, "--tag", tag, "-q"});
  INFO(b.err);
  REQUIRE(b.exit_code == 0);
  return img;
}

// Every file of `img` read through `mnt` equals its source; returns the
// number of mismatches (0 when all match).
inline int Mismatches(const Image& img, const std::string& mnt) {
  int bad = 0;
  for (const auto& f : img.files) {
    if (ReadAll(mnt + "/" + f) != ReadAll(img.src + "/" + f)) {
      UNSCOPED_INFO("differs: " + f);
      ++bad;
    }
  }
  return bad;
}

inline uint64_t U64(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) return 0;
  const auto& v = j.at(key);
  return v.is_string() ? std::stoull(v.get<std::string>()) : v.get<uint64_t>();
}

// With the chunks waiting for admission written first (--flush).
inline nlohmann::json CacheStats(const std::string& root) {
  auto r = Ferry("/unused", {"cache", "stats", "--json", "--flush", "--daemon", root});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return nlohmann::json::parse(r.out);
}

struct Env {
  ScopedTempDir tmp{"ferry-daemon"};
  std::string store = tmp.path() + "/store";
  std::string root = tmp.path() + "/ferryd";
  std::string Dir(const std::string& name) {
    std::string d = tmp.path() + "/" + name;
    stdfs::create_directories(d);
    return d;
  }
  CommandResult Mount(const std::string& tag, const std::string& mnt, bool writable = false) {
    std::vector<std::string> args = {"mount", tag, mnt, "--daemon", root};
    if (writable) args.push_back("--writable");
    return Ferry(store, args);
  }
  CommandResult Umount(const std::string& mnt, bool lazy = false) {
    std::vector<std::string> args = {"umount", mnt, "--daemon", root};
    if (lazy) args.push_back("--lazy");
    return Ferry(store, args);
  }
};

}  // namespace ferry::testing
