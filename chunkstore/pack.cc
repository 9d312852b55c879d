#include "chunkstore/pack.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <cstring>
#include <functional>

#include "chunkstore/endian.h"

namespace ferry::chunkstore {

std::string PackKey(const Digest& pack) { return "packs/" + pack.Hex(); }
std::string StartupPackKey(const Digest& pack) { return "startup/" + pack.Hex(); }

namespace {

// One compression and one decompression context per thread: creating a
// context per chunk costs more than compressing a small chunk.
struct ZstdContexts {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  ~ZstdContexts() {
    ZSTD_freeCCtx(cctx);
    ZSTD_freeDCtx(dctx);
  }
};
ZstdContexts& Contexts() {
  thread_local ZstdContexts contexts;
  return contexts;
}

}  // namespace

size_t CompressBound(size_t n) { return ZSTD_compressBound(n); }

size_t CompressChunkInto(std::span<const uint8_t> data, int level, std::span<uint8_t> out) {
  size_t n = ZSTD_compressCCtx(Contexts().cctx, out.data(), out.size(), data.data(), data.size(),
                               level);
  // With room for the bound, only an allocation failure is left.
  if (ZSTD_isError(n)) throw std::bad_alloc();
  return n;
}

std::vector<uint8_t> CompressChunk(std::span<const uint8_t> data, int level) {
  std::vector<uint8_t> out(CompressBound(data.size()));
  out.resize(CompressChunkInto(data, level, out));
  return out;
}

std::optional<uint64_t> FrameContentSize(std::span<const uint8_t> frame) {
  unsigned long long n = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN) return std::nullopt;
  return n;
}

Status DecompressFrame(std::span<const uint8_t> frame, uint32_t ulen, const Digest& digest,
                       std::vector<uint8_t>* out) {
  if (FrameContentSize(frame) != std::optional<uint64_t>(ulen)) {
    return CorruptionError("chunk " + digest.Hex() + ": bad zstd frame header");
  }
  out->resize(ulen);
  size_t n = ZSTD_decompressDCtx(Contexts().dctx, out->data(), out->size(), frame.data(),
                                 frame.size());
  if (ZSTD_isError(n) || n != ulen) {
    out->clear();
    return CorruptionError("chunk " + digest.Hex() + ": zstd frame does not decode (" +
                           (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short") + ")");
  }
  return Status::Ok();
}

Status DecompressAndVerify(std::span<const uint8_t> frame, uint32_t ulen,
                           const Digest& digest, std::vector<uint8_t>* out) {
  RETURN_IF_ERROR(DecompressFrame(frame, ulen, digest, out));
  if (Sha256(*out) != digest) {
    out->clear();
    return CorruptionError("chunk " + digest.Hex() + ": contents do not match digest");
  }
  return Status::Ok();
}

Result<std::unique_ptr<PackWriter>> PackWriter::Create(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create pack " + path);
  return std::unique_ptr<PackWriter>(new PackWriter(fd, path));
}

PackWriter::~PackWriter() {
  if (fd_ >= 0) {
    close(fd_);
    unlink(path_.c_str());  // never finished: leave nothing behind
  }
}

Status PackWriter::Write(std::span<const uint8_t> data) {
  sha_.Update(data);
  offset_ += data.size();
  if (buffer_.size() + data.size() <= kBufferBytes) {
    buffer_.insert(buffer_.end(), data.begin(), data.end());
    return Status::Ok();
  }
  RETURN_IF_ERROR(Flush());
  if (data.size() >= kBufferBytes) return WriteOut(data);
  buffer_.assign(data.begin(), data.end());
  return Status::Ok();
}

Status PackWriter::Flush() {
  Status st = WriteOut(buffer_);
  buffer_.clear();
  return st;
}

Status PackWriter::WriteOut(std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write pack " + path_);
    }
    done += static_cast<size_t>(n);
  }
  written_out_ += data.size();
  if (written_out_ - writeback_from_ >= kWritebackBytes) {
    // Only a hint: an error here shows up, if it is real, in the fsync.
    sync_file_range(fd_, static_cast<off_t>(writeback_from_),
                    static_cast<off_t>(written_out_ - writeback_from_), SYNC_FILE_RANGE_WRITE);
    writeback_from_ = written_out_;
  }
  return Status::Ok();
}

