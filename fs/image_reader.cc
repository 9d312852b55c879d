#include "fs/image_reader.h"

#include <sys/stat.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace ferry::fs {
namespace {

template <typename T>
std::span<const T> AsRecords(std::span<const uint8_t> bytes) {
  return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
}

// An optional section (LOADS, EARLY): at most once, records of its size.
template <typename T>
bool TakeOptional(const SectionEntry& e, std::span<const uint8_t> obj, bool* seen, std::span<const T>* out) {
  if (*seen || e.record_size != sizeof(T) || e.size % sizeof(T) != 0) return false;
  *seen = true;
  *out = AsRecords<T>(obj.subspan(e.offset, e.size));
  return true;
}

// The records of `ino` in a section sorted by `ino`.
template <typename T>
std::span<const T> RecordsOf(std::span<const T> records, uint64_t ino) {
  auto lo = std::lower_bound(records.begin(), records.end(), ino,
                             [](const T& r, uint64_t i) { return r.ino < i; });
  auto hi = std::upper_bound(lo, records.end(), ino, [](uint64_t i, const T& r) { return i < r.ino; });
  return {lo, hi};
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 255 || name == "." || name == "..") return false;
  return name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

}  // namespace

Result<std::unique_ptr<ImageReader>> ImageReader::Open(
    std::shared_ptr<const chunkstore::Blob> blob, std::optional<Digest> delta_base) {
  std::unique_ptr<ImageReader> reader(new ImageReader(std::move(blob)));
  RETURN_IF_ERROR(reader->Validate());
  reader->delta_base_ = delta_base;
  return reader;
}

