#include "fs/image_fs.h"

#include <algorithm>
#include <cstring>

namespace ferry::fs {
namespace {

constexpr size_t kZeroPage = 1 << 20;
const uint8_t* ZeroPage() {
  static const std::vector<uint8_t> zeros(kZeroPage, 0);
  return zeros.data();
}

Status Errno(int err, std::string msg) { return Status(StatusCode::kIoError, std::move(msg), err); }

}  // namespace

int ErrnoFor(const Status& st) {
  if (st.ok()) return 0;
  if (st.sys_errno() != 0) return st.sys_errno();
  switch (st.code()) {
    case StatusCode::kNotFound: return ENOENT;
    case StatusCode::kInvalidArgument: return EINVAL;
    case StatusCode::kAlreadyExists: return EEXIST;
    case StatusCode::kDeadlineExceeded: return ETIMEDOUT;
    default: return EIO;  // corruption, unavailable store, internal errors
  }
}

ImageFs::ImageFs(std::unique_ptr<ImageReader> image, chunkstore::ChunkReader* chunks, Logger log)
    : image_(std::move(image)), chunks_(chunks), log_(std::move(log)) {
  for (uint64_t ino = 1; ino <= image_->inode_count(); ++ino) {
    if (S_ISREG(image_->inode(ino).mode)) total_bytes_ += image_->inode(ino).size;
  }
}

Result<struct stat> ImageFs::GetAttr(uint64_t ino) const {
  if (!image_->IsValidIno(ino)) return Errno(ENOENT, "no inode " + std::to_string(ino));
  const InodeRecord& n = image_->inode(ino);
  struct stat st{};
  st.st_ino = ino;
  st.st_mode = n.mode;
  st.st_nlink = n.nlink;
  st.st_uid = n.uid;
  st.st_gid = n.gid;
  st.st_rdev = n.rdev;
  st.st_size = static_cast<off_t>(n.size);
  st.st_blksize = 4096;
  uint64_t stored = 0;
  for (const ExtentRecord& e : image_->Extents(ino)) stored += image_->chunks()[e.chunk].ulen;
  st.st_blocks = static_cast<blkcnt_t>((stored + 511) / 512);
  st.st_atim = {n.atime_sec, static_cast<long>(n.atime_nsec)};
  st.st_mtim = {n.mtime_sec, static_cast<long>(n.mtime_nsec)};
  st.st_ctim = {n.ctime_sec, static_cast<long>(n.ctime_nsec)};
  return st;
}

Result<uint64_t> ImageFs::Lookup(uint64_t parent, std::string_view name) const {
  if (!image_->IsValidIno(parent)) return Errno(ENOENT, "no inode");
  if (!S_ISDIR(image_->inode(parent).mode)) return Errno(ENOTDIR, "not a directory");
  if (name.size() > 255) return Errno(ENAMETOOLONG, "name too long");
  auto ino = image_->Lookup(parent, name);
  if (!ino) return NotFoundError("no such entry");
  return uint64_t{*ino};
}

Result<std::string_view> ImageFs::ReadLink(uint64_t ino) const {
  if (!image_->IsValidIno(ino)) return Errno(ENOENT, "no inode");
  if (!S_ISLNK(image_->inode(ino).mode)) return Errno(EINVAL, "not a symlink");
  return image_->SymlinkTarget(ino);
}

Result<ReadResult> ImageFs::Read(uint64_t ino, uint64_t offset, size_t size) {
  if (!image_->IsValidIno(ino)) return Errno(ENOENT, "no inode");
  const InodeRecord& n = image_->inode(ino);
  if (S_ISDIR(n.mode)) return Errno(EISDIR, "is a directory");
  if (!S_ISREG(n.mode)) return Errno(EINVAL, "not a regular file");
  ReadResult out;
  if (offset >= n.size) return out;
  uint64_t end = std::min<uint64_t>(n.size, offset + size);
  auto extents = image_->Extents(ino);
  // First extent that ends after `offset`.
  auto it = std::upper_bound(extents.begin(), extents.end(), offset,
                             [](uint64_t off, const ExtentRecord& e) { return off < e.file_offset; });
  if (it != extents.begin()) --it;
  uint64_t pos = offset;
  auto zeros = [&](uint64_t until) {
    while (pos < until) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(kZeroPage, until - pos));
      out.iov.push_back({const_cast<uint8_t*>(ZeroPage()), len});
      pos += len;
    }
  };
  auto first = it;
  if (first != extents.end() && first->file_offset + image_->chunks()[first->chunk].ulen <= offset) {
    ++first;
  }
  if (first != extents.end() && first->file_offset < end) PrefetchFrom(first->chunk, end - offset);
  for (; it != extents.end() && pos < end; ++it) {
    const ChunkRecord& c = image_->chunks()[it->chunk];
    uint64_t ext_end = it->file_offset + c.ulen;
    if (ext_end <= pos) continue;
    if (it->file_offset >= end) break;
    zeros(it->file_offset);
    chunkstore::ChunkLocation loc = image_->Chunk(it->chunk);
    auto data = chunks_->Read(loc);
    if (!data.ok()) {
      ++counters_.read_errors;
      log_("read error: inode " + std::to_string(ino) + " offset " + std::to_string(pos) +
           ": " + data.status().ToString());
      return data.status();
    }
    uint64_t from = pos - it->file_offset;
    uint64_t to = std::min(end, ext_end) - it->file_offset;
    out.iov.push_back({const_cast<uint8_t*>((*data)->data()) + from, static_cast<size_t>(to - from)});
    out.keep.push_back(std::move(*data));
    pos = it->file_offset + to;
  }
  zeros(end);
  out.bytes = static_cast<size_t>(end - offset);
  ++counters_.reads;
  counters_.read_bytes += out.bytes;
  return out;
}

