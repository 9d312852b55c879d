// The node cache's on-disk records: segment files and index entries.
//
// A segment file (DIR/segments/<id, 8+ decimal digits>.seg) is a run of
// records written back to back from offset 0, each
//   [64-byte header][length bytes of chunk data, uncompressed]
// The header names the chunk, its length and the XXH3-64 of its data, and
// checksums itself, so a record can be verified without the index.
// The RocksDB index (DIR/index) maps each 32-byte digest to a 24-byte value
// that locates the record. docs/format.md ("Node cache") has the bytes.
// Everything here is pure encoding: no I/O, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "chunkstore/digest.h"
#include "chunkstore/status.h"

namespace ferry::chunkstore {

inline constexpr char kSegmentRecordMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'N', 'C', '1'};
inline constexpr size_t kSegmentRecordHeaderSize = 64;
inline constexpr size_t kNodeIndexValueSize = 24;
// The index key that holds the format version (a u32); any key that is not
// exactly Digest::kSize bytes long is metadata, never a chunk.
inline constexpr std::string_view kNodeIndexFormatKey = "ferry.node-cache.format";
inline constexpr uint32_t kNodeCacheFormatVersion = 1;

struct SegmentRecordHeader {
  Digest digest;
  uint32_t length = 0;      // of the chunk data that follows the header
  uint64_t data_xxh3 = 0;   // XXH3-64 of the chunk data
};

// Where a chunk's record lives; the value of its index entry.
struct NodeIndexEntry {
  uint32_t segment = 0;     // segment file id
  uint32_t length = 0;      // chunk data length
  uint64_t offset = 0;      // of the record header within the segment
  uint64_t data_xxh3 = 0;   // equal to the record header's
  // Bytes the record occupies in its segment.
  uint64_t record_bytes() const { return kSegmentRecordHeaderSize + length; }
};

// XXH3-64 (seed 0) of `data`.
uint64_t Xxh3(std::span<const uint8_t> data);

void EncodeRecordHeader(const SegmentRecordHeader& h,
                        uint8_t out[kSegmentRecordHeaderSize]);
// kCorruption if the magic, the header checksum or the reserved field is
// wrong. Does not look at the data.
Result<SegmentRecordHeader> DecodeRecordHeader(
    std::span<const uint8_t, kSegmentRecordHeaderSize> in);

// The index key of a chunk: its 32 digest bytes (a view into `d`).
inline std::string_view IndexKey(const Digest& d) {
  return {reinterpret_cast<const char*>(d.bytes.data()), Digest::kSize};
}
std::string EncodeIndexValue(const NodeIndexEntry& e);
// kCorruption unless `value` is exactly kNodeIndexValueSize bytes.
Result<NodeIndexEntry> DecodeIndexValue(std::string_view value);

// "00000042.seg"
std::string SegmentFileName(uint32_t id);
// The id of a segment file name; nullopt for any other name.
std::optional<uint32_t> ParseSegmentFileName(std::string_view name);

}  // namespace ferry::chunkstore
