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
#include "fs/image_reader.h"

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
  // Lays the object out over `base`'s, so that it differs from it only
  // where the tree does (a snapshot, stored as a delta: fs/image_delta.h).
  // Call before anything is added; `base` must outlive Serialize. Then:
  // base's CHUNKS and PACKS records keep their indices (new ones follow);
  // the DIRENTS, EXTENTS, XATTRS and STRINGS of base come first, unchanged
  // except where an inode of the same number with as many entries, extents
  // or xattrs is rewritten in place, and what no longer fits follows; the
  // caller numbers inodes as in base (SetInodeCount, inode(ino)), inodes
  // it leaves unused being free (docs/format.md 6.1).
  void LayOutOver(const ImageReader& base);
  // Makes inodes 1..n exist, each free (a regular file with no name, no
  // links and no data) until the caller fills it in.
  void SetInodeCount(size_t n);
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
  const ImageReader* base_ = nullptr;  // LayOutOver's
  std::vector<InodeSpec> inodes_;
  std::vector<LoadRecord> loads_;
  std::vector<EarlyRecord> early_;
  std::vector<ChunkRecord> chunks_;
  std::unordered_map<Digest, uint32_t, DigestHash> chunk_index_;
  std::vector<PackRecord> packs_;
  std::unordered_map<Digest, uint32_t, DigestHash> pack_index_;
};

}  // namespace ferry::fs
