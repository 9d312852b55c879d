// Start-up profiles: the chunks a workload read during its start-up, in the
// order it first read them, kept in the store beside the image
// ("profiles/<image id>") and replayed as prefetch when the image is mounted
// on a host that has not seen it (docs/format.md, "Profiles").
//
// A profile names chunks by their index in the image's CHUNKS table, so it
// belongs to exactly one image id. Loading verifies the profile's checksum
// and that every index is in range: a damaged profile is an error, never a
// wrong prefetch.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "chunkstore/digest.h"
#include "chunkstore/object_store.h"

namespace ferry::fs {

std::string ProfileKey(const Digest& image_id);
std::vector<uint8_t> EncodeProfile(std::span<const uint32_t> chunks);
// kCorruption for a damaged profile or an index >= `chunk_count`.
Result<std::vector<uint32_t>> DecodeProfile(std::span<const uint8_t> bytes, uint32_t chunk_count);

Status PutProfile(chunkstore::ObjectStore& store, const Digest& image_id,
                  std::span<const uint32_t> chunks);
// The image's profile, or nullopt when it has none.
Result<std::optional<std::vector<uint32_t>>> LoadProfile(chunkstore::ObjectStore& store,
                                                          const Digest& image_id,
                                                          uint32_t chunk_count);

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
