// MountManager: what ferryd mounts, composed of its parts.
//
//   image_sessions.h  one shared, reference-counted, read-only FUSE session
//                     per image (ROOT/mnt/<id>.<n>), over one ChunkReader per
//                     store (store_registry.h), loaded by image_loading.h
//   attachments.h     the targets users see: a read-only bind of a session's
//                     mount, or a writable overlay with a private upper
//                     directory (ROOT/sandboxes/), saved in ROOT/mounts.json,
//                     made through a Mounter (mounter.h)
//
// A Mount acquires a reference to the image's session and attaches the
// target to it; an Unmount detaches the target and releases the reference.
// Needs root (bind and overlay mounts, FUSE) unless the options put fakes in.
//
//   snapshots.h       filesystem and directory snapshots: a target's base
//                     image plus its upper directory (pinned meanwhile) made
//                     into a new image in the store
//
// containerd's snapshots (containerd_snapshots.h) are a part beside these
// with their own keys, parents and saved state; they take references to
// image sessions through AcquireImage/ReleaseImage and find images by OCI
// chain ID through FindChain. This class only composes the parts for
// ferryd's API.
//
// Thread-safe. Lock order: MountManager holds no lock of its own, and
// Attachments::mu_, ImageSessions::mu_ and StoreRegistry::mu_ are leaves
// (none is taken while another is held). The read path takes none of them.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "chunkstore/node_cache.h"
#include "snapshotter/attachments.h"
#include "snapshotter/image_sessions.h"
#include "snapshotter/mounter.h"
#include "snapshotter/snapshots.h"
#include "snapshotter/store_registry.h"

namespace ferry::snapshotter {

struct MountManagerOptions {
  std::string root;                          // absolute; no ',' or ':'
  chunkstore::ChunkCache* node_cache = nullptr;  // outlives the manager
  size_t memory_cache_bytes = 64u << 20;     // per store, shared by its images
  unsigned fuse_threads = 8;                 // per image
  unsigned fetch_threads = 32;               // store requests in parallel, per store
  unsigned prefetch_threads = 0;             // and for prefetch (0: chosen by the store)
  std::chrono::milliseconds fetch_deadline{30000};  // a read fails (EIO) after this
  // Tests only: fakes for what needs root or a real store. Null: the real ones
  // (NewSystemMounter, FUSE, chunkstore::OpenObjectStore).
  std::shared_ptr<Mounter> mounter;
  ImageServerFactory new_server;
  StoreOpener open_store;
};

struct MountOutcome {
  std::string image_id;
  bool shared = false;   // the image's FUSE session already existed
  bool resumed = false;  // a kept target's upper directory was mounted again
};

class MountManager {
 public:
  // Removes what an earlier daemon on `opt.root` left mounted, then starts
  // with no mounts.
  static Result<std::unique_ptr<MountManager>> Create(MountManagerOptions opt);
  ~MountManager();  // Shutdown()

  // `target` must be an absolute path to an existing directory that is not
  // already a target. NotFound for an unknown image; the image's metadata
  // is verified before anything is mounted. A slow store delays only the
  // mounts of its images. A kept target (attachments.h) is resumed by a
  // writable mount of its image, and refused otherwise.
  Result<MountOutcome> Mount(const std::string& store_url, const std::string& image,
                             const std::string& target, bool writable);
  // FailedPrecondition if the target is busy (unless `lazy`); NotFound if it
  // is not a target of this daemon. Returns whether the session ended.
  Result<bool> Unmount(const std::string& target, bool lazy, std::string* image_id);
  // Mount and Unmount inside the mount namespace of the running process
  // `pid` (a sandbox), at `target` as it sees it (below its root), without
  // restarting it; `target` is created there if missing. NotFound if the
  // process is gone (checked before the store is read);
  // FailedPrecondition if `target` is not a directory there or cannot be
  // created (a read-only parent). On failure nothing is mounted, neither
  // here nor there. UnmountInto also finds a target whose process is gone
  // (by its pid), and then only forgets it.
  Result<MountOutcome> MountInto(const std::string& store_url, const std::string& image,
                                 pid_t pid, const std::string& target, bool writable);
  Result<bool> UnmountInto(pid_t pid, const std::string& target, bool lazy,
                           std::string* image_id);
  // Recording a start-up profile on a mounted image (fs/profile.h). Stop
  // stores it in the image's store; returns the image id, chunk count and
  // bytes. FailedPrecondition if not recording (or, for Start, already).
  Result<std::string> StartProfile(const std::string& target);
  Result<std::tuple<std::string, uint64_t, uint64_t>> StopProfile(const std::string& target);
  // A snapshot (snapshots.h). With spec.into.pid set, its namespace is
  // looked up here (NotFound if the process is gone).
  Result<SnapshotOutcome> Snapshot(SnapshotSpec spec, const builder::ProgressSink& progress);
  // For the containerd snapshotter (containerd_service.h): the image of
  // OCI chain ID `chain_id` ("sha256:<hex>") in the store at `store_url`
  // (fs/oci_index.h), nullopt if ferry indexed none; and references to an
  // image's read-only session, as mounts take them.
  Result<std::optional<std::string>> FindChain(const std::string& store_url, const std::string& chain_id);
  Result<SessionRef> AcquireImage(const std::string& store_url, const std::string& image_id);
  void ReleaseImage(const SessionRef& ref);
  std::vector<TargetInfo> Targets() const;
  std::vector<ImageInfo> Images() const;
  // Unmounts every target (lazily) and ends every session.
  void Shutdown();

 private:
  MountManager(std::string root, std::shared_ptr<Mounter> mounter)
      : root_(std::move(root)), mounter_(std::move(mounter)) {}
  Result<TargetInfo> FindTarget(const std::string& target) const;
  // Detaches the target `target` in `into` and releases its session.
  Result<bool> DetachAndRelease(const std::string& target, bool lazy,
                                const ProcessNamespace& into, std::string* image_id);

  const std::string root_;
  std::shared_ptr<Mounter> mounter_;           // used by both parts below
  std::unique_ptr<Attachments> attachments_;
  std::unique_ptr<ImageSessions> sessions_;
  std::unique_ptr<Snapshots> snapshots_;
};

}  // namespace ferry::snapshotter
