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

ImageFs::ImageFs(std::unique_ptr<ImageReader> image, chunkstore::ChunkReader* chunks, Logger log,
                 chunkstore::CountersPtr fetch)
    : image_(std::move(image)),
      chunks_(chunks),
      log_(std::move(log)),
      fetch_(fetch != nullptr ? std::move(fetch) : std::make_shared<chunkstore::FetchCounters>()),
      reader_view_(chunks),
      planner_(*image_, &reader_view_, log_) {
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
  // What to fetch besides this read's bytes, decided before any is fetched.
  PrefetchPlanner::ReadPlan plan = planner_.PlanRead(ino, offset, end);
  for (; it != extents.end() && pos < end; ++it) {
    const ChunkRecord& c = image_->chunks()[it->chunk];
    uint64_t ext_end = it->file_offset + c.ulen;
    if (ext_end <= pos) continue;
    if (it->file_offset >= end) break;
    zeros(it->file_offset);
    if (ProfileRecorder* r = recorder_.load(std::memory_order_relaxed)) r->Note(it->chunk);
    chunkstore::ChunkLocation loc = image_->Chunk(it->chunk);
    // The first chunk a read needs is fetched with a few neighbours, so that
    // even a scattered read verifies a batch (and warms what is next to it).
    auto data = it == first ? chunks_->ReadWithNeighbours(loc, plan.neighbours, fetch_, std::move(plan.later))
                            : chunks_->Read(loc, fetch_);
    if (!data.ok()) {
      ++counters_.read_errors;
      log_("read error: inode " + std::to_string(ino) + " offset " + std::to_string(pos) +
           ": " + data.status().ToString());
      // Whatever went wrong below (a missing pack, a store that does not
      // answer, bytes that do not verify), the reader sees EIO.
      return Status(StatusCode::kIoError, data.status().ToString(), EIO);
    }
    uint64_t from = pos - it->file_offset;
    uint64_t to = std::min(end, ext_end) - it->file_offset;
    out.iov.push_back({const_cast<uint8_t*>((*data)->data()) + from, static_cast<size_t>(to - from)});
    out.keep.push_back(std::move(*data));
    pos = it->file_offset + to;
  }
  zeros(end);
  for (auto& run : plan.later) chunks_->Prefetch(std::move(run), fetch_);  // if `first` was not read
  out.bytes = static_cast<size_t>(end - offset);
  ++counters_.reads;
  counters_.read_bytes += out.bytes;
  return out;
}

bool ImageFs::ReplayProfile(const Profile& profile, bool fetching) {
  std::optional<PrefetchPlanner::Runs> runs = planner_.PlanReplay(profile, fetching);
  if (!runs.has_value()) return false;
  for (auto& run : *runs) chunks_->Prefetch(std::move(run), fetch_, /*keep=*/true);
  return true;
}

Result<uint64_t> ImageFs::Seek(uint64_t ino, uint64_t offset, int whence) const {
  if (!image_->IsValidIno(ino)) return Errno(ENOENT, "no inode");
  const InodeRecord& n = image_->inode(ino);
  if (!S_ISREG(n.mode)) return Errno(EINVAL, "not a regular file");
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return Errno(EINVAL, "unsupported whence");
  if (offset >= n.size) return Errno(ENXIO, "past end of file");
  auto extents = image_->Extents(ino);
  auto ulen = [&](const ExtentRecord& e) { return uint64_t{image_->chunks()[e.chunk].ulen}; };
  // First extent that ends after `offset`.
  auto it = std::partition_point(extents.begin(), extents.end(), [&](const ExtentRecord& e) {
    return e.file_offset + ulen(e) <= offset;
  });
  if (whence == SEEK_DATA) {
    if (it == extents.end()) return Errno(ENXIO, "no data after offset");
    return std::max(offset, it->file_offset);
  }
  if (it == extents.end() || it->file_offset > offset) return offset;  // already in a hole
  uint64_t end = it->file_offset + ulen(*it);
  for (++it; it != extents.end() && it->file_offset == end; ++it) end += ulen(*it);
  return std::min(end, n.size);
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
  const chunkstore::FetchCounters& f = *fetch_;
  return "{\"reads\":" + std::to_string(counters_.reads.load()) +
         ",\"read_bytes\":" + std::to_string(counters_.read_bytes.load()) +
         ",\"read_errors\":" + std::to_string(counters_.read_errors.load()) +
         ",\"store_fetches\":" + std::to_string(f.store_fetches.load()) +
         ",\"store_bytes\":" + std::to_string(f.store_bytes.load()) +
         ",\"memory_hits\":" + std::to_string(f.memory_hits.load()) +
         ",\"cache_hits\":" + std::to_string(f.cache_hits.load()) +
         ",\"cache_hit_bytes\":" + std::to_string(f.cache_hit_bytes.load()) +
         ",\"cache_misses\":" + std::to_string(f.cache_misses.load()) +
         ",\"demand_misses\":" + std::to_string(f.demand_misses.load()) +
         ",\"profile_chunks\":" + std::to_string(planner_.profile_chunks()) +
         ",\"locality_chunks\":" + std::to_string(planner_.locality_chunks()) +
         ",\"corrupt_chunks\":" + std::to_string(f.corrupt.load()) +
         ",\"image_bytes\":" + std::to_string(total_bytes_) + "}";
}

}  // namespace ferry::fs
