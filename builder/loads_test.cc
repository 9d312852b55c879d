// Unit tests for what the builder records for LOADS: what programs load
// (ELF headers, and resolving them in a tree) and what Python modules
// import (their source, and resolving it in a tree).
#include <catch2/catch.hpp>
#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>

#include "builder/elf_loads.h"
#include "builder/python_imports.h"
#include "builder/tree.h"
#include "tests/support/bytes.h"

namespace ferry::builder {
namespace {

using testing::Random;

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


// "level:module:name,name" for each import, to compare in one line.
std::vector<std::string> Show(const std::vector<PyImport>& imports) {
  std::vector<std::string> out;
  for (const PyImport& i : imports) {
    std::string s = std::to_string(i.level) + ":" + i.module + ":";
    for (size_t k = 0; k < i.names.size(); ++k) s += (k ? "," : "") + i.names[k];
    out.push_back(s);
  }
  return out;
}

TEST_CASE("python imports: the statements that run at import time, in order") {
  const std::string source = R"PY(#!/usr/bin/python3
"""Module docstring: import not_a_module
import also_not
"""
from __future__ import annotations
import os, sys as system
import xml.etree.ElementTree as ET
from . import sibling
from ..parent import (a,
    b as bee)  # import in_comment
from .pkg.mod import *
x = "import in_string"; import json
try:
    import _json
except ImportError:
    _json = None
if TYPE_CHECKING:
    import typing_only
else:
    import runtime_else
def f():
    import lazy
    if x:
        import lazy2
class C:
    import in_class
    def m(self):
        import lazy3
    import after_method
async def g():
    import lazy4
if __name__ == "__main__":
    import main_only
import \
    continued
s = '''
import in_triple
'''
t = r"\"import in_raw"
if True:
	import tabbed
import last
)PY";
  std::vector<std::string> want = {
      "0:__future__:annotations", "0:os:", "0:sys:", "0:xml.etree.ElementTree:", "1::sibling", "2:parent:a,b",
      "1:pkg.mod:*", "0:json:", "0:_json:", "0:runtime_else:", "0:in_class:", "0:after_method:",
      "0:continued:", "0:tabbed:", "0:last:"};
  CHECK(Show(ParsePythonImports(source)) == want);
}

TEST_CASE("python imports: any bytes parse to something bounded, and no crash") {
  CHECK(ParsePythonImports("").empty());
  CHECK(ParsePythonImports("import").empty());
  CHECK(ParsePythonImports("from import x").empty());
  CHECK(ParsePythonImports("from . import").empty());
  CHECK(ParsePythonImports("import 3x, .y").empty());
  CHECK(ParsePythonImports("'''unterminated\nimport x").empty());
  CHECK(Show(ParsePythonImports("s = 'open\nimport y")) == std::vector<std::string>{"0:y:"});
  CHECK(ParsePythonImports("(((\nimport z").empty());  // inside brackets: not a statement
  std::string many;
  for (int i = 0; i < 1000; ++i) many += "import m" + std::to_string(i) + "\n";
  CHECK(ParsePythonImports(many).size() == kMaxPyImports);
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    auto bytes = Random(4096, seed);
    for (auto& b : bytes) {
      if (b % 7 == 0) b = '\n';
      if (b % 11 == 0) b = ' ';
    }
    auto got = ParsePythonImports({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
    CHECK(got.size() <= kMaxPyImports);
  }
  const std::string text = "import os\n";
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  PyCollector not_python("x.txt", text.size());
  not_python.Add(0, bytes);
  CHECK(not_python.Finish() == nullptr);
  PyCollector module("a/b.py", text.size());
  module.Add(0, bytes);
  auto got = module.Finish();
  REQUIRE(got != nullptr);
  CHECK(Show(*got) == std::vector<std::string>{"0:os:"});
  PyCollector holey("a/c.py", 100);  // data that does not start at 0 (a sparse file)
  holey.Add(50, bytes);
  CHECK(holey.Finish() == nullptr);
}

TEST_CASE("python imports: resolved as the interpreter finds them, as the files it reads") {
  // /usr/lib/python3.11: json (a package, compiled for 3.11 and 3.9), re,
  // os.py without a compiled file, lib-dynload/_json, ns (a namespace
  // package); /usr/lib/python3/dist-packages/pkg.
  auto root = Dir(), usr = Dir(), lib = Dir(), py311 = Dir(), json = Dir(), json_cache = Dir(), re = Dir(),
       re_cache = Dir(), dynload = Dir(), py3 = Dir(), dist = Dir(), pkg = Dir(), pkg_cache = Dir(),
       ns = Dir();
  auto json_init = File(), json_init_311 = File(), json_init_39 = File(), decoder = File(), decoder_311 = File(),
       re_init = File(), re_init_311 = File(), os_py = File(), json_so = File(), pkg_init = File(),
       pkg_init_311 = File(), thing = File(), thing_311 = File(), ns_mod = File();
  root->children = {{"usr", usr}};
  usr->children = {{"lib", lib}};
  lib->children = {{"python3.11", py311}, {"python3", py3}};
  py311->children = {{"json", json}, {"re", re}, {"os.py", os_py}, {"lib-dynload", dynload}, {"ns", ns}};
  json->children = {{"__init__.py", json_init}, {"decoder.py", decoder}, {"__pycache__", json_cache}};
  json_cache->children = {{"__init__.cpython-311.pyc", json_init_311}, {"__init__.cpython-39.pyc", json_init_39},
                          {"decoder.cpython-311.pyc", decoder_311}};
  re->children = {{"__init__.py", re_init}, {"__pycache__", re_cache}};
  re_cache->children = {{"__init__.cpython-311.pyc", re_init_311}};
  dynload->children = {{"_json.cpython-311-x86_64-linux-gnu.so", json_so}};
  ns->children = {{"mod.py", ns_mod}};
  py3->children = {{"dist-packages", dist}};
  dist->children = {{"pkg", pkg}};
  pkg->children = {{"__init__.py", pkg_init}, {"thing.py", thing}, {"__pycache__", pkg_cache}};
  pkg_cache->children = {{"__init__.cpython-311.pyc", pkg_init_311}, {"thing.cpython-311.pyc", thing_311}};

  PyModuleIndex index(*root);
  index.AddDirectory("/usr", *usr);
  index.AddDirectory("/usr/lib", *lib);
  index.AddDirectory("/usr/lib/python3.11", *py311);
  index.AddDirectory("/usr/lib/python3.11/json", *json);
  index.AddDirectory("/usr/lib/python3.11/lib-dynload", *dynload);
  index.AddDirectory("/usr/lib/python3/dist-packages", *dist);
  index.AddDirectory("/usr/lib/python3/dist-packages/pkg", *pkg);

  auto imports = ParsePythonImports(
      "from .decoder import JSONDecoder\nimport re\nimport _json\nimport os\nimport sys\n"
      "import nonexistent.sub\nfrom pkg import thing, not_a_module\nimport ns.mod\nimport re\n");
  auto records = index.Resolve("/usr/lib/python3.11/json/__init__.py", imports);
  REQUIRE(records.size() == 2);  // one per compiled file, in name order
  CHECK(records[0].file == json_init_311.get());
  // The 3.11 interpreter reads 3.11 files; sys is built in, nonexistent is
  // not in the image; ns is a namespace package (nothing to read) holding
  // a module; re is imported twice but listed once.
  std::vector<const TreeNode*> want311 = {decoder_311.get(), re_init_311.get(), json_so.get(), os_py.get(),
                                          pkg_init_311.get(), thing_311.get(), ns_mod.get()};
  CHECK(records[0].deps == want311);
  // The 3.9 one finds no 3.9 files here: it reads the sources.
  CHECK(records[1].file == json_init_39.get());
  std::vector<const TreeNode*> want39 = {decoder.get(), re_init.get(), json_so.get(), os_py.get(),
                                         pkg_init.get(), thing.get(), ns_mod.get()};
  CHECK(records[1].deps == want39);

  // A module without compiled files: recorded on its source, and reads the
  // only compiled file of what it imports (json has two: its source).
  auto plain = index.Resolve("/usr/lib/python3.11/os.py", ParsePythonImports("import re\nfrom json import decoder\n"));
  REQUIRE(plain.size() == 1);
  CHECK(plain[0].file == os_py.get());
  CHECK(plain[0].deps == std::vector<const TreeNode*>{re_init_311.get(), json_init.get(), decoder_311.get()});
  // Relative imports above the top-level package, or nothing found: no record.
  CHECK(index.Resolve("/usr/lib/python3.11/os.py", ParsePythonImports("from .. import x\nimport nope\n")).empty());
}

TEST_CASE("python imports: what an interpreter imports by itself, as the files it reads") {
  // python3.11 and python3.9 libraries with encodings (a package with its
  // UTF-8 codec), site, a sitecustomize.py that is a symbolic link (as on
  // Debian) and a usercustomize.py in dist-packages without a compiled file.
  auto root = Dir(), usr = Dir(), lib = Dir(), py311 = Dir(), py39 = Dir(), cache311 = Dir(), cache39 = Dir(),
       enc311 = Dir(), enc311_cache = Dir(), enc39 = Dir(), py3 = Dir(), dist = Dir();
  auto enc_init = File(), enc_init_311 = File(), utf8 = File(), utf8_311 = File(), latin = File(),
       site = File(), site_311 = File(), custom_311 = File(), enc39_init = File(), site39 = File(),
       site39_39 = File(), user = File();
  root->children = {{"usr", usr}};
  usr->children = {{"lib", lib}};
  lib->children = {{"python3.11", py311}, {"python3.9", py39}, {"python3", py3}};
  py311->children = {{"encodings", enc311}, {"site.py", site}, {"sitecustomize.py", Link("/etc/python3.11/sitecustomize.py")},
                     {"__pycache__", cache311}};
  cache311->children = {{"site.cpython-311.pyc", site_311}, {"sitecustomize.cpython-311.pyc", custom_311}};
  enc311->children = {{"__init__.py", enc_init}, {"utf_8.py", utf8}, {"latin_1.py", latin}, {"__pycache__", enc311_cache}};
  enc311_cache->children = {{"__init__.cpython-311.pyc", enc_init_311}, {"utf_8.cpython-311.pyc", utf8_311}};
  py39->children = {{"encodings", enc39}, {"site.py", site39}, {"__pycache__", cache39}};
  enc39->children = {{"__init__.py", enc39_init}};
  cache39->children = {{"site.cpython-39.pyc", site39_39}};
  py3->children = {{"dist-packages", dist}};
  dist->children = {{"usercustomize.py", user}};

  PyModuleIndex index(*root);
  for (const auto& [path, node] : std::vector<std::pair<std::string, TreeNode*>>{
           {"/usr", usr.get()}, {"/usr/lib", lib.get()}, {"/usr/lib/python3.11", py311.get()},
           {"/usr/lib/python3.11/encodings", enc311.get()}, {"/usr/lib/python3.9", py39.get()},
           {"/usr/lib/python3.9/encodings", enc39.get()}, {"/usr/lib/python3", py3.get()},
           {"/usr/lib/python3/dist-packages", dist.get()}}) {
    index.AddDirectory(path, *node);
  }
  // 3.11 reads its compiled files; site is frozen into it; the link's
  // compiled file counts, the link itself is never a file to read.
  CHECK(index.Interpreter("/usr/bin/python3.11") ==
        std::vector<const TreeNode*>{enc_init_311.get(), utf8_311.get(), custom_311.get(), user.get()});
  // 3.9 has no UTF-8 codec here and no compiled encodings: the source; it reads site.
  CHECK(index.Interpreter("/usr/local/bin/python3.9") ==
        std::vector<const TreeNode*>{enc39_init.get(), user.get(), site39_39.get()});
  // Not an interpreter's path.
  CHECK(index.Interpreter("/usr/bin/python3").empty());
  CHECK(index.Interpreter("/usr/lib/python3.11").empty());
  CHECK(index.Interpreter("/usr/bin/python3.11-config").empty());
}

}  // namespace
}  // namespace ferry::builder