Result<uint64_t> PackWriter::Append(const Digest& digest, std::span<const uint8_t> frame,
                                    uint32_t ulen) {
  uint64_t at = offset_;
  RETURN_IF_ERROR(Write(frame));
  uint8_t entry[kPackIndexEntrySize];
  std::memcpy(entry, digest.bytes.data(), 32);
  PutLe64(entry + 32, at);
  PutLe32(entry + 40, static_cast<uint32_t>(frame.size()));
  PutLe32(entry + 44, ulen);
  index_.insert(index_.end(), entry, entry + sizeof(entry));
  return at;
}

Result<Digest> PackWriter::Finish() {
  uint64_t index_offset = offset_;
  RETURN_IF_ERROR(Write(index_));
  uint8_t trailer[kPackTrailerSize];
  PutLe64(trailer, index_offset);
  PutLe32(trailer + 8, static_cast<uint32_t>(index_.size() / kPackIndexEntrySize));
  PutLe32(trailer + 12, kPackVersion);
  PutLe64(trailer + 16, XXH3_64bits(index_.data(), index_.size()));
  std::memcpy(trailer + 24, kPackMagic, 8);
  RETURN_IF_ERROR(Write(trailer));
  RETURN_IF_ERROR(Flush());
  if (close(fd_) != 0) {
    fd_ = -1;
    unlink(path_.c_str());
    return ErrnoError("close pack " + path_);
  }
  fd_ = -1;
  return sha_.Finish();
}

namespace {

Result<std::vector<ChunkLocation>> ParseIndex(std::span<const uint8_t> trailer,
                                              uint64_t pack_size, const Digest& pack,
                                              const std::function<Status(uint64_t, std::span<uint8_t>)>& read) {
  std::string name = "pack " + pack.Hex();
  if (std::memcmp(trailer.data() + 24, kPackMagic, 8) != 0) {
    return CorruptionError(name + ": bad trailer magic");
  }
  if (GetLe32(trailer.data() + 12) != kPackVersion) {
    return CorruptionError(name + ": unsupported version " +
                           std::to_string(GetLe32(trailer.data() + 12)));
  }
  uint64_t index_offset = GetLe64(trailer.data());
  uint64_t count = GetLe32(trailer.data() + 8);
  uint64_t index_size = count * kPackIndexEntrySize;
  if (index_offset > pack_size - kPackTrailerSize ||
      index_offset + index_size != pack_size - kPackTrailerSize) {
    return CorruptionError(name + ": index out of bounds");
  }
  std::vector<uint8_t> index(index_size);
  RETURN_IF_ERROR(read(index_offset, index));
  if (XXH3_64bits(index.data(), index.size()) != GetLe64(trailer.data() + 16)) {
    return CorruptionError(name + ": index checksum mismatch");
  }
  std::vector<ChunkLocation> out;
  out.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    const uint8_t* e = index.data() + i * kPackIndexEntrySize;
    ChunkLocation loc;
    std::memcpy(loc.digest.bytes.data(), e, 32);
    loc.pack = pack;
    loc.offset = GetLe64(e + 32);
    loc.clen = GetLe32(e + 40);
    loc.ulen = GetLe32(e + 44);
    if (loc.offset > index_offset || loc.clen > index_offset - loc.offset) {
      return CorruptionError(name + ": chunk " + std::to_string(i) + " out of bounds");
    }
    out.push_back(loc);
  }
  return out;
}

}  // namespace

Result<std::vector<ChunkLocation>> ReadPackIndex(ObjectStore& store, const Digest& pack,
                                                 const std::string& key_in) {
  const std::string key = key_in.empty() ? PackKey(pack) : key_in;
  ASSIGN_OR_RETURN(uint64_t size, store.Size(key));
  if (size < kPackTrailerSize) return CorruptionError("pack " + pack.Hex() + ": too short");
  uint8_t trailer[kPackTrailerSize];
  RETURN_IF_ERROR(store.GetRange(key, size - kPackTrailerSize, trailer));
  return ParseIndex(trailer, size, pack, [&](uint64_t off, std::span<uint8_t> out) {
    return store.GetRange(key, off, out);
  });
}

Result<std::vector<ChunkLocation>> ParsePackIndex(std::span<const uint8_t> pack,
                                                  const Digest& pack_id) {
  if (pack.size() < kPackTrailerSize) {
    return CorruptionError("pack " + pack_id.Hex() + ": too short");
  }
  return ParseIndex(pack.subspan(pack.size() - kPackTrailerSize), pack.size(), pack_id,
                    [&](uint64_t off, std::span<uint8_t> out) {
                      std::memcpy(out.data(), pack.data() + off, out.size());
                      return Status::Ok();
                    });
}

}  // namespace ferry::chunkstore
