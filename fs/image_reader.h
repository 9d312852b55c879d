// ImageReader: an image metadata object, validated once, then read in place.
//
// Open() checks the whole object (magic, version, checksums, every index and
// range, sorted directories, a proper tree) in one linear pass, so that the
// accessors below need no checks and a corrupt or hostile object is refused
// up front with kCorruption instead of crashing a mount. After Open the
// reader is immutable and safe to use from any number of threads.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "chunkstore/object_store.h"
#include "chunkstore/pack.h"
#include "fs/image_format.h"

namespace ferry::fs {

class ImageReader {
 public:
  // Validates `blob`; the reader keeps it alive. `delta_base`: the image the
  // object was rebuilt from, when it was stored as a delta (LoadImage).
  static Result<std::unique_ptr<ImageReader>> Open(std::shared_ptr<const chunkstore::Blob> blob,
                                                   std::optional<Digest> delta_base = {});

  uint64_t inode_count() const { return inodes_.size(); }
  bool IsValidIno(uint64_t ino) const { return ino >= 1 && ino <= inodes_.size(); }
  // Precondition for all ino arguments: IsValidIno(ino).
  const InodeRecord& inode(uint64_t ino) const { return inodes_[ino - 1]; }

  // Directory entries of `dir`, sorted by name (bytewise).
  std::span<const DirentRecord> Dirents(uint64_t dir) const;
  std::string_view Name(const DirentRecord& d) const { return Str(d.name_off, d.name_len); }
  // The inode of `name` in directory `dir`, by binary search.
  std::optional<uint32_t> Lookup(uint64_t dir, std::string_view name) const;

  std::string_view SymlinkTarget(uint64_t ino) const;
  std::span<const XattrRecord> Xattrs(uint64_t ino) const;
  std::string_view XattrName(const XattrRecord& x) const { return Str(x.name_off, x.name_len); }
  std::string_view XattrValue(const XattrRecord& x) const { return Str(x.value_off, x.value_len); }

  // Extents of a regular file, sorted by file offset, not overlapping. Bytes
  // not covered by an extent are holes and read as zeros.
  std::span<const ExtentRecord> Extents(uint64_t ino) const;
  chunkstore::ChunkLocation Chunk(uint32_t index) const;
  std::span<const ChunkRecord> chunks() const { return chunks_; }
  // What running regular file `ino` loads, in load order (LOADS section;
  // empty for images built without it).
  std::span<const LoadRecord> Loads(uint64_t ino) const;
  std::span<const LoadRecord> loads() const { return loads_; }
  // The ranges of `ino` its loader touches first (EARLY), by offset.
  std::span<const EarlyRecord> Early(uint64_t ino) const;
  std::span<const EarlyRecord> early() const { return early_; }
  std::span<const PackRecord> packs() const { return packs_; }
  // Whole sections, for a writer laying a new object out over this one.
  std::span<const DirentRecord> dirent_records() const { return dirents_; }
  std::span<const ExtentRecord> extent_records() const { return extents_; }
  std::span<const XattrRecord> xattr_records() const { return xattrs_; }
  std::span<const uint8_t> strings() const { return strings_; }
  size_t object_size() const { return blob_->bytes().size(); }
  // The whole metadata object (rebuilt, for an image stored as a delta).
  std::span<const uint8_t> object() const { return blob_->bytes(); }
  // The full image this one was stored as a delta of (fs/image_delta.h), if so.
  const std::optional<Digest>& delta_base() const { return delta_base_; }

 private:
  explicit ImageReader(std::shared_ptr<const chunkstore::Blob> blob) : blob_(std::move(blob)) {}
  Status Validate();
  std::string_view Str(uint64_t off, uint64_t len) const {
    return {reinterpret_cast<const char*>(strings_.data()) + off, len};
  }

  std::shared_ptr<const chunkstore::Blob> blob_;
  std::optional<Digest> delta_base_;
  std::span<const InodeRecord> inodes_;
  std::span<const DirentRecord> dirents_;
  std::span<const ExtentRecord> extents_;
  std::span<const ChunkRecord> chunks_;
  std::span<const PackRecord> packs_;
  std::span<const XattrRecord> xattrs_;
  std::span<const LoadRecord> loads_;
  std::span<const EarlyRecord> early_;
  std::span<const uint8_t> strings_;
};

}  // namespace ferry::fs
