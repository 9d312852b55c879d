// Delta metadata objects: an image stored as the differences of its
// metadata object from another image's (docs/format.md, section 12).
//
// A snapshot changes a few records of a large metadata object (the
// Debian+python3 image's is 1.9 MB); stored whole, each snapshot would
// write all of it again. A delta holds the new object's header and section
// table and, per section, the byte ranges that differ from the base image's
// section of the same id, plus the SHA-256 of the object it makes. Loading
// one (LoadImage) fetches the base, which must be a full image, rebuilds the
// object, checks that digest, and opens it like any other: everything a
// reader sees is an ordinary, fully validated metadata object.
//
// Deltas are small only when the new object keeps the base's layout (same
// inode numbers, records in place, new ones appended): ImageWriter does
// that when it is given the base (ImageWriter::LayOutOver).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "chunkstore/digest.h"
#include "chunkstore/status.h"

namespace ferry::fs {

inline constexpr char kDeltaMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'D', 'L', 'T'};

// Whether `bytes` start like a delta object (its magic).
bool IsDelta(std::span<const uint8_t> bytes);

// The base image a delta object names, or kCorruption if `bytes` is not a
// well-formed delta (magic, version, sizes, checksum).
Result<Digest> DeltaBase(std::span<const uint8_t> bytes);

// The delta that turns `base` (the metadata object of image `base_id`, a
// full image) into `target` (a metadata object whose header and section
// table are well formed, as ImageWriter writes them).
std::vector<uint8_t> MakeDelta(std::span<const uint8_t> base, const Digest& base_id,
                               std::span<const uint8_t> target);

// The metadata object `delta` makes from `base` (the metadata object of the
// image DeltaBase names, already verified against that id). kCorruption for
// a malformed delta, a patch out of its section, or a result whose SHA-256
// is not the one the delta records. The result still has to be opened
// (ImageReader::Open validates it).
Result<std::vector<uint8_t>> ApplyDelta(std::span<const uint8_t> delta,
                                        std::span<const uint8_t> base);

}  // namespace ferry::fs
