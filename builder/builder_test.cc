// Unit tests for the builder: chunking, the tree and its path rules.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <set>

#include "builder/chunker.h"
#include "builder/tree.h"

namespace ferry::builder {
namespace {

std::vector<uint8_t> Random(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    b = static_cast<uint8_t>(seed);
  }
  return v;
}

std::vector<std::vector<uint8_t>> Cut(const std::vector<uint8_t>& data, size_t piece) {
  Chunker c(ChunkerParams{});
  std::vector<std::vector<uint8_t>> out;
  auto emit = [&](std::span<const uint8_t> s) { out.emplace_back(s.begin(), s.end()); };
  for (size_t i = 0; i < data.size(); i += piece) {
    c.Update(std::span(data).subspan(i, std::min(piece, data.size() - i)), emit);
  }
  c.Finish(emit);
  return out;
}

TEST_CASE("chunker: sizes within bounds, independent of how data is fed") {
  auto data = Random(8 << 20, 42);
  auto a = Cut(data, 1 << 20);
  auto b = Cut(data, 4099);
  REQUIRE(a == b);
  size_t total = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    total += a[i].size();
    CHECK(a[i].size() <= 512 * 1024);
    if (i + 1 < a.size()) CHECK(a[i].size() >= 32 * 1024);
  }
  CHECK(total == data.size());
  // The average lands near the target (normalized chunking).
  double avg = double(data.size()) / double(a.size());
  CHECK(avg > 64 * 1024);
  CHECK(avg < 256 * 1024);
}

TEST_CASE("chunker: an insertion changes only nearby chunks") {
  auto data = Random(8 << 20, 7);
  auto before = Cut(data, 1 << 20);
  data.insert(data.begin() + (4 << 20), {'x', 'y', 'z'});
  auto after = Cut(data, 1 << 20);
  std::set<std::vector<uint8_t>> old_set(before.begin(), before.end());
  size_t changed = 0;
  for (const auto& c : after) changed += old_set.count(c) ? 0 : 1;
  CHECK(changed >= 1);
  CHECK(changed <= 3);
}

TEST_CASE("chunker: short input is one chunk") {
  auto data = Random(1000, 1);
  auto chunks = Cut(data, 100);
  REQUIRE(chunks.size() == 1);
  CHECK(chunks[0] == data);
  CHECK(Cut({}, 10).empty());
}

std::shared_ptr<TreeNode> Node(uint32_t mode, int layer = 0) {
  auto n = std::make_shared<TreeNode>();
  n->mode = mode;
  n->layer = layer;
  return n;
}

TEST_CASE("tree: paths that leave the root are refused") {
  for (std::string bad : std::vector<std::string>{"../x", "a/../../x", "/etc/passwd", "a/..", std::string(256, 'n')}) {
    auto r = Tree::SplitPath(bad);
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
  }
  CHECK(Tree::SplitPath("./a//b/").value() == std::vector<std::string>{"a", "b"});
  CHECK(Tree::SplitPath(".").value().empty());
}

TEST_CASE("tree: a link cannot be used to escape") {
  Tree t;
  auto link = Node(S_IFLNK | 0777);
  link->symlink = "/etc";
  REQUIRE(t.Put("evil", link).ok());
  Status st = t.Put("evil/passwd", Node(S_IFREG | 0644));
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(st.message().find("evil/passwd") != std::string::npos);
}

TEST_CASE("tree: whiteouts and opaque directories hide lower layers only") {
  Tree t;
  REQUIRE(t.Put("etc", Node(S_IFDIR | 0755, 0)).ok());
  REQUIRE(t.Put("etc/a", Node(S_IFREG | 0644, 0)).ok());
  REQUIRE(t.Put("etc/b", Node(S_IFREG | 0644, 0)).ok());
  REQUIRE(t.Put("opt", Node(S_IFDIR | 0755, 0)).ok());
  REQUIRE(t.Put("opt/old", Node(S_IFREG | 0644, 0)).ok());
  t.set_layer(1);
  CHECK(t.ApplyWhiteout("etc/.wh.a", 1).value());
  REQUIRE(t.Put("opt/new", Node(S_IFREG | 0644, 1)).ok());
  CHECK(t.ApplyWhiteout("opt/.wh..wh..opq", 1).value());
  CHECK_FALSE(t.ApplyWhiteout("etc/b", 1).value());
  CHECK(t.Get("etc/a").status().code() == StatusCode::kNotFound);
  CHECK(t.Get("etc/b").ok());
  CHECK(t.Get("opt/old").status().code() == StatusCode::kNotFound);
  CHECK(t.Get("opt/new").ok());
}

}  // namespace
}  // namespace ferry::builder
