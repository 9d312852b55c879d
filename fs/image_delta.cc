#include "fs/image_delta.h"

#include <xxhash.h>

#include <cstring>
#include <string>

#include "chunkstore/endian.h"
#include "fs/image_format.h"

namespace ferry::fs {
namespace {

using ferry::GetLe32;
using ferry::GetLe64;
using ferry::PutLe32;
using ferry::PutLe64;

// Layout (docs/format.md 12.1).
constexpr size_t kHead = 96;          // magic .. reserved
constexpr uint32_t kDeltaVersion = 1;
constexpr uint64_t kMaxTarget = 0xffffffffu;  // as for a metadata object
// Differing stretches closer than this are sent as one patch: a patch's
// own header (16 bytes) and padding cost about as much as the equal bytes.
constexpr size_t kMergeGap = 24;

Status Bad(const std::string& what) { return CorruptionError("delta metadata object: " + what); }

void Append(std::vector<uint8_t>* out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out->insert(out->end(), b, b + n);
}
void Append64(std::vector<uint8_t>* out, uint64_t v) {
  uint8_t b[8];
  PutLe64(b, v);
  Append(out, b, 8);
}
void Append32(std::vector<uint8_t>* out, uint32_t v) {
  uint8_t b[4];
  PutLe32(b, v);
  Append(out, b, 4);
}
void Pad8(std::vector<uint8_t>* out) { out->resize((out->size() + 7) & ~size_t{7}, 0); }

struct Table {
  uint32_t count = 0;
  std::vector<SectionEntry> entries;
};

// The section table of a metadata object, bounds-checked against its size
// (what ApplyDelta needs to copy safely; ImageReader checks the rest).
Result<Table> ReadTable(std::span<const uint8_t> obj) {
  if (obj.size() < kImageHeaderSize) return Bad("object header too short");
  Table t;
  t.count = GetLe32(obj.data() + 12);
  if (t.count < kSectionCount || t.count > 64) return Bad("section count out of range");
  if (obj.size() < kImageHeaderSize + uint64_t{t.count} * kSectionEntrySize) {
    return Bad("section table too short");
  }
  t.entries.resize(t.count);
  std::memcpy(t.entries.data(), obj.data() + kImageHeaderSize, t.count * kSectionEntrySize);
  return t;
}

// The bytes of the first section with `id` in `obj` (empty if none or out
// of bounds).
std::span<const uint8_t> SectionBytes(std::span<const uint8_t> obj, const Table& t, uint32_t id) {
  for (const SectionEntry& e : t.entries) {
    if (e.id != id) continue;
    if (e.offset > obj.size() || e.size > obj.size() - e.offset) return {};
    return obj.subspan(e.offset, e.size);
  }
  return {};
}

}  // namespace

bool IsDelta(std::span<const uint8_t> bytes) {
  return bytes.size() >= 8 && std::memcmp(bytes.data(), kDeltaMagic, 8) == 0;
}

Result<Digest> DeltaBase(std::span<const uint8_t> d) {
  if (!IsDelta(d)) return Bad("wrong magic");
  if (d.size() < kHead + kImageHeaderSize + 8) return Bad("too short");
  if (GetLe32(d.data() + 8) != kDeltaVersion) {
    return Bad("version " + std::to_string(GetLe32(d.data() + 8)) + " is not 1");
  }
  if (XXH3_64bits(d.data(), d.size() - 8) != GetLe64(d.data() + d.size() - 8)) {
    return Bad("checksum mismatch");
  }
  Digest base;
  std::memcpy(base.bytes.data(), d.data() + 16, Digest::kSize);
  return base;
}

std::vector<uint8_t> MakeDelta(std::span<const uint8_t> base, const Digest& base_id,
                               std::span<const uint8_t> target) {
  auto bt = ReadTable(base);
  auto tt = ReadTable(target);
  // Both come from validated or freshly written objects.
  const Table empty;
  const Table& btab = bt.ok() ? *bt : empty;
  const Table& ttab = *tt;
  const size_t table_bytes = kImageHeaderSize + size_t{ttab.count} * kSectionEntrySize;

  std::vector<uint8_t> out;
  Append(&out, kDeltaMagic, 8);
  Append32(&out, kDeltaVersion);
  Append32(&out, ttab.count);
  Append(&out, base_id.bytes.data(), Digest::kSize);
  Digest td = Sha256(target);
  Append(&out, td.bytes.data(), Digest::kSize);
  Append64(&out, target.size());
  Append64(&out, 0);
  Append(&out, target.data(), table_bytes);
  Pad8(&out);
  for (const SectionEntry& e : ttab.entries) {
    std::span<const uint8_t> t = target.subspan(e.offset, e.size);
    std::span<const uint8_t> b = SectionBytes(base, btab, e.id);
    // Differing stretches [start, end), merged across short equal gaps.
    std::vector<std::pair<size_t, size_t>> runs;
    auto differs = [&](size_t i) { return i >= b.size() || t[i] != b[i]; };
    size_t i = 0;
    const size_t common = std::min(t.size(), b.size());
    while (i < t.size()) {
      // Skip equal 64-byte blocks quickly.
      while (i + 64 <= common && std::memcmp(&t[i], &b[i], 64) == 0) i += 64;
      if (i >= t.size()) break;
      if (!differs(i)) {
        ++i;
        continue;
      }
      const size_t start = i;
      while (i < t.size() && differs(i)) ++i;
      if (!runs.empty() && start - runs.back().second < kMergeGap) {
        runs.back().second = i;
      } else {
        runs.emplace_back(start, i);
      }
    }
    Append32(&out, static_cast<uint32_t>(runs.size()));
    Append32(&out, 0);
    for (auto [s, en] : runs) {
      Append64(&out, s);
      Append64(&out, en - s);
      Append(&out, t.data() + s, en - s);
      Pad8(&out);
    }
  }
  const uint64_t sum = XXH3_64bits(out.data(), out.size());
  Append64(&out, sum);
  return out;
}

Result<std::vector<uint8_t>> ApplyDelta(std::span<const uint8_t> d, std::span<const uint8_t> base) {
  RETURN_IF_ERROR(DeltaBase(d).status());
  const uint32_t count = GetLe32(d.data() + 12);
  const uint64_t target_size = GetLe64(d.data() + 80);
  if (count < kSectionCount || count > 64) return Bad("section count out of range");
  const size_t table_bytes = kImageHeaderSize + size_t{count} * kSectionEntrySize;
  const size_t end = d.size() - 8;  // before the checksum
  if (target_size > kMaxTarget || target_size < table_bytes) return Bad("object size out of range");
  if (kHead + table_bytes > end) return Bad("header and section table cut short");
  // Every byte of a section is the base's or a patch's, and sections are
  // 8-aligned: a bigger claim is a lie, refused before it is allocated.
  if (target_size > base.size() + d.size() + 8 * size_t{count}) {
    return Bad("object size larger than the base and the patches can make");
  }
  std::vector<uint8_t> out(target_size, 0);
  std::memcpy(out.data(), d.data() + kHead, table_bytes);
  if (GetLe32(out.data() + 12) != count) return Bad("section count differs from the object's");
  auto tt = ReadTable(out);
  if (!tt.ok()) return tt.status();
  auto bt = ReadTable(base);
  if (!bt.ok()) return Bad("the base is not a metadata object");
  size_t pos = (kHead + table_bytes + 7) & ~size_t{7};
  for (uint32_t s = 0; s < count; ++s) {
    const SectionEntry& e = tt->entries[s];
    const std::string what = "section " + std::to_string(s);
    if (e.offset < table_bytes || e.offset > target_size || e.size > target_size - e.offset) {
      return Bad(what + " outside the object");
    }
    std::span<const uint8_t> b = SectionBytes(base, *bt, e.id);
    const uint64_t keep = std::min<uint64_t>(b.size(), e.size);
    if (keep > 0) std::memcpy(out.data() + e.offset, b.data(), keep);  // b may be empty (no data)
    if (pos > end || end - pos < 8) return Bad(what + ": patch list cut short");
    const uint32_t patches = GetLe32(d.data() + pos);
    pos += 8;
    uint64_t next = 0;  // patches are in order and do not overlap
    for (uint32_t p = 0; p < patches; ++p) {
      if (end - pos < 16) return Bad(what + ": patch " + std::to_string(p) + " cut short");
      const uint64_t off = GetLe64(d.data() + pos), len = GetLe64(d.data() + pos + 8);
      pos += 16;
      if (off < next || off > e.size || len > e.size - off || len == 0 || len > end - pos) {
        return Bad(what + ": patch " + std::to_string(p) + " out of range or out of order");
      }
      std::memcpy(out.data() + e.offset + off, d.data() + pos, len);
      next = off + len;
      pos += (len + 7) & ~uint64_t{7};
      if (pos > end) return Bad(what + ": patch " + std::to_string(p) + " cut short");
    }
  }
  if (pos != end) return Bad("trailing bytes after the last patch");
  Digest want;
  std::memcpy(want.bytes.data(), d.data() + 48, Digest::kSize);
  if (Sha256(out) != want) return Bad("the object it makes does not match its recorded SHA-256");
  return out;
}

}  // namespace ferry::fs