Status ImageReader::Validate() {
  std::span<const uint8_t> obj = blob_->bytes();
  if (reinterpret_cast<uintptr_t>(obj.data()) % 8 != 0) {
    return InternalError("image object is not 8-byte aligned in memory");
  }
  if (obj.size() < kImageHeaderSize) {
    return CorruptionError("image object too short (" + std::to_string(obj.size()) + " bytes)");
  }
  ImageHeader h;
  std::memcpy(&h, obj.data(), sizeof(h));
  if (std::memcmp(h.magic, kImageMagic, 8) != 0) {
    return CorruptionError("not a ferry image (bad magic)");
  }
  if (h.version != kImageVersion) {
    return CorruptionError("unsupported image format version " + std::to_string(h.version));
  }
  if (h.object_size != obj.size()) {
    return CorruptionError("image object is " + std::to_string(obj.size()) +
                           " bytes, header says " + std::to_string(h.object_size) +
                           " (truncated?)");
  }
  if (h.section_count < kSectionCount || h.section_count > 64 ||
      kImageHeaderSize + uint64_t{h.section_count} * kSectionEntrySize > obj.size()) {
    return CorruptionError("bad section table");
  }
  size_t table_bytes = h.section_count * kSectionEntrySize;
  std::vector<uint8_t> hdr(obj.begin(), obj.begin() + kImageHeaderSize + table_bytes);
  std::memset(hdr.data() + offsetof(ImageHeader, header_xxh3), 0, 8);
  if (XXH3_64bits(hdr.data(), hdr.size()) != h.header_xxh3) {
    return CorruptionError("image header checksum mismatch");
  }
  std::vector<std::pair<uint64_t, uint64_t>> covered;  // [offset, end) of sections
  std::span<const uint8_t> sec[kSectionCount + 1];
  bool seen[kSectionCount + 1] = {};
  bool seen_loads = false, seen_early = false;
  static constexpr uint32_t kRecordSize[kSectionCount + 1] = {
      0, sizeof(InodeRecord), sizeof(DirentRecord), sizeof(ExtentRecord), sizeof(ChunkRecord),
      sizeof(PackRecord), sizeof(XattrRecord), 1};
  for (uint32_t i = 0; i < h.section_count; ++i) {
    SectionEntry e;
    std::memcpy(&e, obj.data() + kImageHeaderSize + i * kSectionEntrySize, sizeof(e));
    if (e.offset % 8 != 0 || e.offset > obj.size() || e.size > obj.size() - e.offset) {
      return CorruptionError("section " + std::to_string(e.id) + " out of bounds");
    }
    if (XXH3_64bits(obj.data() + e.offset, e.size) != e.xxh3) {
      return CorruptionError("section " + std::to_string(e.id) + " checksum mismatch");
    }
    covered.emplace_back(e.offset, e.offset + e.size);
    if (e.id == kSectionLoads || e.id == kSectionEarly) {
      bool ok = e.id == kSectionLoads ? TakeOptional(e, obj, &seen_loads, &loads_)
                                      : TakeOptional(e, obj, &seen_early, &early_);
      if (!ok) return CorruptionError("section " + std::to_string(e.id) + " malformed");
      continue;
    }
    if (e.id == 0 || e.id > kSectionCount) continue;  // unknown: skip (newer minor data)
    if (seen[e.id] || e.record_size != kRecordSize[e.id] || e.size % e.record_size != 0) {
      return CorruptionError("section " + std::to_string(e.id) + " malformed");
    }
    seen[e.id] = true;
    sec[e.id] = obj.subspan(e.offset, e.size);
  }
  for (uint32_t id = 1; id <= kSectionCount; ++id) {
    if (!seen[id]) return CorruptionError("section " + std::to_string(id) + " missing");
  }
  // Sections may not overlap the header or each other, and every byte no
  // checksum covers (alignment padding) must be zero: each byte of a valid
  // object is then checked by something.
  std::sort(covered.begin(), covered.end());
  uint64_t pos = kImageHeaderSize + table_bytes;
  for (const auto& [begin, end] : covered) {
    if (begin < pos) return CorruptionError("sections overlap");
    for (uint64_t i = pos; i < begin; ++i) {
      if (obj[i] != 0) return CorruptionError("non-zero padding at offset " + std::to_string(i));
    }
    pos = end;
  }
  for (uint64_t i = pos; i < obj.size(); ++i) {
    if (obj[i] != 0) return CorruptionError("non-zero padding at offset " + std::to_string(i));
  }
  inodes_ = AsRecords<InodeRecord>(sec[kSectionInodes]);
  dirents_ = AsRecords<DirentRecord>(sec[kSectionDirents]);
  extents_ = AsRecords<ExtentRecord>(sec[kSectionExtents]);
  chunks_ = AsRecords<ChunkRecord>(sec[kSectionChunks]);
  packs_ = AsRecords<PackRecord>(sec[kSectionPacks]);
  xattrs_ = AsRecords<XattrRecord>(sec[kSectionXattrs]);
  strings_ = sec[kSectionStrings];
  if (inodes_.empty() || inodes_.size() != h.inode_count || inodes_.size() > UINT32_MAX) {
    return CorruptionError("inode table size disagrees with header");
  }
  if (!S_ISDIR(inodes_[0].mode) || inodes_[0].parent != kRootIno) {
    return CorruptionError("root inode is not a directory");
  }
  auto str_ok = [&](uint64_t off, uint64_t len) {
    return off <= strings_.size() && len <= strings_.size() - off;
  };
  for (const ChunkRecord& c : chunks_) {
    if (c.pack >= packs_.size() || c.ulen == 0 || c.clen == 0 || c.ulen > kMaxChunkSize ||
        c.clen > kMaxFrameSize) {
      return CorruptionError("chunk record out of range");
    }
  }
  // Each directory other than the root must be named by exactly one entry,
  // in its parent: that makes the directory graph a tree (no cycles, so
  // walks terminate).
  std::vector<uint8_t> dir_refs(inodes_.size(), 0);
  for (uint64_t i = 0; i < inodes_.size(); ++i) {
    const InodeRecord& n = inodes_[i];
    std::string what = "inode " + std::to_string(i + 1);
    if (n.xattr_first > xattrs_.size() || n.xattr_count > xattrs_.size() - n.xattr_first) {
      return CorruptionError(what + ": xattrs out of range");
    }
    std::string_view prev_xattr;
    for (uint64_t x = n.xattr_first; x < n.xattr_first + n.xattr_count; ++x) {
      const XattrRecord& r = xattrs_[x];
      if (!str_ok(r.name_off, r.name_len) || !str_ok(r.value_off, r.value_len) ||
          r.name_len == 0 || r.name_len > 255 || r.value_len > 65536) {
        return CorruptionError(what + ": bad xattr");
      }
      std::string_view name = Str(r.name_off, r.name_len);
      // Sorted and unique (lookups binary-search), no NUL (listxattr).
      if (name.find('\0') != std::string_view::npos ||
          (x > n.xattr_first && !(prev_xattr < name))) {
        return CorruptionError(what + ": xattr names not sorted, unique and NUL-free");
      }
      prev_xattr = name;
    }
    switch (n.mode & S_IFMT) {
      case S_IFDIR: {
        if (n.data_first > dirents_.size() || n.data_count > dirents_.size() - n.data_first) {
          return CorruptionError(what + ": directory entries out of range");
        }
        if (n.parent < 1 || n.parent > inodes_.size() || !S_ISDIR(inodes_[n.parent - 1].mode)) {
          return CorruptionError(what + ": bad parent");
        }
        std::string_view prev;
        for (uint64_t d = n.data_first; d < n.data_first + n.data_count; ++d) {
          const DirentRecord& e = dirents_[d];
          if (!str_ok(e.name_off, e.name_len)) return CorruptionError(what + ": bad entry name");
          std::string_view name = Str(e.name_off, e.name_len);
          if (!ValidName(name)) return CorruptionError(what + ": invalid entry name");
          if (d > n.data_first && !(prev < name)) {
            return CorruptionError(what + ": entries not sorted or duplicated");
          }
          prev = name;
          if (e.ino < 2 || e.ino > inodes_.size()) {
            return CorruptionError(what + ": entry points at invalid inode");
          }
          const InodeRecord& child = inodes_[e.ino - 1];
          if (S_ISDIR(child.mode)) {
            if (child.parent != i + 1 || ++dir_refs[e.ino - 1] > 1) {
              return CorruptionError(what + ": directory linked twice or to the wrong parent");
            }
          }
        }
        break;
      }
      case S_IFREG: {
        if (n.data_first > extents_.size() || n.data_count > extents_.size() - n.data_first) {
          return CorruptionError(what + ": extents out of range");
        }
        uint64_t end = 0;
        for (uint64_t x = n.data_first; x < n.data_first + n.data_count; ++x) {
          const ExtentRecord& e = extents_[x];
          if (e.chunk >= chunks_.size() || e.file_offset < end) {
            return CorruptionError(what + ": bad extent");
          }
          uint64_t len = chunks_[e.chunk].ulen;
          if (e.file_offset > n.size || len > n.size - e.file_offset) {
            return CorruptionError(what + ": extent past end of file");
          }
          end = e.file_offset + len;
        }
        break;
      }
      case S_IFLNK:
        if (!str_ok(n.data_first, n.data_count) || n.data_count == 0 || n.data_count > 4095 ||
            n.size != n.data_count ||
            Str(n.data_first, n.data_count).find('\0') != std::string_view::npos) {
          return CorruptionError(what + ": bad symlink target");
        }
        break;
      case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
        if (n.data_count != 0) return CorruptionError(what + ": unexpected data");
        break;
      default:
        return CorruptionError(what + ": unknown file type");
    }
    if (n.atime_nsec >= 1000000000 || n.mtime_nsec >= 1000000000 || n.ctime_nsec >= 1000000000) {
      return CorruptionError(what + ": bad timestamp");
    }
  }
  // Every directory must be reachable from the root: with each named once
  // by its parent (above), that rules out cycles of directories that name
  // each other away from the root.
  std::vector<uint8_t> reached(inodes_.size(), 0);
  std::vector<uint32_t> stack{kRootIno};
  reached[0] = 1;
  while (!stack.empty()) {
    const InodeRecord& d = inodes_[stack.back() - 1];
    stack.pop_back();
    for (uint64_t e = d.data_first; e < d.data_first + d.data_count; ++e) {
      uint32_t child = dirents_[e].ino;
      if (S_ISDIR(inodes_[child - 1].mode) && !reached[child - 1]) {
        reached[child - 1] = 1;
        stack.push_back(child);
      }
    }
  }
  for (uint64_t i = 1; i < inodes_.size(); ++i) {
    if (S_ISDIR(inodes_[i].mode) && (dir_refs[i] != 1 || !reached[i])) {
      return CorruptionError("directory inode " + std::to_string(i + 1) + " is not in the tree");
    }
  }
  // LOADS: both ends regular files, sorted by the loading file.
  for (size_t i = 0; i < loads_.size(); ++i) {
    const LoadRecord& r = loads_[i];
    if (r.ino < 1 || r.ino > inodes_.size() || r.dep < 1 || r.dep > inodes_.size() ||
        !S_ISREG(inodes_[r.ino - 1].mode) || !S_ISREG(inodes_[r.dep - 1].mode) ||
        (i > 0 && loads_[i - 1].ino > r.ino)) {
      return CorruptionError("load record " + std::to_string(i) + " invalid");
    }
  }
  // EARLY: inside a regular file, sorted, not overlapping.
  for (size_t i = 0; i < early_.size(); ++i) {
    const EarlyRecord& r = early_[i];
    bool ok = r.ino >= 1 && r.ino <= inodes_.size() && S_ISREG(inodes_[r.ino - 1].mode) &&
              r.reserved == 0 && r.length > 0 && r.offset <= inodes_[r.ino - 1].size &&
              r.length <= inodes_[r.ino - 1].size - r.offset;
    if (ok && i > 0) {
      const EarlyRecord& p = early_[i - 1];
      ok = p.ino < r.ino || (p.ino == r.ino && p.offset + p.length <= r.offset);
    }
    if (!ok) return CorruptionError("early record " + std::to_string(i) + " invalid");
  }
  return Status::Ok();
}

