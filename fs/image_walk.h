// Walks over an image's tree that tools and the read path share: the path of
// every inode, and the directory each inode was first found in.
#pragma once

#include <string>
#include <vector>

#include "fs/image_reader.h"

namespace ferry::fs {

// For every inode (index ino - 1), the directory it was first found in by a
// sorted depth-first walk from the root (a hardlinked file: its first name);
// the root is its own parent, an unreachable inode gets 0.
std::vector<uint32_t> FirstParents(const ImageReader& image);

// For every inode (index ino - 1), its first path from the root ("/" for the
// root), with bytes other than printable ASCII written as \xHH and a
// backslash as \\, so that every path is one line.
std::vector<std::string> InodePaths(const ImageReader& image);

// For every chunk (by index), the first file that uses it: the lowest inode
// (inodes are numbered in walk order), and where in that file it lies;
// ino 0 for a chunk no file uses.
struct ChunkOwner {
  uint32_t ino = 0;
  uint64_t file_offset = 0;
};
std::vector<ChunkOwner> ChunkOwners(const ImageReader& image);

}  // namespace ferry::fs
