#include "fs/image_writer.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <sys/stat.h>
#include <cstddef>

namespace ferry::fs {
namespace {

// Collects strings, storing each distinct one once.
class StringTable {
 public:
  uint64_t Add(std::string_view s) {
    auto it = offsets_.find(s);
    if (it != offsets_.end()) return it->second;
    uint64_t off = data_.size();
    data_.insert(data_.end(), s.begin(), s.end());
    offsets_.emplace(std::string(s), off);
    return off;
  }
  // Starts the heap with `heap` (a base image's STRINGS): Add returns the
  // offsets of the strings Know is told about there.
  void Seed(std::span<const uint8_t> heap) { data_.assign(heap.begin(), heap.end()); }
  void Know(std::string_view s, uint64_t off) { offsets_.emplace(std::string(s), off); }
  // Room for about `n` distinct strings.
  void Reserve(size_t n) {
    offsets_.reserve(n);
    data_.reserve(n * 12);
  }
  const std::vector<uint8_t>& data() const { return data_; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return XXH3_64bits(s.data(), s.size()); }
  };
  std::vector<uint8_t> data_;
  std::unordered_map<std::string, uint64_t, Hash, std::equal_to<>> offsets_;
};

template <typename T>
void AppendRecords(std::vector<uint8_t>* out, const std::vector<T>& records) {
  const auto* p = reinterpret_cast<const uint8_t*>(records.data());
  out->insert(out->end(), p, p + records.size() * sizeof(T));
}

}  // namespace

void ImageWriter::LayOutOver(const ImageReader& base) {
  base_ = &base;
  chunks_.assign(base.chunks().begin(), base.chunks().end());
  chunk_index_.reserve(chunks_.size());
  for (uint32_t i = 0; i < chunks_.size(); ++i) {
    Digest d;
    std::memcpy(d.bytes.data(), chunks_[i].digest, Digest::kSize);
    chunk_index_.emplace(d, i);  // the first record of a digest is the one used
  }
  packs_.assign(base.packs().begin(), base.packs().end());
  for (uint32_t i = 0; i < packs_.size(); ++i) {
    Digest d;
    std::memcpy(d.bytes.data(), packs_[i].digest, Digest::kSize);
    pack_index_.emplace(d, i);
  }
}

void ImageWriter::SetInodeCount(size_t n) {
  InodeSpec free_inode;
  free_inode.attr.mode = S_IFREG;
  inodes_.resize(n, free_inode);
}

void ImageWriter::Reserve(size_t inodes, size_t chunks) {
  inodes_.reserve(inodes);
  chunks_.reserve(chunks);
  chunk_index_.reserve(chunks);
}

uint32_t ImageWriter::AddInode(InodeSpec spec) {
  inodes_.push_back(std::move(spec));
  return static_cast<uint32_t>(inodes_.size());
}

uint32_t ImageWriter::AddChunk(const chunkstore::ChunkLocation& loc) {
  auto it = chunk_index_.find(loc.digest);
  if (it != chunk_index_.end()) return it->second;
  uint32_t pack;
  auto pit = pack_index_.find(loc.pack);
  if (pit != pack_index_.end()) {
    pack = pit->second;
  } else {
    pack = static_cast<uint32_t>(packs_.size());
    PackRecord pr;
    std::memcpy(pr.digest, loc.pack.bytes.data(), 32);
    packs_.push_back(pr);
    pack_index_.emplace(loc.pack, pack);
  }
  ChunkRecord rec{};
  std::memcpy(rec.digest, loc.digest.bytes.data(), 32);
  rec.pack_offset = loc.offset;
  rec.clen = loc.clen;
  rec.ulen = loc.ulen;
  rec.pack = pack;
  uint32_t index = static_cast<uint32_t>(chunks_.size());
  chunks_.push_back(rec);
  chunk_index_.emplace(loc.digest, index);
  return index;
}

void ImageWriter::AddLoads(uint32_t ino, const std::vector<uint32_t>& deps) {
  for (uint32_t d : deps) loads_.push_back({ino, d});
}

void ImageWriter::AddEarly(uint32_t ino, uint64_t offset, uint64_t length) {
  if (length > 0) early_.push_back({ino, 0, offset, length});
}