std::span<const DirentRecord> ImageReader::Dirents(uint64_t dir) const {
  const InodeRecord& n = inode(dir);
  if (!S_ISDIR(n.mode)) return {};
  return dirents_.subspan(n.data_first, n.data_count);
}

std::optional<uint32_t> ImageReader::Lookup(uint64_t dir, std::string_view name) const {
  auto entries = Dirents(dir);
  size_t lo = 0, hi = entries.size();
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    std::string_view m = Name(entries[mid]);
    if (m == name) return entries[mid].ino;
    if (m < name) lo = mid + 1; else hi = mid;
  }
  return std::nullopt;
}

std::string_view ImageReader::SymlinkTarget(uint64_t ino) const {
  const InodeRecord& n = inode(ino);
  if (!S_ISLNK(n.mode)) return {};
  return Str(n.data_first, n.data_count);
}

std::span<const XattrRecord> ImageReader::Xattrs(uint64_t ino) const {
  const InodeRecord& n = inode(ino);
  return xattrs_.subspan(n.xattr_first, n.xattr_count);
}

std::span<const ExtentRecord> ImageReader::Extents(uint64_t ino) const {
  const InodeRecord& n = inode(ino);
  if (!S_ISREG(n.mode)) return {};
  return extents_.subspan(n.data_first, n.data_count);
}

std::span<const LoadRecord> ImageReader::Loads(uint64_t ino) const { return RecordsOf(loads_, ino); }

std::span<const EarlyRecord> ImageReader::Early(uint64_t ino) const { return RecordsOf(early_, ino); }

chunkstore::ChunkLocation ImageReader::Chunk(uint32_t index) const {
  const ChunkRecord& c = chunks_[index];
  chunkstore::ChunkLocation loc;
  std::memcpy(loc.digest.bytes.data(), c.digest, 32);
  std::memcpy(loc.pack.bytes.data(), packs_[c.pack].digest, 32);
  loc.offset = c.pack_offset;
  loc.clen = c.clen;
  loc.ulen = c.ulen;
  return loc;
}

}  // namespace ferry::fs
