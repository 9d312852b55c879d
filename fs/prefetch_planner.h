// PrefetchPlanner: the prefetch policy of one mounted image, apart from the
// fetching.
//
// Given a read of a file, the planner says what to fetch besides the bytes
// asked for: the demand neighbours of the read's first chunk (fetched with
// it, one range read) and the runs to prefetch right after it (readahead in
// pack order; on a file's first read, locality: what the file loads, the
// rest of it, its directory's small files). Given a start-up profile, it
// says which range reads replay it. It fetches nothing itself: the caller
// (ImageFs) hands the plans to its ChunkReader. So the policy is testable
// without FUSE and without a store.
//
// The planner owns all prefetch state of the image: which chunks have been
// handed out (each at most once per planner: a chunk that leaves the
// memory cache later is read on demand, never prefetched again), which are
// in the start-up profile, the readahead window, and per file and
// directory what locality has seen. Every decision and constant of the
// policy, and the measurements behind them, are in prefetch_planner.cc.
//
// Thread-safe: reads of one image are planned concurrently; the state is
// atomic, so two concurrent plans never hand out one chunk twice (their
// readahead decisions may interleave, as the reads themselves do).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chunkstore/pack.h"
#include "fs/image_reader.h"
#include "fs/profile.h"

namespace ferry::fs {

// What the planner asks of the fetch path: whether a chunk is already on
// its way, and how long a run and how wide a gap one range read may have.
// ImageFs answers from its ChunkReader; tests answer from a set.
class FetchPathView {
 public:
  virtual ~FetchPathView() = default;
  // True if the chunk is in memory or being fetched (ChunkReader::Present).
  virtual bool Present(const Digest& digest) const = 0;
  // The longest prefetch run, in uncompressed bytes, and the widest gap in
  // a pack bridged to make one range read (PrefetchSettings).
  virtual uint64_t prefetch_run_bytes() const = 0;
  virtual uint64_t prefetch_gap_bytes() const = 0;
};

class PrefetchPlanner {
 public:
  // Prefetch runs, in the order they are to be queued. Each run is chunks
  // of one pack in ascending offset order: one range read.
  using Runs = std::vector<std::vector<chunkstore::ChunkLocation>>;
  using Logger = std::function<void(const std::string&)>;

  struct ReadPlan {
    // To fetch with the read's first chunk in one demand request
    // (ChunkReader::ReadWithNeighbours): the chunks that follow it in its
    // pack. Empty unless the first chunk missed.
    std::vector<chunkstore::ChunkLocation> neighbours;
    // To prefetch once the read's own request is queued, in this order.
    Runs later;
  };

  // `image` and `fetch` must outlive the planner; `log` notes profiles
  // that are not used.
  PrefetchPlanner(const ImageReader& image, const FetchPathView* fetch, Logger log);

  PrefetchPlanner(const PrefetchPlanner&) = delete;
  PrefetchPlanner& operator=(const PrefetchPlanner&) = delete;

  // The plan for a read of bytes [offset, end) of regular file `ino`
  // (offset < its size, offset <= end <= its size), made when the read starts; the chunks in it
  // are marked handed out. Empty when the read starts in a hole that it
  // does not leave, or when its first chunk is in the start-up profile (the
  // profile already knows what comes next). Asks the fetch path once
  // whether the first chunk is present (a miss) in every other case.
  ReadPlan PlanRead(uint64_t ino, uint64_t offset, uint64_t end);

  // The range reads that replay `profile` as prefetch, in the order to
  // queue them, and the chunks in them marked as the profile's (no
  // readahead for them) and handed out. A profile with a start-up pack is
  // read from that pack; `fetching`: the caller has already queued those
  // reads (PrefetchStartupPack), so only the bookkeeping is done and no
  // runs come back. nullopt (and a log line) for a version 3 profile whose
  // chunks are not this image's: nothing is marked.
  std::optional<Runs> PlanReplay(const Profile& profile, bool fetching);

  // Chunks handed out by profile replay (PlanReplay).
  uint64_t profile_chunks() const { return profile_chunks_; }
  // Chunks handed out by locality (files and directories fetched on a
  // first read).
  uint64_t locality_chunks() const { return locality_chunks_; }

 private:
  struct Window {
    uint64_t bytes;     // beyond the read's own request
    bool across_files;  // may run past the end of the file read
  };
  Window ReadaheadWindow(uint32_t first_chunk, uint32_t last_chunk, bool starts_file, bool ends_file,
                         bool by_loads);
  std::vector<chunkstore::ChunkLocation> DemandNeighbours(uint32_t chunk);
  // Up to chunk `limit` (inclusive).
  void PrefetchFrom(uint32_t first_chunk, uint64_t request_bytes, uint64_t window_bytes, uint32_t limit,
                    Runs* runs);
  // What the first read of file `ino` prefetches besides its own request;
  // `missed`: its first chunk was neither in memory nor in flight.
  void LocalityRuns(uint64_t ino, bool missed, Runs* runs);
  // The files `ino` loads, transitively (see prefetch_planner.cc).
  std::vector<uint32_t> LoadsClosure(uint64_t ino);
  // Appends `chunks` (ascending indices) not yet handed out, cut into runs
  // of one pack each (one range read), gaps of at most the fetch path's
  // prefetch_gap_bytes bridged, up to its prefetch_run_bytes. Each chunk
  // handed out is marked `mark` in prefetched_.
  void AppendRuns(const std::vector<uint32_t>& chunks, uint8_t mark, Runs* runs);
  // PlanReplay from the start-up pack, or from the image's packs.
  Runs ReplayFromStartupPack(const Profile& profile, bool fetching);
  Runs ReplayFromImagePacks(const Profile& profile);

  const ImageReader& image_;
  const FetchPathView* fetch_;
  Logger log_;
  std::atomic<uint64_t> profile_chunks_{0};
  std::atomic<uint32_t> next_chunk_{0};   // readahead: chunk after the last read
  std::atomic<uint64_t> window_{0};       // readahead: current window in bytes
  std::atomic<bool> prev_ended_file_{false};  // readahead: the last read reached its file's end
  std::atomic<bool> across_files_{false};     // readahead: streaming from file to file
  // Per chunk: 0, or how it was handed to prefetch (or claimed by a read).
  static constexpr uint8_t kHandedOut = 1;  // a read, its neighbours, readahead, a batch
  static constexpr uint8_t kByLoads = 2;    // as a file some read file loads (LOADS)
  std::unique_ptr<std::atomic<uint8_t>[]> prefetched_;
  std::unique_ptr<std::atomic<bool>[]> in_profile_;  // per chunk: in the start-up profile
  // Locality state, made on the first read: each inode's first directory,
  // whether a file has been read, and per directory how many of its files
  // have missed.
  std::once_flag locality_once_;
  std::vector<uint32_t> parent_;
  std::unique_ptr<std::atomic<bool>[]> file_read_;
  std::unique_ptr<std::atomic<bool>[]> loads_expanded_;  // its LOADS were followed
  std::unique_ptr<std::atomic<uint32_t>[]> dir_missed_;
  std::atomic<uint64_t> locality_chunks_{0};
};

}  // namespace ferry::fs
