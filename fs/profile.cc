#include "fs/profile.h"

#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include "chunkstore/endian.h"
#include "chunkstore/pack.h"

namespace ferry::fs {
namespace {
constexpr char kMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'P', 'R', 'F'};
constexpr size_t kHeader = 16;     // magic, version, count
constexpr size_t kPackField = 32;  // versions 2 and 3: the start-up pack's id

// The size of one entry of a profile of `version`.
size_t EntrySize(uint32_t version) { return version == 1 ? 4 : version == 2 ? 8 : 44; }

// The longest frame zstd makes of `ulen` bytes, with room to spare.
uint64_t MaxFrame(uint64_t ulen) { return ulen + (ulen >> 7) + 1024; }
}  // namespace

std::string ProfileKey(const Digest& image_id) { return "profiles/" + image_id.Hex(); }

std::string ShapeError(const Profile& p) {
  const size_t n = p.chunks.size();
  if (p.pack.has_value() && p.clens.size() != n) {
    return std::to_string(p.clens.size()) + " frame lengths for " + std::to_string(n) + " chunks";
  }
  if (!p.pack.has_value() && !p.clens.empty()) return "frame lengths without a start-up pack";
  if (p.digests.size() != p.ulens.size() || (!p.digests.empty() && p.digests.size() != n)) {
    return std::to_string(p.digests.size()) + " digests and " + std::to_string(p.ulens.size()) +
           " lengths for " + std::to_string(n) + " chunks";
  }
  if (!p.digests.empty() && !p.pack.has_value()) return "digests without a start-up pack";
  return "";
}

std::vector<uint8_t> EncodeProfile(const Profile& p) {
  if (!ShapeError(p).empty()) return {};
  const uint32_t version = !p.pack.has_value() ? 1 : p.digests.empty() ? 2 : 3;
  const size_t head = kHeader + (version > 1 ? kPackField : 0), entry = EntrySize(version);
  std::vector<uint8_t> out(head + entry * p.chunks.size() + 8);
  std::memcpy(out.data(), kMagic, 8);
  PutLe32(out.data() + 8, version);
  PutLe32(out.data() + 12, static_cast<uint32_t>(p.chunks.size()));
  if (version > 1) std::memcpy(out.data() + kHeader, p.pack->bytes.data(), kPackField);
  for (size_t i = 0; i < p.chunks.size(); ++i) {
    uint8_t* e = out.data() + head + entry * i;
    PutLe32(e, p.chunks[i]);
    if (version > 1) PutLe32(e + 4, p.clens[i]);
    if (version > 2) {
      PutLe32(e + 8, p.ulens[i]);
      std::memcpy(e + 12, p.digests[i].bytes.data(), 32);
    }
  }
  PutLe64(out.data() + out.size() - 8, XXH3_64bits(out.data(), out.size() - 8));
  return out;
}

Result<Profile> DecodeProfile(std::span<const uint8_t> b, uint32_t chunk_count) {
  if (b.size() < kHeader + 8 || std::memcmp(b.data(), kMagic, 8) != 0) {
    return CorruptionError("profile: not a ferry profile");
  }
  const uint32_t version = GetLe32(b.data() + 8);
  if (version < 1 || version > 3) {
    return CorruptionError("profile: unsupported version " + std::to_string(version));
  }
  const size_t head = kHeader + (version > 1 ? kPackField : 0), entry = EntrySize(version);
  const uint64_t count = GetLe32(b.data() + 12);
  if (b.size() < head + 8 || (b.size() - head - 8) / entry != count ||
      (b.size() - head - 8) % entry != 0) {
    return CorruptionError("profile: size does not match its count");
  }
  if (GetLe64(b.data() + b.size() - 8) != XXH3_64bits(b.data(), b.size() - 8)) {
    return CorruptionError("profile: checksum mismatch");
  }
  Profile p;
  p.chunks.resize(count);
  if (version > 1) {
    p.pack.emplace();
    std::memcpy(p.pack->bytes.data(), b.data() + kHeader, kPackField);
    p.clens.resize(count);
  }
  if (version > 2) {
    p.ulens.resize(count);
    p.digests.resize(count);
  }
  for (size_t i = 0; i < count; ++i) {
    const uint8_t* e = b.data() + head + entry * i;
    p.chunks[i] = GetLe32(e);
    if (p.chunks[i] >= chunk_count) {
      return CorruptionError("profile: chunk index " + std::to_string(p.chunks[i]) + " out of range");
    }
    if (version > 1) {
      p.clens[i] = GetLe32(e + 4);
      if (p.clens[i] == 0) {
        return CorruptionError("profile: entry " + std::to_string(i) + " has an empty frame");
      }
    }
    if (version > 2) {
      p.ulens[i] = GetLe32(e + 8);
      std::memcpy(p.digests[i].bytes.data(), e + 12, 32);
      if (p.ulens[i] == 0 || p.ulens[i] > kMaxChunkSize) {
        return CorruptionError("profile: entry " + std::to_string(i) + " has a chunk length of " +
                               std::to_string(p.ulens[i]));
      }
      if (p.clens[i] > MaxFrame(p.ulens[i])) {
        return CorruptionError("profile: entry " + std::to_string(i) + " has a frame of " +
                               std::to_string(p.clens[i]) + " bytes for a chunk of " +
                               std::to_string(p.ulens[i]));
      }
    }
  }
  return p;
}

