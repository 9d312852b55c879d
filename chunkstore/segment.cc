#include "chunkstore/segment.h"

#include <xxhash.h>

#include <charconv>
#include <cstdio>
#include <cstring>

#include "chunkstore/endian.h"

namespace ferry::chunkstore {

// Header layout; the checksum covers everything before it.
namespace {
constexpr size_t kDigestAt = 8;
constexpr size_t kLengthAt = 40;
constexpr size_t kReservedAt = 44;
constexpr size_t kDataXxh3At = 48;
constexpr size_t kHeaderXxh3At = 56;
}  // namespace

uint64_t Xxh3(std::span<const uint8_t> data) {
  return XXH3_64bits(data.data(), data.size());
}

void EncodeRecordHeader(const SegmentRecordHeader& h,
                        uint8_t out[kSegmentRecordHeaderSize]) {
  std::memcpy(out, kSegmentRecordMagic, sizeof(kSegmentRecordMagic));
  std::memcpy(out + kDigestAt, h.digest.bytes.data(), Digest::kSize);
  PutLe32(out + kLengthAt, h.length);
  PutLe32(out + kReservedAt, 0);
  PutLe64(out + kDataXxh3At, h.data_xxh3);
  PutLe64(out + kHeaderXxh3At, Xxh3({out, kHeaderXxh3At}));
}

Result<SegmentRecordHeader> DecodeRecordHeader(
    std::span<const uint8_t, kSegmentRecordHeaderSize> in) {
  const uint8_t* p = in.data();
  if (std::memcmp(p, kSegmentRecordMagic, sizeof(kSegmentRecordMagic)) != 0) {
    return CorruptionError("segment record: bad magic");
  }
  if (GetLe64(p + kHeaderXxh3At) != Xxh3({p, kHeaderXxh3At})) {
    return CorruptionError("segment record: header checksum mismatch");
  }
  if (GetLe32(p + kReservedAt) != 0) {
    return CorruptionError("segment record: reserved field is not zero");
  }
  SegmentRecordHeader h;
  std::memcpy(h.digest.bytes.data(), p + kDigestAt, Digest::kSize);
  h.length = GetLe32(p + kLengthAt);
  h.data_xxh3 = GetLe64(p + kDataXxh3At);
  return h;
}

std::string EncodeIndexValue(const NodeIndexEntry& e) {
  uint8_t v[kNodeIndexValueSize];
  PutLe32(v, e.segment);
  PutLe32(v + 4, e.length);
  PutLe64(v + 8, e.offset);
  PutLe64(v + 16, e.data_xxh3);
  return std::string(reinterpret_cast<const char*>(v), sizeof(v));
}

Result<NodeIndexEntry> DecodeIndexValue(std::string_view value) {
  if (value.size() != kNodeIndexValueSize) {
    return CorruptionError("node cache index: value of " +
                           std::to_string(value.size()) + " bytes");
  }
  const auto* v = reinterpret_cast<const uint8_t*>(value.data());
  NodeIndexEntry e;
  e.segment = GetLe32(v);
  e.length = GetLe32(v + 4);
  e.offset = GetLe64(v + 8);
  e.data_xxh3 = GetLe64(v + 16);
  return e;
}

std::string SegmentFileName(uint32_t id) {
  char name[32];
  std::snprintf(name, sizeof(name), "%08u.seg", id);
  return name;
}

std::optional<uint32_t> ParseSegmentFileName(std::string_view name) {
  constexpr std::string_view kSuffix = ".seg";
  if (name.size() < 8 + kSuffix.size() || !name.ends_with(kSuffix)) return std::nullopt;
  std::string_view digits = name.substr(0, name.size() - kSuffix.size());
  uint32_t id = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (ec != std::errc() || end != digits.data() + digits.size() || id == 0) {
    return std::nullopt;
  }
  return id;
}

}  // namespace ferry::chunkstore
