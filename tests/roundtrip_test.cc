// Round trip: build an image from a tree, mount it, and compare every entry
// and every metadata field of the mount with the source; then export the
// image to tar, build again from the tar, and compare once more.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>

#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"
#include "tests/support/tree_compare.h"
#include "tests/support/tree_gen.h"

namespace ferry::testing {
namespace {

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::string LastLine(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  return t.substr(t.rfind('\n') == std::string::npos ? 0 : t.rfind('\n') + 1);
}

// Builds `source` as `tag`, mounts it and compares; returns the image id.
std::string BuildMountCompare(const std::string& store, const std::string& source,
                              const std::string& tag, const std::string& mnt,
                              const CompareOptions& opt, const std::string& compare_to) {
  auto b = Ferry(store, {"build", source, "--tag", tag});
  INFO(b.err);
  REQUIRE(b.exit_code == 0);
  std::string id = LastLine(b.out);
  REQUIRE(id.size() == 64);
  std::filesystem::create_directories(mnt);
  ScopedMount m(store, tag, mnt);
  INFO(m.result().err);
  REQUIRE(m.ok());
  auto diffs = CompareTrees(compare_to, mnt, opt);
  INFO(Join(diffs));
  CHECK(diffs.empty());
  return id;
}

TEST_CASE("round trip: generated tree with every edge case, and back out through export") {
  ScopedTempDir tmp("ferry-rt");
  std::string src = tmp.path() + "/src", store = tmp.path() + "/store";
  GenOptions gen;
  GenerateEdgeCaseTree(src, gen);
  CompareOptions opt;
  BuildMountCompare(store, src, "edge", tmp.path() + "/mnt", opt, src);

  // ferry export gives the same tree back (tar cannot hold sockets).
  std::string tar = tmp.path() + "/edge.tar";
  auto e = Ferry(store, {"export", "edge", "-o", tar});
  INFO(e.err);
  REQUIRE(e.exit_code == 0);
  CHECK(e.err.find("sockets skipped") != std::string::npos);
  CompareOptions no_sockets = opt;
  no_sockets.compare_sockets = false;
  BuildMountCompare(store, tar, "edge-from-tar", tmp.path() + "/mnt2", no_sockets, src);
}

TEST_CASE("round trip: a real Linux tree (Debian packages)") {
  const char* tree = std::getenv("FERRY_DEBIAN_TREE");
  REQUIRE(tree != nullptr);
  REQUIRE(std::filesystem::exists(std::string(tree) + "/usr/bin"));
  ScopedTempDir tmp("ferry-rt-deb");
  BuildMountCompare(tmp.path() + "/store", tree, "debian", tmp.path() + "/mnt", {}, tree);
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  ferry::testing::RequireFuseOrSkip();
  return Catch::Session().run(argc, argv);
}
