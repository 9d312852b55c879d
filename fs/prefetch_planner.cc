#include "fs/prefetch_planner.h"

#include <sys/stat.h>

#include <algorithm>

#include "fs/image_walk.h"

namespace ferry::fs {

PrefetchPlanner::PrefetchPlanner(const ImageReader& image, const FetchPathView* fetch, Logger log)
    : image_(image),
      fetch_(fetch),
      log_(std::move(log)),
      prefetched_(new std::atomic<uint8_t>[image.chunks().size()]()),
      in_profile_(new std::atomic<bool>[image.chunks().size()]()) {}

PrefetchPlanner::ReadPlan PrefetchPlanner::PlanRead(uint64_t ino, uint64_t offset, uint64_t end) {
  ReadPlan plan;
  const auto extents = image_.Extents(ino);
  // The first extent that ends after `offset` (the read's first chunk, as
  // ImageFs::Read finds it).
  auto first = std::upper_bound(extents.begin(), extents.end(), offset,
                                [](uint64_t off, const ExtentRecord& e) { return off < e.file_offset; });
  if (first != extents.begin()) --first;
  if (first != extents.end() && first->file_offset + image_.chunks()[first->chunk].ulen <= offset) {
    ++first;
  }
  // A chunk of the start-up profile is already on its way, and the profile
  // knows better than any heuristic what comes next: no readahead for it.
  const bool profiled = first != extents.end() && in_profile_[first->chunk].load(std::memory_order_relaxed);
  if (first == extents.end() || first->file_offset >= end || profiled) return plan;
  // Claim the demand run before the readahead window is handed out.
  const bool missed = !fetch_->Present(image_.Chunk(first->chunk).digest);
  const bool by_loads = prefetched_[first->chunk].load(std::memory_order_relaxed) == kByLoads;
  if (missed) {
    prefetched_[first->chunk].store(kHandedOut, std::memory_order_relaxed);
    plan.neighbours = DemandNeighbours(first->chunk);
  }
  LocalityRuns(ino, missed, &plan.later);
  // The last chunk this read touches.
  auto last = std::lower_bound(first, extents.end(), end,
                               [](const ExtentRecord& e, uint64_t off) { return e.file_offset < off; });
  uint32_t last_chunk = (last == first ? first : last - 1)->chunk;
  Window w = ReadaheadWindow(first->chunk, last_chunk, first == extents.begin(),
                             end == image_.inode(ino).size, by_loads);
  PrefetchFrom(first->chunk, end - offset, w.bytes, w.across_files ? UINT32_MAX : extents.back().chunk,
               &plan.later);
  return plan;
}

// Chunks are numbered in the order the builder laid them out, which is pack
// order: the chunks after the one a read needs are the rest of the file and
// then the files next to it. The reading thread fetches its first chunk
// itself; the rest of the request and a window beyond it go to the prefetch
// threads in runs of neighbouring chunks (one range read each), so that
// decompression and verification use every core.
// Readahead in pack order: a read whose first chunk follows closely on the
// chunks the previous reads used is streaming through the image (a copy, a
// scan): its window doubles up to 4 MiB. The window stops at the end of the
// file read, unless the reads have gone from the end of one file straight
// into the start of the next (a copy of a tree): a program reading one big
// file from front to back says nothing about the files after it. Any other
// read gets no window beyond its own request, so scattered reads (a program
// start-up) do not fetch and verify what nobody asked for; nor does a read
// of a file that came as one that another file loads (LOADS): a module's
// imports read one after another lie next to each other in the pack, but
// they were fetched because they are imported, not because they are next.
// bench/coldstart.sh (b) at 20 ms / 100 MB/s, 7 interleaved runs: 17.7 ->
// 11.4 MB fetched, the same time (0.77 s; 5 -> 9 demand misses, 94 -> 87
// requests); file:// python3 start 15.4 -> 12.7 MB, 0.254 -> 0.248 s (9
// runs); read-all 1.58 -> 1.46 s (5 runs).
std::vector<chunkstore::ChunkLocation> PrefetchPlanner::DemandNeighbours(uint32_t chunk) {
  constexpr uint64_t kDemandRunBytes = 128u << 10;
  constexpr size_t kMaxNeighbours = 15;
  const auto chunks = image_.chunks();
  std::vector<chunkstore::ChunkLocation> out;
  uint64_t bytes = chunks[chunk].ulen;
  uint64_t next_offset = chunks[chunk].pack_offset + chunks[chunk].clen;
  for (uint32_t i = chunk + 1; i < chunks.size() && out.size() < kMaxNeighbours &&
                               bytes + chunks[i].ulen <= kDemandRunBytes; ++i) {
    const ChunkRecord& c = chunks[i];
    if (c.pack != chunks[chunk].pack || c.pack_offset < next_offset) break;
    if (prefetched_[i].exchange(kHandedOut, std::memory_order_relaxed) != 0) break;
    out.push_back(image_.Chunk(i));
    bytes += c.ulen;
    next_offset = c.pack_offset + c.clen;
  }
  return out;
}

PrefetchPlanner::Window PrefetchPlanner::ReadaheadWindow(uint32_t first_chunk, uint32_t last_chunk, bool starts_file,
                                         bool ends_file, bool by_loads) {
  constexpr uint64_t kMinWindow = 256u << 10, kMaxWindow = 4u << 20;
  uint32_t prev_end = next_chunk_.exchange(last_chunk + 1, std::memory_order_relaxed);
  bool prev_ended_file = prev_ended_file_.exchange(ends_file, std::memory_order_relaxed);
  bool streaming = !by_loads && first_chunk + 1 >= prev_end && first_chunk <= prev_end + 8;
  bool across = across_files_.load(std::memory_order_relaxed);
  if (!streaming) {
    across = false;
  } else if (starts_file && prev_ended_file && first_chunk >= prev_end) {
    across = true;  // from the end of one file straight into the next
  }
  across_files_.store(across, std::memory_order_relaxed);
  uint64_t window = window_.load(std::memory_order_relaxed);
  window = streaming ? std::clamp<uint64_t>(window * 2, kMinWindow, kMaxWindow) : 0;
  window_.store(window, std::memory_order_relaxed);
  return {window, across};
}

void PrefetchPlanner::PrefetchFrom(uint32_t first, uint64_t request_bytes, uint64_t window_bytes, uint32_t limit,
                           Runs* runs) {
  const auto chunks = image_.chunks();
  std::vector<chunkstore::ChunkLocation> run;
  uint64_t run_bytes = 0, total = chunks[first].ulen;
  uint64_t next_offset = chunks[first].pack_offset + chunks[first].clen;
  auto flush = [&] {
    if (!run.empty()) runs->push_back(std::move(run));
    run.clear();
    run_bytes = 0;
  };
  const uint64_t max_run = fetch_->prefetch_run_bytes();
  for (uint32_t i = first + 1; i < chunks.size() && i <= limit; ++i) {
    // Past the window, only finish the run already started: issuing at
    // least a full run at a time keeps batches large as the window slides.
    if (total >= request_bytes + window_bytes && (run.empty() || run_bytes >= max_run)) break;
    const ChunkRecord& c = chunks[i];
    if (c.pack != chunks[first].pack || c.pack_offset < next_offset) break;
    total += c.ulen;
    next_offset = c.pack_offset + c.clen;
    // Each chunk is handed to prefetch once; a chunk that later leaves the
    // memory cache is fetched on demand instead.
    if (prefetched_[i].exchange(kHandedOut, std::memory_order_relaxed) != 0) {
      flush();  // keep runs contiguous
      continue;
    }
    run.push_back(image_.Chunk(i));
    run_bytes += c.ulen;
    if (run_bytes >= max_run) flush();
  }
  flush();
}

// Locality, for images without a start-up profile (or reads outside it).
// A program that reads one part of a file mostly goes on to read more of it
// (the loader mapping a library, an interpreter loading a module), and one
// that reads two files of a directory mostly reads more of its neighbours
// (a package's modules, a locale's files). So on a file's first read the
// rest of the file is prefetched (files up to kWholeFile), with the files a
// program loads when it runs (its interpreter and libraries, which the
// builder found in its ELF headers, and the small files they open by a
// name spelled out in their read-only data) or the modules a Python module
// imports, and what those load and import in turn (LoadsClosure), and when a
// second file of one directory misses, the directory's other small files
// are (up to kDirBatch in all). A directory where only one file is read
// (/usr/bin for an interpreter, a folder of plugins) costs nothing extra.
// ELF programs and libraries (files with EARLY records) are left out of
// directory batches: a program's first miss brings what it loads, and one
// library is no sign that its neighbours in /usr/lib will be loaded. Python
// modules stay in: a package may import its modules by computed names
// (encodings), which no import statement records.
// The ranges of an ELF file that its loader touches as soon as it maps it
// (EARLY: dynamic linking tables, the writable segment) go first, widened
// by kReadAround on each side: a page fault there makes the kernel read
// 128 KiB around the faulting page, and the read must be served whole.
// A first read that finds its chunk already fetched (it came along with a
// neighbour's read or a directory batch) counts too, except towards the
// directory's misses: a module opened that way still brings the libraries
// it loads and the rest of itself (bench/coldstart.sh (b): 19 -> 17 demand
// misses of 25-30 ms each at 20 ms a request, the same bytes fetched).
// The chunks go out in runs of one pack (bridging gaps up to the reader's
// prefetch_gap_bytes), after the read's own request, in this order: the
// file's early ranges, its libraries' early ranges, its libraries, the
// rest of the file, its directory.
// bench/coldstart.sh measures the effect (demand misses, bytes): with
// Python imports followed, (b) at 20 ms / 100 MB/s went from 13 to 7
// demand misses and 18.3 to 16.8 MB fetched (7 interleaved runs).
void PrefetchPlanner::LocalityRuns(uint64_t ino, bool missed, Runs* runs) {
  constexpr uint64_t kWholeFile = 8u << 20, kSmallFile = 256u << 10, kDirBatch = 8u << 20;
  constexpr uint64_t kReadAround = 64u << 10;
  constexpr uint32_t kDirTrigger = 2;
  std::call_once(locality_once_, [this] {
    parent_ = FirstParents(image_);
    file_read_.reset(new std::atomic<bool>[parent_.size()]());
    loads_expanded_.reset(new std::atomic<bool>[parent_.size()]());
    dir_missed_.reset(new std::atomic<uint32_t>[parent_.size()]());
  });
  if (file_read_[ino - 1].exchange(true, std::memory_order_relaxed)) return;
  // In the order they go out: the file's early ranges and those of what it
  // loads (the loader touches them before any code runs), what it loads
  // (opened before the program's own code runs), the rest of the file, its
  // directory.
  std::vector<uint32_t> early, loads_early, loads, file, dir_batch;
  auto add_file = [&](uint64_t f, std::vector<uint32_t>* batch) {
    if (image_.inode(f).size > kWholeFile) return;
    for (const ExtentRecord& e : image_.Extents(f)) batch->push_back(e.chunk);
  };
  // Early ranges are fetched for files of any size, up to kWholeFile each.
  auto add_early = [&](uint64_t f, std::vector<uint32_t>* batch) {
    const auto chunks = image_.chunks();
    const auto extents = image_.Extents(f);
    const uint64_t size = image_.inode(f).size;
    uint64_t bytes = 0;
    for (const EarlyRecord& r : image_.Early(f)) {
      uint64_t lo = r.offset > kReadAround ? r.offset - kReadAround : 0;
      uint64_t hi = std::min(size, r.offset + r.length + kReadAround);
      auto it = std::upper_bound(extents.begin(), extents.end(), lo,
                                 [](uint64_t off, const ExtentRecord& e) { return off < e.file_offset; });
      if (it != extents.begin()) --it;
      for (; it != extents.end() && it->file_offset < hi && bytes < kWholeFile; ++it) {
        if (it->file_offset + chunks[it->chunk].ulen <= lo) continue;
        batch->push_back(it->chunk);
        bytes += chunks[it->chunk].ulen;
      }
    }
  };
  add_early(ino, &early);
  for (uint32_t dep : LoadsClosure(ino)) {
    add_early(dep, &loads_early);
    add_file(dep, &loads);
  }
  add_file(ino, &file);
  uint32_t dir = parent_[ino - 1];
  if (missed && dir != 0 && dir_missed_[dir - 1].fetch_add(1, std::memory_order_relaxed) + 1 == kDirTrigger) {
    uint64_t bytes = 0;
    for (const DirentRecord& d : image_.Dirents(dir)) {
      const InodeRecord& n = image_.inode(d.ino);
      if (!S_ISREG(n.mode) || n.size > kSmallFile || d.ino == ino) continue;
      if (!image_.Early(d.ino).empty()) continue;  // ELF programs and libraries
      if (bytes + n.size > kDirBatch) break;
      bytes += n.size;
      add_file(d.ino, &dir_batch);
    }
  }
  size_t before = runs->size();
  for (auto* batch : {&early, &loads_early, &loads, &file, &dir_batch}) {
    std::sort(batch->begin(), batch->end());
    batch->erase(std::unique(batch->begin(), batch->end()), batch->end());
    // A chunk already handed out is skipped.
    AppendRuns(*batch, batch == &loads_early || batch == &loads ? kByLoads : kHandedOut, runs);
  }
  for (size_t r = before; r < runs->size(); ++r) locality_chunks_ += (*runs)[r].size();
}

// What a file loads (LOADS), and what those load in turn, depth first in
// record order, each file once per mount: a program's libraries (already
// closed by the builder), a Python module's imports and theirs. A file
// whose records were followed once (read, or reached from another) is not
// followed again, so each import tree is walked once however many
// modules share it. At most kMaxClosureFiles files and kMaxClosureBytes.
std::vector<uint32_t> PrefetchPlanner::LoadsClosure(uint64_t ino) {
  constexpr size_t kMaxClosureFiles = 512;
  constexpr uint64_t kMaxClosureBytes = 64u << 20;
  std::vector<uint32_t> out, stack;
  if (loads_expanded_[ino - 1].exchange(true, std::memory_order_relaxed)) return out;
  auto push = [&](uint64_t f) {
    auto loads = image_.Loads(f);
    for (auto it = loads.rbegin(); it != loads.rend(); ++it) stack.push_back(it->dep);
  };
  push(ino);
  uint64_t bytes = 0;
  while (!stack.empty() && out.size() < kMaxClosureFiles && bytes < kMaxClosureBytes) {
    uint32_t dep = stack.back();
    stack.pop_back();
    if (!image_.IsValidIno(dep) || loads_expanded_[dep - 1].exchange(true, std::memory_order_relaxed)) continue;
    out.push_back(dep);
    bytes += image_.inode(dep).size;
    push(dep);
  }
  return out;
}

void PrefetchPlanner::AppendRuns(const std::vector<uint32_t>& batch, uint8_t mark, Runs* runs) {
  const auto chunks = image_.chunks();
  std::vector<chunkstore::ChunkLocation> run;
  uint64_t run_bytes = 0, next_offset = 0;
  uint32_t prev = 0;
  for (uint32_t i : batch) {
    if (prefetched_[i].exchange(mark, std::memory_order_relaxed) != 0) continue;
    const ChunkRecord& c = chunks[i];
    bool joins = !run.empty() && c.pack == chunks[prev].pack && c.pack_offset >= next_offset &&
                 c.pack_offset - next_offset <= fetch_->prefetch_gap_bytes() &&
                 run_bytes < fetch_->prefetch_run_bytes();
    if (!joins && !run.empty()) {
      runs->push_back(std::move(run));
      run.clear();
      run_bytes = 0;
    }
    run.push_back(image_.Chunk(i));
    run_bytes += c.ulen;
    next_offset = c.pack_offset + c.clen;
    prev = i;
  }
  if (!run.empty()) runs->push_back(std::move(run));
}

// The profile's chunks are grouped into range reads by where they lie in
// their packs (neighbours up to kGap apart share one read; the gap bytes
// are read and dropped), and the reads are queued in the order the
// workload first needed one of their chunks. A read is usable only once all
// of it has arrived, so the profile's first MiB goes out in reads of at most
// 256 KiB: the workload starts after one short transfer, not a 4 MiB one
// (the image and store of bench/coldstart.sh at 20 ms / 100 MB/s: first
// read 120-160 ms -> 15-50 ms; workload 0.35 -> 0.32 s, median of 6).
//
// With a start-up pack the chunks lie back to back in profile order, so the
// runs are simply consecutive stretches of the pack, cut the same way
// (StartupPackRuns).
std::optional<PrefetchPlanner::Runs> PrefetchPlanner::PlanReplay(const Profile& profile, bool fetching) {
  if (std::string why = MismatchWithImage(profile, image_.chunks()); !why.empty()) {
    log_("profile: ignored, not this image's: " + why);
    return std::nullopt;
  }
  if (profile.pack.has_value() && profile.clens.size() == profile.chunks.size()) {
    // A frame longer than zstd can make of its chunk is a damaged profile:
    // the image's own packs are used instead.
    const auto chunks = image_.chunks();
    bool sane = true;
    for (size_t pos = 0; pos < profile.chunks.size() && sane; ++pos) {
      uint64_t ulen = chunks[profile.chunks[pos]].ulen;
      sane = ulen > 0 && profile.clens[pos] <= ulen + (ulen >> 7) + 1024;
    }
    if (sane) return ReplayFromStartupPack(profile, fetching);
    log_("profile: its start-up pack " + profile.pack->Short() +
         " lists a frame too long for its chunk; reading the image's packs instead");
  }
  return ReplayFromImagePacks(profile);
}

PrefetchPlanner::Runs PrefetchPlanner::ReplayFromStartupPack(const Profile& profile, bool fetching) {
  const std::vector<uint32_t>& order = profile.chunks;
  std::vector<chunkstore::ChunkLocation> frames;
  uint64_t offset = 0;
  for (size_t pos = 0; pos < order.size(); ++pos) {
    const uint32_t i = order[pos];
    chunkstore::ChunkLocation loc = image_.Chunk(i);
    loc.pack = *profile.pack;
    loc.startup = true;
    loc.offset = offset;
    loc.clen = profile.clens[pos];
    offset += loc.clen;
    if (prefetched_[i].exchange(kHandedOut, std::memory_order_relaxed) != 0) continue;
    in_profile_[i].store(true, std::memory_order_relaxed);
    ++profile_chunks_;
    frames.push_back(loc);
  }
  if (fetching) return {};
  return StartupPackRuns(std::move(frames));
}

PrefetchPlanner::Runs PrefetchPlanner::ReplayFromImagePacks(const Profile& profile) {
  constexpr uint64_t kRunBytes = 4u << 20, kGap = 128u << 10;
  constexpr uint64_t kEarlyBytes = 1u << 20, kEarlyRunBytes = 256u << 10;
  const auto chunks = image_.chunks();
  const std::vector<uint32_t>& order = profile.chunks;
  std::vector<std::pair<uint32_t, uint32_t>> by_place;  // (chunk, position in the profile)
  uint32_t early_end = 0;  // profile positions before this are in its first MiB
  uint64_t seen = 0;
  for (uint32_t pos = 0; pos < order.size(); ++pos) {
    uint32_t i = order[pos];
    if (i >= chunks.size() || prefetched_[i].exchange(kHandedOut, std::memory_order_relaxed) != 0) continue;
    in_profile_[i].store(true, std::memory_order_relaxed);
    by_place.emplace_back(i, pos);
    ++profile_chunks_;
    if (seen < kEarlyBytes) early_end = pos + 1;
    seen += chunks[i].ulen;
  }
  std::sort(by_place.begin(), by_place.end(), [&](const auto& a, const auto& b) {
    const ChunkRecord &x = chunks[a.first], &y = chunks[b.first];
    return x.pack != y.pack ? x.pack < y.pack : x.pack_offset < y.pack_offset;
  });
  std::vector<std::pair<uint32_t, std::vector<chunkstore::ChunkLocation>>> runs;  // (first use, run)
  uint64_t run_bytes = 0, run_end = 0;
  uint32_t run_pack = 0;
  for (const auto& [i, pos] : by_place) {
    const ChunkRecord& c = chunks[i];
    uint64_t cap =
        !runs.empty() && std::min(runs.back().first, pos) < early_end ? kEarlyRunBytes : kRunBytes;
    bool joins = !runs.empty() && run_pack == c.pack && c.pack_offset >= run_end &&
                 c.pack_offset - run_end <= kGap && run_bytes + c.ulen <= cap;
    if (!joins) {
      runs.emplace_back(pos, std::vector<chunkstore::ChunkLocation>{});
      run_bytes = 0;
    }
    runs.back().first = std::min(runs.back().first, pos);
    runs.back().second.push_back(image_.Chunk(i));
    run_bytes += c.ulen;
    run_end = c.pack_offset + c.clen;
    run_pack = c.pack;
  }
  std::stable_sort(runs.begin(), runs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  Runs out;
  out.reserve(runs.size());
  for (auto& [pos, run] : runs) out.push_back(std::move(run));
  return out;
}

}  // namespace ferry::fs
