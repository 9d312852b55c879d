// ImageFs: the read-only filesystem semantics of one image, without FUSE.
//
// Each call computes an answer (attributes, an inode, bytes, an xattr) or a
// Status; the FUSE server (fuse_server.cc) turns those into replies, and
// ErrnoFor() into errno, in one place. Reads fetch chunks through a
// ChunkReader, which verifies every chunk against its address: a chunk that
// fails is an error (EIO), never wrong bytes. Holes read as zeros without a
// fetch. Thread-safe.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "chunkstore/chunk_reader.h"
#include "fs/image_reader.h"
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
  bool ReplayProfile(const Profile& profile, bool fetching = false);
  void ReplayProfile(const std::vector<uint32_t>& chunks) { ReplayProfile(Profile{chunks, {}, {}, {}, {}}); }
  uint64_t profile_chunks() const { return profile_chunks_; }
  // Chunks handed to prefetch by locality (whole files and directories
  // fetched on a first read, see LocalityRuns).
  uint64_t locality_chunks() const { return locality_chunks_; }
  // What this image's reads cost in the fetch path (memory, node cache, store).
  const chunkstore::FetchCounters& fetch_counters() const { return *fetch_; }

 private:
  struct Window {
    uint64_t bytes;     // beyond the read's own request
    bool across_files;  // may run past the end of the file read
  };
  Window ReadaheadWindow(uint32_t first_chunk, uint32_t last_chunk, bool starts_file, bool ends_file,
                         bool by_loads);
  std::vector<chunkstore::ChunkLocation> DemandNeighbours(uint32_t chunk);
  using Runs = std::vector<std::vector<chunkstore::ChunkLocation>>;
  // Up to chunk `limit` (inclusive).
  void PrefetchFrom(uint32_t first_chunk, uint64_t request_bytes, uint64_t window_bytes, uint32_t limit,
                    Runs* runs);
  // What the first read of file `ino` prefetches besides its own request;
  // `missed`: its first chunk was neither in memory nor in flight.
  void LocalityRuns(uint64_t ino, bool missed, Runs* runs);
  // The files `ino` loads, transitively (see image_fs.cc).
  std::vector<uint32_t> LoadsClosure(uint64_t ino);
  // Appends `chunks` (ascending indices) not yet handed to prefetch, cut
  // into runs of one pack each (one range read), gaps of at most the
  // reader's prefetch_gap_bytes bridged, up to its prefetch_run_bytes.
  // Each chunk handed out is marked `mark` in prefetched_.
  void AppendRuns(const std::vector<uint32_t>& chunks, uint8_t mark, Runs* runs);

  std::unique_ptr<ImageReader> image_;
  chunkstore::ChunkReader* chunks_;
  Logger log_;
  FsCounters counters_;
  chunkstore::CountersPtr fetch_;
  std::atomic<ProfileRecorder*> recorder_{nullptr};
  std::atomic<uint64_t> profile_chunks_{0};
  uint64_t total_bytes_ = 0;
  std::atomic<uint32_t> next_chunk_{0};   // readahead: chunk after the last read
  std::atomic<uint64_t> window_{0};       // readahead: current window in bytes
  std::atomic<bool> prev_ended_file_{false};  // readahead: the last read reached its file's end
  std::atomic<bool> across_files_{false};     // readahead: streaming from file to file
  // Per chunk: 0, or how it was handed to prefetch (or claimed by a read).
  static constexpr uint8_t kHandedOut = 1;  // a read, its neighbours, readahead, a batch
  static constexpr uint8_t kByLoads = 2;    // as a file some read file loads (LOADS)
  std::unique_ptr<std::atomic<uint8_t>[]> prefetched_;
  std::unique_ptr<std::atomic<bool>[]> in_profile_;     // per chunk: in the start-up profile
  // Locality state, made on the first read: each inode's first directory,
  // whether a file has been
  // read, and per directory how many of its files have missed.
  std::once_flag locality_once_;
  std::vector<uint32_t> parent_;
  std::unique_ptr<std::atomic<bool>[]> file_read_;
  std::unique_ptr<std::atomic<bool>[]> loads_expanded_;  // its LOADS were followed
  std::unique_ptr<std::atomic<uint32_t>[]> dir_missed_;
  std::atomic<uint64_t> locality_chunks_{0};
};

}  // namespace ferry::fs
