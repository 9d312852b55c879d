// Start-up profiles: the chunks a workload read during its start-up, in the
// order it first read them, kept in the store beside the image
// ("profiles/<image id>") and replayed as prefetch when the image is mounted
// on a host that has not seen it (docs/format.md, "Start-up profiles").
//
// A profile names chunks by their index in the image's CHUNKS table, so it
// belongs to exactly one image id. A version 2 or 3 profile also names a
// start-up pack: a pack that holds exactly those chunks, back to back in
// profile order and compressed harder than a build does, so that replay
// reads the whole start-up with a few long range reads instead of one read
// per place the chunks happen to lie in the image's packs. Version 3 also
// gives each chunk's digest and length, so that the start-up pack can be
// fetched and verified before the image metadata has arrived
// (PrefetchStartupPack). Loading verifies the profile's checksum and that
// every index is in range: a damaged profile is an error, never a wrong
// prefetch. A start-up pack that is missing or damaged costs time, never a
// wrong byte: each chunk is verified against its digest, and a read falls
// back to the image's packs.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "chunkstore/chunk_reader.h"
#include "chunkstore/digest.h"
#include "chunkstore/object_store.h"
#include "fs/image_format.h"
#include "fs/image_reader.h"

namespace ferry::fs {

struct Profile {
  std::vector<uint32_t> chunks;  // indices into CHUNKS, in order of first use
  // Versions 2 and 3: the start-up pack, and the length of each chunk's
  // frame in it (`clens[i]` for `chunks[i]`; frame i starts at the sum of
  // the ones before it).
  std::optional<Digest> pack;
  std::vector<uint32_t> clens;
  // Version 3: each chunk's digest and uncompressed length, as the image's
  // CHUNKS record has them (empty for versions 1 and 2).
  std::vector<Digest> digests;
  std::vector<uint32_t> ulens;
};

// The zstd level of start-up packs: chosen once per image, read by every
// cold start. On the python3 start-up of bench/coldstart.sh its 32 KiB
// frames are 10% smaller than at the build's level 1; level 19 would save
// 6% more at 14 times the time.
inline constexpr int kStartupPackLevel = 9;

std::string ProfileKey(const Digest& image_id);
// "" if the arrays of `profile` fit together (clens with a pack, digests and
// ulens all as long as `chunks`, or empty), else what does not.
std::string ShapeError(const Profile& profile);
// Version 3 if `profile` has a pack and digests, 2 if a pack only, else 1.
// A profile with a ShapeError encodes to no bytes (which no decoder takes).
std::vector<uint8_t> EncodeProfile(const Profile& profile);
// kCorruption for a damaged profile or an index >= `chunk_count` (a caller
// that does not know the image yet passes UINT32_MAX and checks later:
// MatchesImage).
Result<Profile> DecodeProfile(std::span<const uint8_t> bytes, uint32_t chunk_count);

// Whether a version 3 profile's digests and lengths are those of the
// image's CHUNKS records at its indices (always true for versions 1 and 2,
// which have none): "" if so, else what differs (or its ShapeError).
std::string MismatchWithImage(const Profile& profile, std::span<const ChunkRecord> chunks);

// Cuts the start-up pack's frames, given in pack order (some may be left
// out), into range reads: the first MiB of chunk data in reads of at most
// 256 KiB, so that the workload can start after a short transfer, then
// reads of at most 4 MiB; a hole of more than 128 KiB ends a read.
std::vector<std::vector<chunkstore::ChunkLocation>> StartupPackRuns(
    std::vector<chunkstore::ChunkLocation> frames);

// Fetches a version 3 profile's chunks from its start-up pack into `reader`
// as prefetch (counted in `counters`), from the profile alone: each chunk is
// verified against the profile's digest, so this may start before the
// image metadata has loaded. Returns false (and does nothing) for a profile
// without a start-up pack or digests.
bool PrefetchStartupPack(chunkstore::ChunkReader& reader, const Profile& profile,
                         const chunkstore::CountersPtr& counters);

Status PutProfile(chunkstore::ObjectStore& store, const Digest& image_id, const Profile& profile);
// The image's profile, or nullopt when it has none.
Result<std::optional<Profile>> LoadProfile(chunkstore::ObjectStore& store, const Digest& image_id,
                                           uint32_t chunk_count);

// The profile an image goes by: its own, or else, for an image stored as a
// delta (ImageReader::delta_base), its base's, if that is a version 3
// profile that matches this image's CHUNKS (a snapshot that kept the base's
// start-up in place inherits it without a copy: docs/format.md, "Start-up
// profiles"). nullopt when neither.
Result<std::optional<Profile>> LoadProfileOf(chunkstore::ObjectStore& store, const Digest& image_id,
                                             const ImageReader& image);

// Makes the version 3 profile of `order` (chunk indices; `locs[i]` is where
// the image keeps chunk `order[i]`): reads every chunk through `reader`,
// verified, compresses it at `level` into one new pack in that order, and
// puts the pack in `store`. The profile object itself is not written. An
// empty `order` gives an empty profile without a pack.
Result<Profile> MakeStartupPack(chunkstore::ObjectStore& store, chunkstore::ChunkReader& reader,
                                std::span<const uint32_t> order,
                                std::span<const chunkstore::ChunkLocation> locs,
                                int level = kStartupPackLevel);

// Stores `profile` as the image's profile, replacing any. The start-up pack
// the replaced profile named is deleted afterwards, unless it is the new
// one (a failure to delete it is not an error: it is then unreferenced,
// never wrong).
Status StoreProfile(chunkstore::ObjectStore& store, const Digest& image_id, uint32_t chunk_count,
                    const Profile& profile);
// Deletes the image's profile, then its start-up pack. kNotFound if the
// image has no profile.
Status RemoveProfile(chunkstore::ObjectStore& store, const Digest& image_id, uint32_t chunk_count);

// The profile an image derived from another (a snapshot of `base`) starts
// with: each entry of `base_profile` whose chunk the derived image still has
// (same digest in `derived_chunks`), renumbered to the derived image's CHUNKS
// index, in the same order. When every entry is kept, the derived profile
// names the same start-up pack (its frames are those chunks in that order)
// and is a version 3 profile; when some are not, it has no start-up pack
// (version 1: replayed from the image's packs). nullopt when no entry is
// kept. `base_chunks` are the base image's CHUNKS records, which
// `base_profile` was checked against. `derived_used`, if not empty, says
// which of the derived image's CHUNKS records a file still uses (a layout
// over the base keeps records no file uses any more: their entries go).
std::optional<Profile> CarryProfile(const Profile& base_profile,
                                    std::span<const ChunkRecord> base_chunks,
                                    std::span<const ChunkRecord> derived_chunks,
                                    std::span<const uint8_t> derived_used = {});

// Collects chunk indices in the order of their first use. Thread-safe.
class ProfileRecorder {
 public:
  explicit ProfileRecorder(uint32_t chunk_count) : seen_(chunk_count, false) {}
  void Note(uint32_t chunk);
  std::vector<uint32_t> Take();

 private:
  std::mutex mu_;
  std::vector<bool> seen_;
  std::vector<uint32_t> order_;
};

}  // namespace ferry::fs
