#include "builder/elf_loads.h"

#include <gelf.h>
#include <libelf.h>

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>

namespace ferry::builder {

void ElfCollector::Add(uint64_t offset, std::span<const uint8_t> data) {
  if (!keep_) return;
  if (offset == 0 && bytes_.empty()) {
    keep_ = data.size() >= SELFMAG && std::memcmp(data.data(), ELFMAG, SELFMAG) == 0;
    if (keep_) bytes_.reserve(size_);
  }
  if (keep_ && offset == bytes_.size()) {
    bytes_.insert(bytes_.end(), data.begin(), data.end());
  } else {
    keep_ = false;  // not ELF, a hole, or data out of order: not worth it
    bytes_ = {};
  }
}

std::unique_ptr<ElfLoads> ElfCollector::Finish() {
  if (!keep_ || bytes_.size() != size_) return nullptr;
  return ReadElfLoads(std::move(bytes_));
}

namespace {

// Appends the NUL-terminated strings of `data` that look like absolute
// paths ("/x...", at most 255 bytes of [A-Za-z0-9._+-/]), each once.
void AbsolutePaths(std::span<const uint8_t> data, std::vector<std::string>* out) {
  auto path_char = [](uint8_t c) {
    return std::isalnum(c) || c == '/' || c == '.' || c == '_' || c == '-' || c == '+';
  };
  std::set<std::string> seen(out->begin(), out->end());
  for (size_t i = 0; i < data.size() && out->size() < kMaxNamed; ++i) {
    if (data[i] != '/' || (i > 0 && data[i - 1] != '\0')) continue;
    size_t end = i;
    while (end < data.size() && end - i < 256 && path_char(data[end])) ++end;
    if (end == data.size() || data[end] != '\0' || end - i > 255 || end - i < 2) continue;
    std::string p(reinterpret_cast<const char*>(data.data()) + i, end - i);
    if (seen.insert(p).second) out->push_back(std::move(p));
    i = end;
  }
}

}  // namespace

std::unique_ptr<ElfLoads> ReadElfLoads(std::vector<uint8_t> bytes) {
  const uint64_t size = bytes.size();
  if (size < sizeof(Elf64_Ehdr) || size > kMaxElfInspectBytes) return nullptr;
  static std::once_flag init;
  static bool usable = false;
  std::call_once(init, [] { usable = elf_version(EV_CURRENT) != EV_NONE; });
  if (!usable) return nullptr;
  Elf* elf = elf_memory(reinterpret_cast<char*>(bytes.data()), bytes.size());
  if (elf == nullptr) return nullptr;
  struct Closer {
    Elf* e;
    ~Closer() { elf_end(e); }
  } closer{elf};
  GElf_Ehdr ehdr;
  if (elf_kind(elf) != ELF_K_ELF || gelf_getehdr(elf, &ehdr) == nullptr ||
      (ehdr.e_type != ET_EXEC && ehdr.e_type != ET_DYN)) {
    return nullptr;
  }
  auto out = std::make_unique<ElfLoads>();
  size_t phnum = 0;
  if (elf_getphdrnum(elf, &phnum) != 0) return nullptr;
  bool first_load = true;
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf, static_cast<int>(i), &ph) == nullptr) continue;
    if (ph.p_type == PT_LOAD) {
      bool early = (first_load && (ph.p_flags & PF_X) == 0) || (ph.p_flags & PF_W) != 0;
      first_load = false;
      // Only ranges inside the file; a damaged header is no reason to fail.
      if (early && ph.p_filesz > 0 && ph.p_offset < size && ph.p_filesz <= size - ph.p_offset) {
        out->early.emplace_back(ph.p_offset, ph.p_filesz);
      }
      continue;
    }
    if (ph.p_type != PT_INTERP) continue;
    if (ph.p_offset >= size || ph.p_filesz == 0 || ph.p_filesz > 4096 || ph.p_filesz > size - ph.p_offset) {
      return nullptr;
    }
    const char* at = reinterpret_cast<const char*>(bytes.data()) + ph.p_offset;
    out->interp.assign(at, strnlen(at, ph.p_filesz));
  }
  Elf_Scn* scn = nullptr;
  while ((scn = elf_nextscn(elf, scn)) != nullptr) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) == nullptr || sh.sh_type != SHT_DYNAMIC) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (data == nullptr || sh.sh_entsize == 0) return nullptr;
    size_t count = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < count && i < 4096; ++i) {
      GElf_Dyn dyn;
      if (gelf_getdyn(data, static_cast<int>(i), &dyn) == nullptr || dyn.d_tag == DT_NULL) break;
      if (dyn.d_tag != DT_NEEDED && dyn.d_tag != DT_RUNPATH && dyn.d_tag != DT_RPATH) continue;
      const char* s = elf_strptr(elf, sh.sh_link, dyn.d_un.d_val);
      if (s == nullptr || *s == '\0') continue;
      if (dyn.d_tag == DT_NEEDED) {
        out->needed.emplace_back(s);
      } else {
        std::string list(s);
        for (size_t start = 0; start <= list.size();) {
          size_t end = list.find(':', start);
          if (end == std::string::npos) end = list.size();
          if (end > start) out->runpath.push_back(list.substr(start, end - start));
          start = end + 1;
        }
      }
    }
    break;  // one dynamic section
  }
  if (out->interp.empty() && out->needed.empty()) return nullptr;
  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf, &shstrndx) == 0) {
    for (scn = nullptr; (scn = elf_nextscn(elf, scn)) != nullptr;) {
      GElf_Shdr sh;
      if (gelf_getshdr(scn, &sh) == nullptr || sh.sh_type != SHT_PROGBITS) continue;
      const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
      if (name == nullptr || std::strcmp(name, ".rodata") != 0) continue;
      if (sh.sh_offset >= size || sh.sh_size > size - sh.sh_offset) continue;
      AbsolutePaths({bytes.data() + sh.sh_offset, static_cast<size_t>(sh.sh_size)}, &out->named);
    }
  }
  // In file order, overlapping segments (a damaged or odd file) merged.
  std::sort(out->early.begin(), out->early.end());
  std::vector<std::pair<uint64_t, uint64_t>> merged;
  for (auto [offset, length] : out->early) {
    if (!merged.empty() && offset <= merged.back().first + merged.back().second) {
      merged.back().second = std::max(merged.back().second, offset + length - merged.back().first);
    } else {
      merged.emplace_back(offset, length);
    }
  }
  out->early = std::move(merged);
  return out;
}

