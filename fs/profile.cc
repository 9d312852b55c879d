#include "fs/profile.h"

#include <xxhash.h>

#include <cstring>

#include "chunkstore/endian.h"

namespace ferry::fs {
namespace {
constexpr char kMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'P', 'R', 'F'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 16;  // magic, version, count
}  // namespace

std::string ProfileKey(const Digest& image_id) { return "profiles/" + image_id.Hex(); }

std::vector<uint8_t> EncodeProfile(std::span<const uint32_t> chunks) {
  std::vector<uint8_t> out(kHeader + 4 * chunks.size() + 8);
  std::memcpy(out.data(), kMagic, 8);
  PutLe32(out.data() + 8, kVersion);
  PutLe32(out.data() + 12, static_cast<uint32_t>(chunks.size()));
  for (size_t i = 0; i < chunks.size(); ++i) PutLe32(out.data() + kHeader + 4 * i, chunks[i]);
  PutLe64(out.data() + out.size() - 8, XXH3_64bits(out.data(), out.size() - 8));
  return out;
}

Result<std::vector<uint32_t>> DecodeProfile(std::span<const uint8_t> b, uint32_t chunk_count) {
  if (b.size() < kHeader + 8 || std::memcmp(b.data(), kMagic, 8) != 0) {
    return CorruptionError("profile: not a ferry profile");
  }
  if (GetLe32(b.data() + 8) != kVersion) {
    return CorruptionError("profile: unsupported version " + std::to_string(GetLe32(b.data() + 8)));
  }
  uint64_t count = GetLe32(b.data() + 12);
  if (b.size() != kHeader + 4 * count + 8) return CorruptionError("profile: size does not match its count");
  if (GetLe64(b.data() + b.size() - 8) != XXH3_64bits(b.data(), b.size() - 8)) {
    return CorruptionError("profile: checksum mismatch");
  }
  std::vector<uint32_t> chunks(count);
  for (size_t i = 0; i < count; ++i) {
    chunks[i] = GetLe32(b.data() + kHeader + 4 * i);
    if (chunks[i] >= chunk_count) {
      return CorruptionError("profile: chunk index " + std::to_string(chunks[i]) + " out of range");
    }
  }
  return chunks;
}

Status PutProfile(chunkstore::ObjectStore& store, const Digest& image_id,
                  std::span<const uint32_t> chunks) {
  return store.Put(ProfileKey(image_id), EncodeProfile(chunks));
}

Result<std::optional<std::vector<uint32_t>>> LoadProfile(chunkstore::ObjectStore& store,
                                                          const Digest& image_id,
                                                          uint32_t chunk_count) {
  auto blob = store.Get(ProfileKey(image_id));
  if (!blob.ok()) {
    if (blob.status().code() == StatusCode::kNotFound) return std::optional<std::vector<uint32_t>>();
    return blob.status();
  }
  auto chunks = DecodeProfile((*blob)->bytes(), chunk_count);
  if (!chunks.ok()) return chunks.status().Annotate(ProfileKey(image_id));
  return std::optional<std::vector<uint32_t>>(std::move(*chunks));
}

void ProfileRecorder::Note(uint32_t chunk) {
  std::lock_guard<std::mutex> lock(mu_);
  if (chunk >= seen_.size() || seen_[chunk]) return;
  seen_[chunk] = true;
  order_.push_back(chunk);
}

std::vector<uint32_t> ProfileRecorder::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  return order_;
}

}  // namespace ferry::fs
