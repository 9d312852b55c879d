// ImageWriter: serializes a file tree into an image metadata object.
//
// The caller adds inodes (ino 1 is the root directory and must be added
// first), directory entries, chunks and extents; Serialize() lays out the
// sections of docs/format.md, sorting each directory's entries and each
// inode's xattrs by name. Not thread-safe.
#pragma once

#include <string>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chunkstore/pack.h"
#include "fs/image_format.h"

namespace ferry::fs {

struct InodeSpec {
  // mode, uid, gid, nlink, size, rdev and times; the index fields are the
  // writer's to fill.
  InodeRecord attr{};
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<std::pair<std::string, uint32_t>> entries;  // directories
  std::vector<std::pair<uint64_t, uint32_t>> extents;     // (file offset, chunk index)
  std::string symlink;                                     // symlinks
};

class ImageWriter {
 public:
  // Room for `inodes` inodes and `chunks` chunks (an estimate: more may be added).
  void Reserve(size_t inodes, size_t chunks);
  // Returns the new inode's number (1, 2, ...).
  uint32_t AddInode(InodeSpec spec);
  InodeSpec& inode(uint32_t ino) { return inodes_[ino - 1]; }
  size_t inode_count() const { return inodes_.size(); }
  // Returns the chunk's index, adding it (and its pack) once per digest.
  uint32_t AddChunk(const chunkstore::ChunkLocation& loc);

  // Records that running regular file `ino` loads `deps` (in that order).
  void AddLoads(uint32_t ino, const std::vector<uint32_t>& deps);
  // Records that the loader touches bytes [offset, offset + length) of
  // regular file `ino` first (ranges of one file must not overlap).
  void AddEarly(uint32_t ino, uint64_t offset, uint64_t length);

  // The CHUNKS records so far, in index order.
  std::span<const ChunkRecord> chunks() const { return chunks_; }

  // The complete object; its SHA-256 is the image id.
  std::vector<uint8_t> Serialize() const;

 private:
  std::vector<InodeSpec> inodes_;
  std::vector<LoadRecord> loads_;
  std::vector<EarlyRecord> early_;
  std::vector<ChunkRecord> chunks_;
  std::unordered_map<Digest, uint32_t, DigestHash> chunk_index_;
  std::vector<PackRecord> packs_;
  std::unordered_map<Digest, uint32_t, DigestHash> pack_index_;
};

}  // namespace ferry::fs