namespace {

std::deque<std::string> Components(const std::string& path) {
  std::deque<std::string> out;
  for (size_t start = 0; start <= path.size();) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) out.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The node at absolute `path`, following symbolic links (at most 40, as the
// kernel), or nullptr.
const TreeNode* Walk(const TreeNode& root, const std::string& path) {
  std::vector<const TreeNode*> dirs{&root};  // the chain from the root
  std::deque<std::string> parts = Components(path);
  int links = 0;
  while (!parts.empty()) {
    std::string c = std::move(parts.front());
    parts.pop_front();
    if (c == ".") continue;
    if (c == "..") {
      if (dirs.size() > 1) dirs.pop_back();
      continue;
    }
    const TreeNode* dir = dirs.back();
    if (!S_ISDIR(dir->mode)) return nullptr;
    auto it = dir->children.find(c);
    if (it == dir->children.end()) return nullptr;
    const TreeNode* n = it->second.get();
    if (S_ISLNK(n->mode)) {
      if (++links > 40 || n->symlink.empty()) return nullptr;
      if (n->symlink[0] == '/') dirs.resize(1);
      std::deque<std::string> target = Components(n->symlink);
      parts.insert(parts.begin(), target.begin(), target.end());
      continue;
    }
    dirs.push_back(n);
  }
  return dirs.back();
}

// The regular files under `dir` (depth first, by name; symbolic links not
// followed) if they are at most kMaxNamedDirFiles of kMaxNamedDirBytes in
// all; false (and stops looking) as soon as they are not.
bool SmallSubtree(const TreeNode& dir, std::vector<const TreeNode*>* files) {
  uint64_t bytes = 0;
  size_t visited = 0;
  std::vector<const TreeNode*> stack{&dir};
  while (!stack.empty()) {
    const TreeNode* d = stack.back();
    stack.pop_back();
    // Reversed, so that the stack pops children in name order.
    for (auto it = d->children.rbegin(); it != d->children.rend(); ++it) {
      const TreeNode* n = it->second.get();
      if (++visited > 4 * kMaxNamedDirFiles) return false;
      if (S_ISDIR(n->mode)) stack.push_back(n);
    }
    for (const auto& [name, child] : d->children) {
      if (!S_ISREG(child->mode)) continue;
      bytes += child->size;
      files->push_back(child.get());
      if (files->size() > kMaxNamedDirFiles || bytes > kMaxNamedDirBytes) return false;
    }
  }
  return true;
}

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

}  // namespace

std::vector<const TreeNode*> ResolveLoads(const TreeNode& root, const std::string& path,
                                          const ElfLoads& loads) {
  static const char* const kLibraryDirs[] = {
      "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
      "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib"};
  std::vector<const TreeNode*> out;
  std::set<const TreeNode*> seen{Walk(root, path)};
  auto add = [&](const TreeNode* n) {
    if (n == nullptr || !S_ISREG(n->mode) || out.size() >= kMaxLoads) return false;
    if (!seen.insert(n).second) return false;
    out.push_back(n);
    return true;
  };
  if (!loads.interp.empty() && loads.interp[0] == '/') {
    add(Walk(root, loads.interp));
    add(Walk(root, "/etc/ld.so.cache"));
  }
  // Breadth first, as the loader maps them.
  std::deque<std::pair<const ElfLoads*, std::string>> queue{{&loads, path}};
  std::vector<const ElfLoads*> mapped;  // the program, then its libraries
  while (!queue.empty() && out.size() < kMaxLoads) {
    auto [elf, from] = queue.front();
    queue.pop_front();
    mapped.push_back(elf);
    std::vector<std::string> dirs;
    for (std::string d : elf->runpath) {
      for (const char* origin : {"${ORIGIN}", "$ORIGIN"}) {
        for (size_t at; (at = d.find(origin)) != std::string::npos;) {
          d.replace(at, std::strlen(origin), Dirname(from));
        }
      }
      if (!d.empty() && d[0] == '/') dirs.push_back(d);
    }
    dirs.insert(dirs.end(), std::begin(kLibraryDirs), std::end(kLibraryDirs));
    for (const std::string& name : elf->needed) {
      std::vector<std::string> candidates;
      if (name.find('/') != std::string::npos) {
        if (name[0] == '/') candidates.push_back(name);
      } else {
        for (const std::string& d : dirs) candidates.push_back(d + "/" + name);
      }
      for (const std::string& c : candidates) {
        const TreeNode* n = Walk(root, c);
        if (n == nullptr || !S_ISREG(n->mode)) continue;
        if (add(n) && n->elf != nullptr) queue.emplace_back(n->elf.get(), c);
        break;  // the loader takes the first one it finds
      }
    }
  }
  // Then the files they open by name, small files and small directories
  // (libraries still queued were cut off by kMaxLoads: no room for more).
  for (const ElfLoads* elf : mapped) {
    for (const std::string& p : elf->named) {
      if (out.size() >= kMaxLoads) return out;
      const TreeNode* n = Walk(root, p);
      if (n == nullptr) continue;
      if (S_ISREG(n->mode)) {
        if (n->size <= kMaxNamedFileBytes) add(n);
      } else if (S_ISDIR(n->mode)) {
        std::vector<const TreeNode*> files;
        if (SmallSubtree(*n, &files)) {
          for (const TreeNode* f : files) add(f);
        }
      }
    }
  }
  return out;
}

}  // namespace ferry::builder