std::string MismatchWithImage(const Profile& p, std::span<const ChunkRecord> chunks) {
  if (std::string why = ShapeError(p); !why.empty()) return why;
  for (size_t i = 0; i < p.chunks.size(); ++i) {
    if (p.chunks[i] >= chunks.size()) {
      return "entry " + std::to_string(i) + " names chunk " + std::to_string(p.chunks[i]) +
             " of an image of " + std::to_string(chunks.size());
    }
    if (i >= p.digests.size()) continue;
    const ChunkRecord& c = chunks[p.chunks[i]];
    if (c.ulen != p.ulens[i] || std::memcmp(c.digest, p.digests[i].bytes.data(), 32) != 0) {
      return "entry " + std::to_string(i) + " does not match chunk " + std::to_string(p.chunks[i]) +
             " of the image";
    }
  }
  return "";
}

std::vector<std::vector<chunkstore::ChunkLocation>> StartupPackRuns(
    std::vector<chunkstore::ChunkLocation> frames) {
  constexpr uint64_t kRunBytes = 4u << 20, kGap = 128u << 10;
  constexpr uint64_t kEarlyBytes = 1u << 20, kEarlyRunBytes = 256u << 10;
  std::vector<std::vector<chunkstore::ChunkLocation>> runs;
  std::vector<chunkstore::ChunkLocation> run;
  uint64_t seen = 0, run_bytes = 0, run_end = 0;
  for (const chunkstore::ChunkLocation& loc : frames) {
    const uint64_t cap = seen < kEarlyBytes ? kEarlyRunBytes : kRunBytes;
    seen += loc.ulen;
    // Frames left out (handed out elsewhere) leave a hole: up to kGap of it
    // is read and dropped, a longer one ends the run.
    if (!run.empty() && (loc.offset - run_end > kGap || run_bytes + loc.ulen > cap)) {
      runs.push_back(std::move(run));
      run.clear();
      run_bytes = 0;
    }
    run_bytes += loc.ulen;
    run_end = loc.offset + loc.clen;
    run.push_back(loc);
  }
  if (!run.empty()) runs.push_back(std::move(run));
  return runs;
}

bool PrefetchStartupPack(chunkstore::ChunkReader& reader, const Profile& p,
                         const chunkstore::CountersPtr& counters) {
  if (!p.pack.has_value() || p.digests.size() != p.chunks.size() ||
      p.clens.size() != p.chunks.size() || p.ulens.size() != p.chunks.size()) {
    return false;
  }
  std::vector<chunkstore::ChunkLocation> frames(p.chunks.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < p.chunks.size(); ++i) {
    chunkstore::ChunkLocation& loc = frames[i];
    loc.pack = *p.pack;
    loc.startup = true;
    loc.digest = p.digests[i];
    loc.offset = offset;
    loc.clen = p.clens[i];
    loc.ulen = p.ulens[i];
    offset += loc.clen;
  }
  for (auto& run : StartupPackRuns(std::move(frames))) reader.Prefetch(std::move(run), counters, /*keep=*/true);
  return true;
}

Status PutProfile(chunkstore::ObjectStore& store, const Digest& image_id, const Profile& p) {
  if (std::string why = ShapeError(p); !why.empty()) {
    return InvalidArgumentError("profile for image " + image_id.Hex().substr(0, 12) + ": " + why);
  }
  return store.Put(ProfileKey(image_id), EncodeProfile(p));
}

Result<std::optional<Profile>> LoadProfile(chunkstore::ObjectStore& store, const Digest& image_id,
                                           uint32_t chunk_count) {
  auto blob = store.Get(ProfileKey(image_id));
  if (!blob.ok()) {
    if (blob.status().code() == StatusCode::kNotFound) return std::optional<Profile>();
    return blob.status();
  }
  auto p = DecodeProfile((*blob)->bytes(), chunk_count);
  if (!p.ok()) return p.status().Annotate(ProfileKey(image_id));
  return std::optional<Profile>(std::move(*p));
}