// Chunks are numbered in the order the builder laid them out, which is pack
// order: the chunks after the one a read needs are the rest of the file and
// then the files next to it. One range read fetches the read's own chunks
// and a window beyond them; verification runs on the prefetch threads.
void ImageFs::PrefetchFrom(uint32_t first, uint64_t request_bytes) {
  constexpr uint64_t kWindowBytes = 1u << 20;
  constexpr size_t kMaxRun = 32;
  const auto chunks = image_->chunks();
  std::vector<chunkstore::ChunkLocation> run;
  uint64_t bytes = 0;
  bool any_missing = false;
  uint64_t next_offset = 0;
  for (uint32_t i = first; i < chunks.size() && run.size() < kMaxRun; ++i) {
    const ChunkRecord& c = chunks[i];
    if (!run.empty() && (c.pack != chunks[first].pack || c.pack_offset < next_offset)) break;
    if (bytes >= request_bytes + kWindowBytes) break;
    run.push_back(image_->Chunk(i));
    any_missing = any_missing || !chunks_->Present(run.back().digest);
    bytes += c.ulen;
    next_offset = c.pack_offset + c.clen;
  }
  if (any_missing) chunks_->Prefetch(std::move(run));
}

Result<std::string_view> ImageFs::GetXattr(uint64_t ino, std::string_view name) const {
  if (!image_->IsValidIno(ino)) return Errno(ENOENT, "no inode");
  auto xs = image_->Xattrs(ino);
  auto it = std::lower_bound(xs.begin(), xs.end(), name, [&](const XattrRecord& x, std::string_view n) {
    return image_->XattrName(x) < n;
  });
  if (it == xs.end() || image_->XattrName(*it) != name) return NotFoundError("no such xattr");
  return image_->XattrValue(*it);
}

Result<std::string> ImageFs::ListXattr(uint64_t ino) const {
  if (!image_->IsValidIno(ino)) return Errno(ENOENT, "no inode");
  std::string out;
  for (const XattrRecord& x : image_->Xattrs(ino)) {
    out.append(image_->XattrName(x));
    out.push_back('\0');
  }
  return out;
}

struct statvfs ImageFs::StatFs() const {
  struct statvfs s{};
  s.f_bsize = 4096;
  s.f_frsize = 4096;
  s.f_blocks = (total_bytes_ + 4095) / 4096;
  s.f_files = image_->inode_count();
  s.f_namemax = 255;
  s.f_flag = ST_RDONLY;
  return s;
}

Status ImageFs::Access(uint64_t ino, int mask, uid_t uid, gid_t gid) const {
  if (!image_->IsValidIno(ino)) return Errno(ENOENT, "no inode");
  if (mask & W_OK) return Errno(EROFS, "read-only filesystem");
  if (mask == F_OK || uid == 0) {
    if ((mask & X_OK) && uid == 0 && !S_ISDIR(image_->inode(ino).mode) &&
        (image_->inode(ino).mode & 0111) == 0) {
      return Errno(EACCES, "not executable");
    }
    return Status::Ok();
  }
  const InodeRecord& n = image_->inode(ino);
  int shift = uid == n.uid ? 6 : gid == n.gid ? 3 : 0;
  int allowed = (n.mode >> shift) & 7;
  if ((mask & allowed) != mask) return Errno(EACCES, "permission denied");
  return Status::Ok();
}

std::string ImageFs::StatsJson() const {
  auto cs = chunks_->stats();
  return "{\"reads\":" + std::to_string(counters_.reads.load()) +
         ",\"read_bytes\":" + std::to_string(counters_.read_bytes.load()) +
         ",\"read_errors\":" + std::to_string(counters_.read_errors.load()) +
         ",\"store_fetches\":" + std::to_string(cs.fetches) +
         ",\"store_bytes\":" + std::to_string(cs.fetched_bytes) +
         ",\"memory_hits\":" + std::to_string(cs.memory_hits) +
         ",\"corrupt_chunks\":" + std::to_string(cs.corrupt) +
         ",\"image_bytes\":" + std::to_string(total_bytes_) + "}";
}

}  // namespace ferry::fs
