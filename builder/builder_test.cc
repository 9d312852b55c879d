// Unit tests for the builder: chunking, the tree and its path rules, what
// programs load (ELF headers, and resolving them in a tree).
#include <catch2/catch.hpp>
#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

#include "builder/chunker.h"
#include "builder/elf_loads.h"
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

// ---- what programs load

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::vector<uint8_t> bytes;
  FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  uint8_t buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) bytes.insert(bytes.end(), buf, buf + n);
  std::fclose(f);
  return bytes;
}

std::unique_ptr<ElfLoads> LoadsOfFile(const std::string& path) { return ReadElfLoads(ReadBytes(path)); }

std::string WriteTemp(const std::vector<uint8_t>& bytes) {
  char path[] = "/tmp/ferry-elf-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  close(fd);
  return path;
}

TEST_CASE("elf loads: a dynamically linked program names its interpreter and libc") {
  auto loads = LoadsOfFile("/bin/sh");
  REQUIRE(loads != nullptr);
  CHECK(loads->interp.rfind("/lib", 0) == 0);
  CHECK(loads->interp.find("ld-linux") != std::string::npos);
  bool libc = false;
  for (const auto& n : loads->needed) libc = libc || n.rfind("libc.so", 0) == 0;
  CHECK(libc);
}

TEST_CASE("elf loads: the early ranges are the first segment if not executable and the writable ones") {
  // Expected from binutils' readelf, not from libelf: each LOAD line's
  // offset, file size and flags.
  std::vector<std::pair<uint64_t, uint64_t>> expected;
  FILE* p = popen("readelf -lW /bin/sh", "r");
  REQUIRE(p != nullptr);
  char line[512];
  bool first = true;
  while (std::fgets(line, sizeof(line), p) != nullptr) {
    std::istringstream in(line);
    std::string type, off, vaddr, paddr, filesz, memsz, flags, rest;
    if (!(in >> type) || type != "LOAD") continue;
    in >> off >> vaddr >> paddr >> filesz >> memsz;
    std::getline(in, rest);  // the flags, e.g. "R E 0x1000" or "RW  0x1000"
    bool exec = rest.find('E') != std::string::npos, write = rest.find('W') != std::string::npos;
    if ((first && !exec) || write) expected.emplace_back(std::stoull(off, nullptr, 16), std::stoull(filesz, nullptr, 16));
    first = false;
  }
  REQUIRE(pclose(p) == 0);
  REQUIRE(!expected.empty());
  auto loads = LoadsOfFile("/bin/sh");
  REQUIRE(loads != nullptr);
  CHECK(loads->early == expected);
  // A segment that says it lies past the end of the file is left out.
  std::vector<uint8_t> sh = ReadBytes("/bin/sh");
  auto* eh = reinterpret_cast<Elf64_Ehdr*>(sh.data());
  REQUIRE(eh->e_phoff + eh->e_phnum * sizeof(Elf64_Phdr) <= sh.size());
  auto* ph = reinterpret_cast<Elf64_Phdr*>(sh.data() + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_W)) ph[i].p_filesz = sh.size();
  }
  auto damaged = ReadElfLoads(std::move(sh));
  REQUIRE(damaged != nullptr);
  CHECK(damaged->early.size() == expected.size() - 1);
  for (auto [offset, length] : damaged->early) CHECK(offset + length <= ReadBytes("/bin/sh").size());
}

TEST_CASE("elf loads: anything else, or a damaged ELF file, gives nothing and no crash") {
  // Not ELF; the ELF magic alone; a real program cut short and with its
  // header overwritten, each at several lengths.
  std::vector<std::vector<uint8_t>> inputs = {Random(4096, 7), {0x7f, 'E', 'L', 'F'}};
  std::vector<uint8_t> sh = ReadBytes("/bin/sh");
  for (size_t len : {size_t{64}, size_t{100}, size_t{4096}, sh.size() / 2}) {
    inputs.emplace_back(sh.begin(), sh.begin() + static_cast<std::ptrdiff_t>(len));
  }
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto damaged = sh;
    auto noise = Random(256, seed);
    size_t at = 16 + (seed * 97) % 200;  // program and section header fields
    for (size_t i = 0; i < 8 && at + i < damaged.size(); ++i) damaged[at + i] = noise[i];
    inputs.push_back(std::move(damaged));
  }
  int parsed = 0;
  for (const auto& bytes : inputs) {
    std::string path = WriteTemp(bytes);
    auto loads = LoadsOfFile(path);  // must return, whatever it finds
    parsed += loads != nullptr;
    if (loads != nullptr) {
      for (const auto& n : loads->needed) CHECK(!n.empty());
    }
    unlink(path.c_str());
  }
  CHECK(parsed < static_cast<int>(inputs.size()));  // the non-ELF ones at least give nothing
}

std::shared_ptr<TreeNode> Dir() {
  auto n = std::make_shared<TreeNode>();
  n->mode = S_IFDIR | 0755;
  return n;
}
std::shared_ptr<TreeNode> File() {
  auto n = std::make_shared<TreeNode>();
  n->mode = S_IFREG | 0755;
  return n;
}
std::shared_ptr<TreeNode> Link(const std::string& target) {
  auto n = std::make_shared<TreeNode>();
  n->mode = S_IFLNK | 0777;
  n->symlink = target;
  return n;
}

