// MountManager: the mounts ferryd serves, one FUSE session per image.
//
// Every image in use has one read-only FUSE mount under ROOT/mnt/<id>,
// shared by all its targets and reference-counted: a target is a read-only
// bind of that mount, or (writable) an overlayfs with it as lowerdir and a
// private upper directory under ROOT/sandboxes/. The session ends when the
// last target goes. All images of one store share one ChunkReader (memory
// cache, single flight, prefetch) over the node cache.
//
// The table of targets is kept in ROOT/mounts.json (rewritten atomically on
// every change) so that a daemon restarted after a crash can remove the
// stale mounts and upper directories the dead one left. Needs root (bind
// and overlay mounts). Thread-safe; the read path never takes its lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "chunkstore/chunk_reader.h"
#include "chunkstore/node_cache.h"
#include "chunkstore/object_store.h"
#include "fs/fuse_server.h"
#include "fs/image_fs.h"

namespace ferry::snapshotter {

struct MountManagerOptions {
  std::string root;                          // absolute; no ',' or ':'
  chunkstore::ChunkCache* node_cache = nullptr;  // outlives the manager
  size_t memory_cache_bytes = 64u << 20;     // per store, shared by its images
  unsigned fuse_threads = 8;                 // per image
  unsigned fetch_threads = 32;               // store requests in parallel, per store
  unsigned prefetch_threads = 0;             // and for prefetch (0: chosen by the store)
  std::chrono::milliseconds fetch_deadline{30000};  // a read fails (EIO) after this
};

struct TargetInfo {
  std::string target;
  std::string image_id;
  std::string store_url;
  bool writable = false;
  std::string upper;  // writable: the sandbox directory (upper/ and work/)
};

// An image with a live FUSE session and what its reads cost so far.
struct ImageInfo {
  std::string image_id;
  std::string store_url;
  uint32_t references = 0;
  uint64_t reads = 0, read_bytes = 0, read_errors = 0;
  uint64_t memory_hits = 0, cache_hits = 0, cache_hit_bytes = 0, cache_misses = 0;
  uint64_t store_fetches = 0, store_bytes = 0, corrupt = 0;
  uint64_t demand_misses = 0, profile_chunks = 0, retries = 0, locality_chunks = 0;
};

struct MountOutcome {
  std::string image_id;
  bool shared = false;  // the image's FUSE session already existed
};

class MountManager {
 public:
  // Removes what an earlier daemon on `opt.root` left mounted, then starts
  // with no mounts.
  static Result<std::unique_ptr<MountManager>> Create(MountManagerOptions opt);
  ~MountManager();  // Shutdown()

  // `target` must be an absolute path to an existing directory that is not
  // already a target. NotFound for an unknown image; the image's metadata
  // is verified before anything is mounted.
  Result<MountOutcome> Mount(const std::string& store_url, const std::string& image,
                             const std::string& target, bool writable);
  // FailedPrecondition if the target is busy (unless `lazy`); NotFound if it
  // is not a target of this daemon. Returns whether the session ended.
  Result<bool> Unmount(const std::string& target, bool lazy, std::string* image_id);
  // Recording a start-up profile on a mounted image (fs/profile.h). Stop
  // stores it in the image's store; returns the image id, chunk count and
  // bytes. FailedPrecondition if not recording (or, for Start, already).
  Result<std::string> StartProfile(const std::string& target);
  Result<std::tuple<std::string, uint64_t, uint64_t>> StopProfile(const std::string& target);
  std::vector<TargetInfo> Targets() const;
  std::vector<ImageInfo> Images() const;
  // Unmounts every target (lazily) and ends every session.
  void Shutdown();

 private:
  struct Store;
  struct Image;
  explicit MountManager(MountManagerOptions opt);
  void CleanStale();
  Status SaveTable();  // with mu_ held
  Result<Store*> GetStore(const std::string& url);  // with mu_ held
  void EndSession(std::unique_ptr<Image> image);    // with mu_ held
  void ReapLoop();

  MountManagerOptions opt_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Store>> stores_;   // by canonical URL
  std::map<std::string, std::string> store_alias_;         // URL as given -> canonical
  std::map<std::string, std::unique_ptr<Image>> images_;   // by image id (hex)
  std::map<std::string, TargetInfo> targets_;              // by target path
  // Sessions whose mount was detached, waiting for their loop to end.
  std::vector<std::unique_ptr<Image>> draining_;
  std::condition_variable reap_cv_;
  bool stopping_ = false;
  std::thread reaper_;
};

}  // namespace ferry::snapshotter