Result<std::optional<Profile>> LoadProfileOf(chunkstore::ObjectStore& store, const Digest& image_id,
                                             const ImageReader& image) {
  const auto count = static_cast<uint32_t>(image.chunks().size());
  ASSIGN_OR_RETURN(auto own, LoadProfile(store, image_id, count));
  if (own.has_value() || !image.delta_base().has_value()) return own;
  auto inherited = LoadProfile(store, *image.delta_base(), count);
  if (!inherited.ok() || !inherited->has_value()) return std::optional<Profile>();
  const Profile& p = **inherited;
  if (p.digests.empty() || !MismatchWithImage(p, image.chunks()).empty()) return std::optional<Profile>();
  return inherited;
}

Result<Profile> MakeStartupPack(chunkstore::ObjectStore& store, chunkstore::ChunkReader& reader,
                                std::span<const uint32_t> order,
                                std::span<const chunkstore::ChunkLocation> locs, int level) {
  if (order.size() != locs.size()) return InvalidArgumentError("start-up pack: order and locations differ");
  if (order.empty()) return Profile{};  // nothing read: a profile without a pack
  static std::atomic<uint64_t> seq{0};
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) dir = "/tmp";
  const std::string path = (dir / ("ferry-startup-pack." + std::to_string(getpid()) + "." +
                                   std::to_string(++seq)))
                               .string();
  ASSIGN_OR_RETURN(auto writer, chunkstore::PackWriter::Create(path));
  Profile p;
  p.chunks.assign(order.begin(), order.end());
  p.clens.reserve(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    auto data = reader.Read(locs[i]);
    if (!data.ok()) return data.status().Annotate("start-up pack");
    std::vector<uint8_t> frame = chunkstore::CompressChunk(**data, level);
    RETURN_IF_ERROR(writer->Append(locs[i].digest, frame, locs[i].ulen).status());
    p.clens.push_back(static_cast<uint32_t>(frame.size()));
    p.ulens.push_back(locs[i].ulen);
    p.digests.push_back(locs[i].digest);
  }
  auto id = writer->Finish();
  writer.reset();
  if (!id.ok()) {
    unlink(path.c_str());
    return id.status().Annotate("start-up pack");
  }
  Status put = store.PutFile(chunkstore::StartupPackKey(*id), path);
  unlink(path.c_str());
  RETURN_IF_ERROR(put.Annotate("start-up pack"));
  p.pack = *id;
  return p;
}

Status StoreProfile(chunkstore::ObjectStore& store, const Digest& image_id, uint32_t chunk_count,
                    const Profile& profile) {
  auto old = LoadProfile(store, image_id, chunk_count);
  RETURN_IF_ERROR(PutProfile(store, image_id, profile));
  if (old.ok() && old->has_value() && (*old)->pack.has_value() && (*old)->pack != profile.pack) {
    store.Delete(chunkstore::StartupPackKey(*(*old)->pack)).IgnoreError();
  }
  return Status::Ok();
}

Status RemoveProfile(chunkstore::ObjectStore& store, const Digest& image_id, uint32_t chunk_count) {
  auto old = LoadProfile(store, image_id, chunk_count);
  if (old.ok() && !old->has_value()) {
    return NotFoundError("image " + image_id.Short() + " has no profile");
  }
  RETURN_IF_ERROR(store.Delete(ProfileKey(image_id)));
  if (old.ok() && (*old)->pack.has_value()) {
    RETURN_IF_ERROR(store.Delete(chunkstore::StartupPackKey(*(*old)->pack))
                        .Annotate("delete the start-up pack of " + image_id.Short()));
  }
  return Status::Ok();
}

namespace {
Digest DigestOf(const ChunkRecord& c) {
  Digest d;
  std::memcpy(d.bytes.data(), c.digest, Digest::kSize);
  return d;
}
}  // namespace

std::optional<Profile> CarryProfile(const Profile& base_profile,
                                    std::span<const ChunkRecord> base_chunks,
                                    std::span<const ChunkRecord> derived_chunks,
                                    std::span<const uint8_t> derived_used) {
  std::unordered_map<Digest, uint32_t, DigestHash> index;
  index.reserve(derived_chunks.size());
  for (uint32_t i = 0; i < derived_chunks.size(); ++i) {
    if (!derived_used.empty() && (i >= derived_used.size() || !derived_used[i])) continue;
    index.emplace(DigestOf(derived_chunks[i]), i);
  }
  Profile out;
  for (uint32_t c : base_profile.chunks) {
    if (c >= base_chunks.size()) continue;  // not checked against this base: keep nothing of it
    auto it = index.find(DigestOf(base_chunks[c]));
    if (it != index.end()) out.chunks.push_back(it->second);
  }
  if (out.chunks.empty()) return std::nullopt;
  if (out.chunks.size() == base_profile.chunks.size() && base_profile.pack.has_value()) {
    out.pack = base_profile.pack;
    out.clens = base_profile.clens;
    for (uint32_t c : out.chunks) {
      out.digests.push_back(DigestOf(derived_chunks[c]));
      out.ulens.push_back(derived_chunks[c].ulen);
    }
  }
  return out;
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