std::vector<uint8_t> ImageWriter::Serialize() const {
  StringTable strings;
  std::vector<InodeRecord> inodes;
  std::vector<DirentRecord> dirents;
  std::vector<ExtentRecord> extents;
  std::vector<XattrRecord> xattrs;
  size_t n_dirents = 0, n_extents = 0, n_xattrs = 0;
  for (const InodeSpec& spec : inodes_) {
    n_dirents += spec.entries.size();
    n_extents += spec.extents.size();
    n_xattrs += spec.xattrs.size();
  }
  inodes.reserve(inodes_.size());
  // Over a base (LayOutOver): its records first, as they are. A record of
  // the base is rewritten or reused by at most one inode (`taken`), so a
  // base whose inodes share records (which ferry never writes) cannot make
  // one inode's change show in another.
  std::vector<uint8_t> dirent_taken, extent_taken, xattr_taken;
  if (base_ != nullptr) {
    dirents.assign(base_->dirent_records().begin(), base_->dirent_records().end());
    extents.assign(base_->extent_records().begin(), base_->extent_records().end());
    xattrs.assign(base_->xattr_records().begin(), base_->xattr_records().end());
    dirent_taken.assign(dirents.size(), 0);
    extent_taken.assign(extents.size(), 0);
    xattr_taken.assign(xattrs.size(), 0);
    strings.Seed(base_->strings());
    strings.Reserve(base_->dirent_records().size() + n_dirents + 2 * n_xattrs);
    for (const DirentRecord& d : base_->dirent_records()) strings.Know(base_->Name(d), d.name_off);
    for (const XattrRecord& x : base_->xattr_records()) {
      strings.Know(base_->XattrName(x), x.name_off);
      strings.Know(base_->XattrValue(x), x.value_off);
    }
    for (uint64_t ino = 1; ino <= base_->inode_count(); ++ino) {
      if (S_ISLNK(base_->inode(ino).mode)) strings.Know(base_->SymlinkTarget(ino), base_->inode(ino).data_first);
    }
  } else {
    strings.Reserve(n_dirents + 2 * n_xattrs + inodes_.size());
  }
  dirents.reserve(dirents.size() + n_dirents);
  extents.reserve(extents.size() + n_extents);
  xattrs.reserve(xattrs.size() + n_xattrs);
  // Where `want` (records for one inode) goes in `table`: over a base, the
  // place the base inode of the same number had, if it is as long and no
  // other inode has taken it (rewritten there if it differs); else the end.
  auto place = [&](auto& table, std::vector<uint8_t>& taken, const auto& want, bool same_kind,
                   uint64_t base_first, uint64_t base_count, auto equal) -> uint64_t {
    if (base_ != nullptr && same_kind && base_count == want.size() && !want.empty() &&
        base_first + base_count <= taken.size()) {
      bool free = true;
      for (uint64_t k = 0; k < base_count && free; ++k) free = !taken[base_first + k];
      if (free) {
        for (uint64_t k = 0; k < base_count; ++k) {
          taken[base_first + k] = 1;
          if (!equal(table[base_first + k], want[k])) table[base_first + k] = want[k];
        }
        return base_first;
      }
    }
    if (want.empty() && base_ != nullptr && same_kind && base_count == 0) return base_first;
    uint64_t first = table.size();
    table.insert(table.end(), want.begin(), want.end());
    return first;
  };
  auto same_bytes = [](const auto& a, const auto& b) { return std::memcmp(&a, &b, sizeof(a)) == 0; };
  for (size_t i = 0; i < inodes_.size(); ++i) {
    const InodeSpec& spec = inodes_[i];
    const uint64_t ino = i + 1;
    const InodeRecord* old = base_ != nullptr && base_->IsValidIno(ino) ? &base_->inode(ino) : nullptr;
    InodeRecord rec = spec.attr;
    rec.xattr_count = static_cast<uint32_t>(spec.xattrs.size());
    auto sorted_x = spec.xattrs;
    std::sort(sorted_x.begin(), sorted_x.end());
    std::vector<XattrRecord> xr;
    for (const auto& [name, value] : sorted_x) {
      XattrRecord x{};
      x.name_off = strings.Add(name);
      x.name_len = static_cast<uint32_t>(name.size());
      x.value_off = strings.Add(value);
      x.value_len = static_cast<uint32_t>(value.size());
      xr.push_back(x);
    }
    rec.xattr_first = place(xattrs, xattr_taken, xr, old != nullptr, old ? old->xattr_first : 0,
                            old ? old->xattr_count : 0, same_bytes);
    const bool same_type = old != nullptr && (old->mode & S_IFMT) == (rec.mode & S_IFMT);
    switch (rec.mode & S_IFMT) {
      case S_IFDIR: {
        std::vector<const std::pair<std::string, uint32_t>*> sorted;
        for (const auto& e : spec.entries) sorted.push_back(&e);
        std::sort(sorted.begin(), sorted.end(),
                  [](auto* a, auto* b) { return a->first < b->first; });
        std::vector<DirentRecord> dr;
        dr.reserve(sorted.size());
        for (const auto* e : sorted) {
          DirentRecord d{};
          d.name_off = strings.Add(e->first);
          d.name_len = static_cast<uint16_t>(e->first.size());
          d.ino = e->second;
          dr.push_back(d);
        }
        rec.data_first = place(dirents, dirent_taken, dr, same_type, same_type ? old->data_first : 0,
                               same_type ? old->data_count : 0, same_bytes);
        rec.data_count = dr.size();
        break;
      }
      case S_IFREG: {
        std::vector<ExtentRecord> er;
        er.reserve(spec.extents.size());
        for (const auto& [off, chunk] : spec.extents) er.push_back({off, chunk, 0});
        rec.data_first = place(extents, extent_taken, er, same_type, same_type ? old->data_first : 0,
                               same_type ? old->data_count : 0, same_bytes);
        rec.data_count = er.size();
        break;
      }
      case S_IFLNK:
        rec.data_first = strings.Add(spec.symlink);
        rec.data_count = spec.symlink.size();
        rec.size = spec.symlink.size();
        break;
      default:
        rec.data_first = rec.data_count = 0;
    }
    inodes.push_back(rec);
  }

  struct Pending { uint32_t id; uint32_t record_size; std::vector<uint8_t> bytes; };
  std::vector<Pending> sections(kSectionCount);
  sections[0] = {kSectionInodes, sizeof(InodeRecord), {}};
  AppendRecords(&sections[0].bytes, inodes);
  sections[1] = {kSectionDirents, sizeof(DirentRecord), {}};
  AppendRecords(&sections[1].bytes, dirents);
  sections[2] = {kSectionExtents, sizeof(ExtentRecord), {}};
  AppendRecords(&sections[2].bytes, extents);
  sections[3] = {kSectionChunks, sizeof(ChunkRecord), {}};
  AppendRecords(&sections[3].bytes, chunks_);
  sections[4] = {kSectionPacks, sizeof(PackRecord), {}};
  AppendRecords(&sections[4].bytes, packs_);
  sections[5] = {kSectionXattrs, sizeof(XattrRecord), {}};
  AppendRecords(&sections[5].bytes, xattrs);
  sections[6] = {kSectionStrings, 1, strings.data()};
  if (!loads_.empty()) {  // only then: images without programs keep 7 sections
    auto loads = loads_;
    std::stable_sort(loads.begin(), loads.end(),
                     [](const LoadRecord& a, const LoadRecord& b) { return a.ino < b.ino; });
    sections.push_back({kSectionLoads, sizeof(LoadRecord), {}});
    AppendRecords(&sections.back().bytes, loads);
  }
  if (!early_.empty()) {
    auto early = early_;
    std::sort(early.begin(), early.end(), [](const EarlyRecord& a, const EarlyRecord& b) {
      return a.ino != b.ino ? a.ino < b.ino : a.offset < b.offset;
    });
    sections.push_back({kSectionEarly, sizeof(EarlyRecord), {}});
    AppendRecords(&sections.back().bytes, early);
  }

  size_t total = kImageHeaderSize + sections.size() * kSectionEntrySize;
  for (const Pending& s : sections) total += ((s.bytes.size() + 7) & ~size_t{7});
  std::vector<uint8_t> out;
  out.reserve(total);
  out.resize(kImageHeaderSize + sections.size() * kSectionEntrySize, 0);
  std::vector<SectionEntry> table;
  for (const Pending& s : sections) {
    out.resize((out.size() + 7) & ~size_t{7}, 0);
    table.push_back({s.id, s.record_size, out.size(), s.bytes.size(),
                     XXH3_64bits(s.bytes.data(), s.bytes.size())});
    out.insert(out.end(), s.bytes.begin(), s.bytes.end());
  }
  out.resize((out.size() + 7) & ~size_t{7}, 0);
  ImageHeader h{};
  std::memcpy(h.magic, kImageMagic, 8);
  h.version = kImageVersion;
  h.section_count = static_cast<uint32_t>(sections.size());
  h.inode_count = inodes.size();
  h.object_size = out.size();
  std::memcpy(out.data(), &h, sizeof(h));
  std::memcpy(out.data() + kImageHeaderSize, table.data(), table.size() * kSectionEntrySize);
  h.header_xxh3 = XXH3_64bits(out.data(), kImageHeaderSize + table.size() * kSectionEntrySize);
  // The checksum covers bytes [0,56) and the table: it is computed with its
  // own field still zero, then stored.
  std::memcpy(out.data() + offsetof(ImageHeader, header_xxh3), &h.header_xxh3, 8);
  return out;
}

}  // namespace ferry::fs
