// ImageFs: the read-only filesystem semantics of one image, without FUSE.
//
// Each call computes an answer (attributes, an inode, bytes, an xattr) or a
// Status; the FUSE server (fuse_server.cc) turns those into replies, and
// ErrnoFor() into errno, in one place. Reads fetch chunks through a
// ChunkReader, which verifies every chunk against its address: a chunk that
// fails is an error (EIO), never wrong bytes. Holes read as zeros without a
// fetch. What a read fetches besides its own bytes (neighbours, readahead,
// locality, profile replay) is its PrefetchPlanner's decision; ImageFs only
// hands the plans to the ChunkReader. Thread-safe.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chunkstore/chunk_reader.h"
#include "fs/image_reader.h"
#include "fs/prefetch_planner.h"
#include "fs/profile.h"

namespace ferry::fs {

// Maps a Status to the errno a filesystem call should fail with.
int ErrnoFor(const Status& status);

// A read's answer: iovecs that point into `keep` (chunk buffers) or into a
// static zero page, valid while the ReadResult lives.
struct ReadResult {
  std::vector<struct iovec> iov;
  std::vector<chunkstore::ChunkData> keep;
  size_t bytes = 0;
};

struct FsCounters {
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> read_bytes{0};
  std::atomic<uint64_t> read_errors{0};  // reads answered with EIO
};

class ImageFs {
 public:
  using Logger = std::function<void(const std::string&)>;
  // `fetch` counts this image's store traffic (a new set if null; a caller
  // that starts fetching for the image before it exists passes its own).
  ImageFs(std::unique_ptr<ImageReader> image, chunkstore::ChunkReader* chunks, Logger log,
          chunkstore::CountersPtr fetch = nullptr);

  const ImageReader& image() const { return *image_; }

  // ENOENT for an inode number the image does not have.
  Result<struct stat> GetAttr(uint64_t ino) const;
  // The child's inode; NotFound if absent, ENOTDIR if `parent` is not a dir.
  Result<uint64_t> Lookup(uint64_t parent, std::string_view name) const;
  Result<std::string_view> ReadLink(uint64_t ino) const;
  // Up to `size` bytes at `offset` (short at end of file).
  Result<ReadResult> Read(uint64_t ino, uint64_t offset, size_t size);
  // lseek(2) SEEK_DATA / SEEK_HOLE over the file's extents (ENXIO past the
  // end or when no data follows).
  Result<uint64_t> Seek(uint64_t ino, uint64_t offset, int whence) const;
  // kNotFound when the attribute does not exist (ENODATA).
  Result<std::string_view> GetXattr(uint64_t ino, std::string_view name) const;
  // NUL-separated names, as listxattr(2) returns them.
  Result<std::string> ListXattr(uint64_t ino) const;
  struct statvfs StatFs() const;
  // Permission check for access(2): W_OK is always EROFS.
  Status Access(uint64_t ino, int mask, uid_t uid, gid_t gid) const;

  // "reads=... bytes=... fetches=..." for `ferry stats`.
  std::string StatsJson() const;
  FsCounters& counters() { return counters_; }
  // While set, every chunk a read touches is noted, in order (a profile
  // being recorded). The recorder must outlive its use.
  void SetRecorder(ProfileRecorder* recorder) { recorder_.store(recorder); }
  // Queues a start-up profile as prefetch: its chunks in order, neighbours
  // in one pack fetched together; demand reads still go first. A profile
  // with a start-up pack is read from that pack, in long sequential reads.
  // `fetching`: the caller has already queued the start-up pack's chunks
  // (PrefetchStartupPack); only the bookkeeping is done here. A version 3
  // profile whose chunks are not this image's is ignored (false, logged).
  // The plan is PrefetchPlanner::PlanReplay's.
  bool ReplayProfile(const Profile& profile, bool fetching = false);
  void ReplayProfile(const std::vector<uint32_t>& chunks) { ReplayProfile(Profile{chunks, {}, {}, {}, {}}); }
  // Chunks handed to prefetch by profile replay.
  uint64_t profile_chunks() const { return planner_.profile_chunks(); }
  // Chunks handed to prefetch by locality (whole files and directories
  // fetched on a first read, see PrefetchPlanner).
  uint64_t locality_chunks() const { return planner_.locality_chunks(); }
  // What this image's reads cost in the fetch path (memory, node cache, store).
  const chunkstore::FetchCounters& fetch_counters() const { return *fetch_; }

 private:
  // The planner's view of the fetch path: this image's ChunkReader.
  class ReaderView final : public FetchPathView {
   public:
    explicit ReaderView(const chunkstore::ChunkReader* reader) : reader_(reader) {}
    bool Present(const Digest& digest) const override { return reader_->Present(digest); }
    uint64_t prefetch_run_bytes() const override { return reader_->prefetch_run_bytes(); }
    uint64_t prefetch_gap_bytes() const override { return reader_->prefetch_gap_bytes(); }

   private:
    const chunkstore::ChunkReader* reader_;
  };

  std::unique_ptr<ImageReader> image_;
  chunkstore::ChunkReader* chunks_;
  Logger log_;
  FsCounters counters_;
  chunkstore::CountersPtr fetch_;
  std::atomic<ProfileRecorder*> recorder_{nullptr};
  uint64_t total_bytes_ = 0;
  ReaderView reader_view_;
  PrefetchPlanner planner_;  // after image_ and reader_view_, which it uses
};

}  // namespace ferry::fs