TEST_CASE("elf loads: resolved in the tree as the loader searches, through symlinks, each once") {
  // A merged-/usr layout: /lib -> usr/lib, /lib64/ld.so -> absolute link.
  auto root = Dir();
  auto usr = Dir(), usrlib = Dir(), multi = Dir(), lib64 = Dir(), etc = Dir(), opt = Dir(),
       app = Dir(), applib = Dir(), bin = Dir();
  root->children = {{"usr", usr}, {"lib", Link("usr/lib")}, {"lib64", lib64}, {"etc", etc},
                    {"opt", opt}};
  usr->children = {{"lib", usrlib}, {"bin", bin}};
  usrlib->children = {{"x86_64-linux-gnu", multi}};
  auto ld = File(), libc = File(), libm = File(), libfoo = File(), cache = File(), prog = File();
  multi->children = {{"ld-linux-x86-64.so.2", ld}, {"libc.so.6", libc}, {"libm.so.6", libm},
                     {"libloop.so", Link("libloop.so")}};
  lib64->children = {{"ld-linux-x86-64.so.2", Link("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")}};
  etc->children = {{"ld.so.cache", cache}};
  opt->children = {{"app", app}};
  app->children = {{"lib", applib}, {"bin", bin}};
  applib->children = {{"libfoo.so.1", libfoo}};
  bin->children = {{"prog", prog}};

  auto foo_loads = std::make_shared<ElfLoads>();
  foo_loads->needed = {"libm.so.6", "libc.so.6"};
  libfoo->elf = foo_loads;
  ElfLoads loads;
  loads.interp = "/lib64/ld-linux-x86-64.so.2";
  loads.needed = {"libfoo.so.1", "libc.so.6", "libmissing.so", "libloop.so"};
  loads.runpath = {"$ORIGIN/../lib"};

  auto got = ResolveLoads(*root, "/opt/app/bin/prog", loads);
  std::vector<const TreeNode*> want = {ld.get(), cache.get(), libfoo.get(), libc.get(), libm.get()};
  CHECK(got == want);  // interpreter, cache, own libraries, then theirs; libc once

  // No interpreter (a library): no cache either; a missing library is skipped.
  ElfLoads lib;
  lib.needed = {"libmissing.so", "libm.so.6"};
  CHECK(ResolveLoads(*root, "/usr/lib/x86_64-linux-gnu/libx.so", lib) ==
        std::vector<const TreeNode*>{libm.get()});
}

TEST_CASE("elf loads: the absolute paths in a library's read-only data are recorded") {
  // glibc opens these by fixed names; libelf finds them in .rodata.
  std::string libc = "/lib/x86_64-linux-gnu/libc.so.6";
  if (access(libc.c_str(), R_OK) != 0) libc = "/lib/aarch64-linux-gnu/libc.so.6";
  auto loads = LoadsOfFile(libc);
  REQUIRE(loads != nullptr);
  auto has = [&](const std::string& p) {
    return std::find(loads->named.begin(), loads->named.end(), p) != loads->named.end();
  };
  CHECK(has("/etc/nsswitch.conf"));
  CHECK(has("/etc/localtime"));
  CHECK(has("/usr/lib/locale"));
  CHECK(loads->named.size() <= kMaxNamed);
  for (const auto& p : loads->named) CHECK(p[0] == '/');
}

TEST_CASE("elf loads: named files are added after the libraries, small files and small directories only") {
  auto root = Dir();
  auto etc = Dir(), usr = Dir(), share = Dir(), small = Dir(), sub = Dir(), huge = Dir(), zone = Dir();
  auto conf = File(), big = File(), a = File(), b = File(), utc = File(), cache = File();
  conf->size = 500;
  big->size = kMaxNamedFileBytes + 1;
  a->size = 1000;
  b->size = 2000;
  utc->size = 114;
  root->children = {{"etc", etc}, {"usr", usr}};
  etc->children = {{"app.conf", conf}, {"big.conf", big}, {"localtime", Link("/usr/share/zone/UTC")},
                   {"ld.so.cache", cache}};
  usr->children = {{"share", share}};
  share->children = {{"small", small}, {"huge", huge}, {"zone", zone}};
  small->children = {{"a", a}, {"sub", sub}};
  sub->children = {{"b", b}};
  zone->children = {{"UTC", utc}};
  for (int i = 0; i < static_cast<int>(kMaxNamedDirFiles) + 1; ++i) {
    auto f = File();
    f->size = 1;
    huge->children["f" + std::to_string(i)] = f;
  }
  ElfLoads loads;
  loads.named = {"/etc/app.conf", "/etc/big.conf", "/usr/share/small", "/usr/share/huge",
                 "/nonexistent", "/etc/localtime", "/etc/app.conf", "/"};
  auto got = ResolveLoads(*root, "/usr/bin/prog", loads);
  // A program without libraries: its named files in order, each once, the
  // symlink followed; too large a file, directory or the root left out.
  std::vector<const TreeNode*> want = {conf.get(), a.get(), b.get(), utc.get()};
  CHECK(got == want);
}

}  // namespace
}  // namespace ferry::builder
