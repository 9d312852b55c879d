// Packs: immutable objects that hold many compressed chunks.
//
// On-disk layout (docs/format.md has the byte-level description):
//   [zstd frame of chunk 0][frame 1]...[frame n-1][index][trailer]
// Each chunk is its own zstd frame, so one range read fetches one chunk or a
// run of neighbours. The index lists (digest, offset, compressed length,
// uncompressed length) per chunk; the 32-byte trailer locates the index and
// checksums it with XXH3, so a pack describes itself. A pack's name in the
// store is "packs/<sha256 of the whole pack object>".
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "chunkstore/digest.h"
#include "chunkstore/object_store.h"
#include "chunkstore/status.h"

namespace ferry::chunkstore {

inline constexpr char kPackMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'P', 'K', '1'};
inline constexpr uint32_t kPackVersion = 1;
inline constexpr size_t kPackTrailerSize = 32;
inline constexpr size_t kPackIndexEntrySize = 48;

// Where a chunk lives: enough to fetch, decompress and verify it.
struct ChunkLocation {
  Digest digest;         // SHA-256 of the uncompressed bytes
  Digest pack;           // pack object id
  uint64_t offset = 0;   // of the zstd frame within the pack
  uint32_t clen = 0;     // compressed (frame) length
  uint32_t ulen = 0;     // uncompressed length
  bool startup = false;  // the pack is a start-up pack (StartupPackKey), not under packs/
};

// "packs/<hex>": the packs builds write and deduplicate against.
std::string PackKey(const Digest& pack);
// "startup/<hex>": start-up packs (fs/profile.h). They hold copies of an
// image's chunks for one profile and are deleted with it, so they are kept
// out of packs/, where a build would find and reference their chunks.
std::string StartupPackKey(const Digest& pack);
// The object `loc`'s pack is stored as.
inline std::string PackObjectKey(const ChunkLocation& loc) {
  return loc.startup ? StartupPackKey(loc.pack) : PackKey(loc.pack);
}

// Compresses `data` as one zstd frame that records its content size.
std::vector<uint8_t> CompressChunk(std::span<const uint8_t> data, int level);
// The most bytes a frame of `n` bytes of input can take.
size_t CompressBound(size_t n);
// The same frame as CompressChunk, written to `out` (at least
// CompressBound(data.size()) bytes, left uninitialized by the caller);
// returns its length.
size_t CompressChunkInto(std::span<const uint8_t> data, int level, std::span<uint8_t> out);
// The content size a zstd frame declares, or nullopt if it declares none
// or is not a frame.
std::optional<uint64_t> FrameContentSize(std::span<const uint8_t> frame);
// Decompresses one frame into exactly `ulen` bytes (kCorruption if it does
// not decode to that). Does not verify: the caller must check the digest.
// `digest` only names the chunk in messages.
Status DecompressFrame(std::span<const uint8_t> frame, uint32_t ulen, const Digest& digest,
                       std::vector<uint8_t>* out);
// Decompresses one frame into exactly `ulen` bytes and checks that the result
// hashes to `digest`. kCorruption on any mismatch; never returns bad bytes.
Status DecompressAndVerify(std::span<const uint8_t> frame, uint32_t ulen,
                           const Digest& digest, std::vector<uint8_t>* out);

// Writes one pack to a local file. Not thread-safe.
class PackWriter {
 public:
  // Creates `path` (must not exist).
  static Result<std::unique_ptr<PackWriter>> Create(const std::string& path);
  ~PackWriter();

  // Appends an already compressed frame; returns its offset in the pack.
  Result<uint64_t> Append(const Digest& digest, std::span<const uint8_t> frame,
                          uint32_t ulen);
  uint64_t bytes_written() const { return offset_; }
  size_t chunk_count() const { return index_.size(); }

  // Writes index and trailer, closes the file; returns the pack id.
  Result<Digest> Finish();

 private:
  PackWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  // Appends to the pack, through buffer_: a pack is written in writes of
  // about kBufferBytes, not one system call per chunk.
  Status Write(std::span<const uint8_t> data);
  Status Flush();
  Status WriteOut(std::span<const uint8_t> data);
  static constexpr size_t kBufferBytes = 1u << 20;
  // Every kWritebackBytes written, the kernel is asked to start writing
  // them to disk (sync_file_range, which does not wait), so the fsync that
  // makes the finished pack durable finds little left to do. Without it the
  // whole pack is still in memory then: nothing else writes it back within
  // the seconds a build takes.
  static constexpr uint64_t kWritebackBytes = 8u << 20;

  int fd_;
  std::string path_;
  uint64_t offset_ = 0;
  uint64_t written_out_ = 0;  // bytes passed to write()
  uint64_t writeback_from_ = 0;
  std::vector<uint8_t> buffer_;
  Sha256Stream sha_;
  std::vector<uint8_t> index_;  // serialized entries
};

// Reads a pack's own index from the store (trailer, then index), checking
// magic, version, bounds and the index checksum.
// `key`: where the pack is stored, if not PackKey(pack).
Result<std::vector<ChunkLocation>> ReadPackIndex(ObjectStore& store,
                                                 const Digest& pack, const std::string& key = "");
// The same over a whole pack held in memory (fsck, fuzzing).
Result<std::vector<ChunkLocation>> ParsePackIndex(std::span<const uint8_t> pack,
                                                  const Digest& pack_id);

}  // namespace ferry::chunkstore
