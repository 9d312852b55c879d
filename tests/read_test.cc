// Reading a mounted image: many threads at once, and every write refused.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"
#include "tests/support/tree_compare.h"

namespace ferry::testing {
namespace {

struct Fixture {
  ScopedTempDir tmp{"ferry-read"};
  std::string src = tmp.path() + "/src";
  std::string store = tmp.path() + "/store";
  std::string mnt = tmp.path() + "/mnt";
  std::vector<std::pair<std::string, size_t>> files;

  Fixture() {
    std::mt19937_64 rng(1234);
    for (int d = 0; d < 10; ++d) {
      std::string dir = src + "/d" + std::to_string(d);
      std::filesystem::create_directories(dir);
      for (int f = 0; f < 10; ++f) {
        // Mixed sizes: tiny, around chunk bounds, several MiB.
        size_t size = (f % 3 == 0) ? rng() % 5000 : rng() % (3 << 20);
        std::string rel = "d" + std::to_string(d) + "/f" + std::to_string(f);
        std::string data(size, '\0');
        for (size_t i = 0; i < size; i += 8) {
          uint64_t v = rng();
          std::memcpy(&data[i], &v, std::min<size_t>(8, size - i));
        }
        if (f % 4 == 1 && size > 100000) std::memset(&data[1000], 'a', 90000);  // compressible
        std::ofstream(src + "/" + rel, std::ios::binary).write(data.data(), data.size());
        files.emplace_back(rel, size);
      }
    }
    std::filesystem::create_directories(mnt);
  }
};

TEST_CASE("concurrency: 8 threads reading random ranges get exactly the source bytes") {
  Fixture fx;
  auto b = Ferry(fx.store, {"build", fx.src, "--tag", "conc", "-q"});
  REQUIRE(b.exit_code == 0);
  ScopedMount m(fx.store, "conc", fx.mnt);
  INFO(m.result().err);
  REQUIRE(m.ok());
  std::atomic<int> mismatches{0}, errors{0}, reads{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::vector<char> a(1 << 20), b(1 << 20);
      for (int i = 0; i < 300; ++i) {
        const auto& [rel, size] = fx.files[rng() % fx.files.size()];
        size_t off = size ? rng() % (size + 10) : 0;
        size_t len = 1 + rng() % a.size();
        int fa = open((fx.mnt + "/" + rel).c_str(), O_RDONLY);
        int fb = open((fx.src + "/" + rel).c_str(), O_RDONLY);
        if (fa < 0 || fb < 0) {
          ++errors;
        } else {
          ssize_t na = pread(fa, a.data(), len, static_cast<off_t>(off));
          ssize_t nb = pread(fb, b.data(), len, static_cast<off_t>(off));
          if (na != nb || (na > 0 && std::memcmp(a.data(), b.data(), static_cast<size_t>(na)) != 0)) {
            ++mismatches;
          }
          ++reads;
        }
        if (fa >= 0) close(fa);
        if (fb >= 0) close(fb);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(errors == 0);
  CHECK(mismatches == 0);
  CHECK(reads == 8 * 300);
  auto stats = Run({FerryBinary(), "stats", fx.mnt});
  REQUIRE(stats.exit_code == 0);
  CHECK(stats.out.find("\"read_errors\":0") != std::string::npos);
}

TEST_CASE("every write attempt gets EROFS") {
  Fixture fx;
  REQUIRE(Ferry(fx.store, {"build", fx.src, "--tag", "ro", "-q"}).exit_code == 0);
  ScopedMount m(fx.store, "ro", fx.mnt);
  REQUIRE(m.ok());
  std::string f = fx.mnt + "/d0/f1";
  errno = 0;
  CHECK(open(f.c_str(), O_WRONLY) == -1);
  CHECK(errno == EROFS);
  CHECK(open(f.c_str(), O_RDWR) == -1);
  CHECK(errno == EROFS);
  CHECK(open((fx.mnt + "/new").c_str(), O_CREAT | O_WRONLY, 0644) == -1);
  CHECK(errno == EROFS);
  CHECK(mkdir((fx.mnt + "/newdir").c_str(), 0755) == -1);
  CHECK(errno == EROFS);
  CHECK(unlink(f.c_str()) == -1);
  CHECK(errno == EROFS);
  CHECK(rename(f.c_str(), (fx.mnt + "/moved").c_str()) == -1);
  CHECK(errno == EROFS);
  CHECK(chmod(f.c_str(), 0777) == -1);
  CHECK(errno == EROFS);
  CHECK(truncate(f.c_str(), 0) == -1);
  CHECK(errno == EROFS);
  CHECK(setxattr(f.c_str(), "user.x", "1", 1, 0) == -1);
  CHECK(errno == EROFS);
  CHECK(symlink("x", (fx.mnt + "/ln").c_str()) == -1);
  CHECK(errno == EROFS);
  CHECK(access(f.c_str(), W_OK) == -1);
  CHECK(errno == EROFS);
  // And the file is unchanged.
  auto a = HashFileContents(f), b = HashFileContents(fx.src + "/d0/f1");
  CHECK(a == b);
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  ferry::testing::RequireFuseOrSkip();
  return Catch::Session().run(argc, argv);
}
