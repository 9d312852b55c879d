// Snapshots: a sandbox's filesystem, or one of its directories, made into a
// new image while the sandbox runs (issue 18; docs/daemon.md, "Snapshots").
//
// A writable target is an overlay of its base image's shared mount and a
// private upper directory (attachments.h). Its snapshot is built from
// those two, not from the merged view: the base image's tree with its
// chunks (not read, not fetched), with the upper directory applied on top
// with overlayfs's semantics (builder/overlay_source.cc). Only the files in
// the upper directory are read, so the cost is what the sandbox changed.
// A directory inside a target is the same tree cut down to that directory
// (ImageBuilder::KeepSubtree); a directory in no target is built like
// `ferry build DIR`, deduplicated against the store's chunks.
//
// The target is pinned (Attachments::PinContaining) for the whole
// snapshot, so it cannot be unmounted, and its upper directory removed,
// under it. A kept target (ferryd restarted since it was made) is
// snapshotted the same way: its upper directory and base image are all a
// snapshot needs.
//
// Consistency: with a freeze cgroup, the sandbox's processes are frozen
// (cgroup v2 cgroup.freeze) from before the upper directory is scanned
// until its changed files have been read; the image object and the ref are
// written after the thaw. Without one, a file written during the snapshot
// may be read part old, part new: the caller chose not to pause.
//
// Thread-safe: snapshots run concurrently (each its own builder and store
// handle).
#pragma once

#include <chrono>
#include <string>

#include "builder/image_builder.h"
#include "chunkstore/status.h"
#include "snapshotter/attachments.h"
#include "snapshotter/mounter.h"
#include "snapshotter/store_registry.h"

namespace ferry::snapshotter {

// The zstd level of a snapshot's new chunks. A snapshot is written once
// and read by every resume, and holds only what changed: on the pip-sized
// change of bench/snapshot.sh (6.4 MB of Python modules and extension
// modules) level 6 writes 2.17 MB where the build's level 1 writes 2.40 MB
// (tar | zstd -3 of the same files: 1.88 MB), for 30 ms more.
inline constexpr int kSnapshotZstdLevel = 6;

struct SnapshotSpec {
  std::string path;       // absolute; in `into`'s namespace if into.pid != 0
  std::string tag;        // the ref to publish
  std::string store_url;  // for a directory in no target only
  std::string freeze_cgroup;  // "": no pause
  std::chrono::milliseconds freeze_timeout{10000};
  int zstd_level = kSnapshotZstdLevel;  // for the new chunks
  ProcessNamespace into;  // mnt_ns filled in by the caller
};

struct SnapshotOutcome {
  builder::BuildSummary summary;
  std::string kind;           // "filesystem" (a writable target itself) or "directory"
  std::string base_image_id;  // "" for a plain directory
  std::string store_url;
  std::string target;         // "" for a plain directory
  std::string subdir;         // path relative to target
  double frozen_ms = 0;
  // The start-up profile inherited from the base (fs::CarryProfile): its
  // chunks (0: none), and whether it shares the base's start-up pack.
  uint64_t profile_chunks = 0;
  bool profile_pack = false;
};

class Snapshots {
 public:
  // Both must outlive this object. `open` opens the store to write to
  // (null: chunkstore::OpenObjectStore).
  Snapshots(Attachments* attachments, StoreOpener open);

  // Errors name the path: InvalidArgument (a relative path or bad tag),
  // NotFound (no such directory), FailedPrecondition (a read-only target
  // itself: it has no changes; a plain directory without a store), and
  // those of the store, the builder (a redirected overlay entry) and the
  // freeze. Nothing is published on failure.
  Result<SnapshotOutcome> Take(const SnapshotSpec& spec, const builder::ProgressSink& progress);

 private:
  Result<SnapshotOutcome> FromTarget(const SnapshotSpec& spec, const TargetInfo& target,
                                     const builder::ProgressSink& progress);
  Result<SnapshotOutcome> FromDirectory(const SnapshotSpec& spec,
                                        const builder::ProgressSink& progress);

  Attachments* const attachments_;
  StoreOpener open_;
};

}  // namespace ferry::snapshotter
