#include "fs/image_walk.h"

#include <sys/stat.h>

#include <cstdio>

namespace ferry::fs {
namespace {

// Calls visit(dir, dirent) for every entry, directories in depth-first order.
template <typename Visit>
void Walk(const ImageReader& image, Visit&& visit) {
  std::vector<uint32_t> stack{kRootIno};
  while (!stack.empty()) {
    uint32_t dir = stack.back();
    stack.pop_back();
    auto entries = image.Dirents(dir);
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
      // The validated tree has no cycles and every directory one name.
      if (visit(dir, *it) && S_ISDIR(image.inode(it->ino).mode)) stack.push_back(it->ino);
    }
  }
}

std::string Escaped(std::string_view name) {
  std::string out;
  for (unsigned char c : name) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

}  // namespace

std::vector<uint32_t> FirstParents(const ImageReader& image) {
  std::vector<uint32_t> parent(image.inode_count(), 0);
  parent[kRootIno - 1] = kRootIno;
  Walk(image, [&](uint32_t dir, const DirentRecord& d) {
    if (parent[d.ino - 1] != 0) return false;
    parent[d.ino - 1] = dir;
    return true;
  });
  return parent;
}

std::vector<std::string> InodePaths(const ImageReader& image) {
  std::vector<std::string> path(image.inode_count());
  path[kRootIno - 1] = "/";
  Walk(image, [&](uint32_t dir, const DirentRecord& d) {
    if (!path[d.ino - 1].empty()) return false;
    const std::string& base = path[dir - 1];
    path[d.ino - 1] = (base == "/" ? "" : base) + "/" + Escaped(image.Name(d));
    return true;
  });
  return path;
}

std::vector<ChunkOwner> ChunkOwners(const ImageReader& image) {
  std::vector<ChunkOwner> owner(image.chunks().size());
  for (uint64_t ino = image.inode_count(); ino >= 1; --ino) {
    if (!S_ISREG(image.inode(ino).mode)) continue;
    for (const ExtentRecord& e : image.Extents(ino)) owner[e.chunk] = {static_cast<uint32_t>(ino), e.file_offset};
  }
  return owner;
}

}  // namespace ferry::fs
