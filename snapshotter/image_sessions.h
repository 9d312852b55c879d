// ImageSessions: the images ferryd serves, one read-only FUSE session each.
//
// Every image in use has one session: its ImageFs over the store's shared
// ChunkReader (store_registry.h), served by FUSE at ROOT/mnt/<id>.<n> and
// shared by every user of the image. Sessions are reference-counted; the
// session ends with its last reference (its mount is detached and the
// session is destroyed once its FUSE loop has returned). A session whose
// loop ended underneath (someone unmounted ROOT/mnt/... by hand) is replaced
// by the next Acquire.
//
// A new session's image is resolved and loaded (with its start-up profile,
// image_loading.h) and its FUSE mount made without any lock held: a slow
// store delays only the callers that wait for it. Two callers that start
// the same image at once both load it; the first to finish makes the
// session, the other uses that one and tears its own down.
//
// Sessions know nothing of targets: attachments.h shows a session's mount
// where users want it. Thread-safe; the read path never takes the lock.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "fs/fuse_server.h"
#include "fs/image_fs.h"
#include "snapshotter/counters.h"
#include "snapshotter/mounter.h"
#include "snapshotter/store_registry.h"

namespace ferry::snapshotter {

// What serves one session's mount: fs::FuseServer in ferryd, a fake in
// tests. Mount() makes the mount; Serve() blocks until it is gone; Detach()
// (from another thread) detaches the mount so that Serve() returns once
// nothing holds it. Destroying a server that was mounted but never served
// unmounts it.
class ImageServer {
 public:
  virtual ~ImageServer() = default;
  virtual Status Mount(const std::string& mountpoint) = 0;
  virtual Status Serve() = 0;
  virtual void Detach() = 0;
};
using ImageServerFactory =
    std::function<std::unique_ptr<ImageServer>(fs::ImageFs* fs, const fs::FuseOptions& opt)>;

struct ImageSessionsOptions {
  std::string root;        // sessions mount at ROOT/mnt/<id>.<n>
  StoreRegistryOptions stores;
  unsigned fuse_threads = 8;  // per image
  Mounter* mounter = nullptr;  // clears stale ROOT/mnt entries; outlives the sessions
  ImageServerFactory new_server;  // null: FUSE (fs::FuseServer)
};

// A reference to a session, as Acquire hands it out.
struct SessionRef {
  std::string image_id;    // hex
  std::string store_url;   // canonical
  std::string mountpoint;  // the session's read-only mount; names the session
  bool shared = false;     // the session already existed
};

// An image with a live session and what its reads cost so far.
struct ImageInfo {
  std::string image_id;
  std::string store_url;
  uint32_t references = 0;  // targets attached, or being attached
  std::vector<CounterValue> counters;  // one per kImageCounters entry, in its order
  // The counter named `name`; 0 for a name that is not in kImageCounters.
  uint64_t Counter(std::string_view name) const;
};

class ImageSessions {
 public:
  // Creates ROOT/mnt if needed and detaches and removes what an earlier
  // daemon left in it.
  static Result<std::unique_ptr<ImageSessions>> Create(ImageSessionsOptions opt);
  ~ImageSessions();  // Shutdown()

  // A new reference to the session of the image that `name` (ref, id or
  // unique id prefix) names in the store at `store_url`, starting the
  // session if there is none. Errors: the store's (opening it, reading it),
  // NotFound for an unknown image, Corruption for metadata that fails
  // verification (nothing is mounted then), the FUSE mount's, and
  // FailedPrecondition once Shutdown has begun. Blocks while the store is
  // read.
  Result<SessionRef> Acquire(const std::string& store_url, const std::string& name);
  // Drops a reference Acquire gave. Returns whether that ended the session
  // (false if the session had ended already).
  bool Release(const SessionRef& ref);
  // The open store `store_url` names (opened on first use), for reading
  // objects other than images (the containerd snapshotter's chain index).
  Result<chunkstore::ObjectStore*> Store(const std::string& store_url);
  // Recording a start-up profile on the session of `image_id` (fs/profile.h).
  // Start returns the image id; FailedPrecondition if already recording.
  // Stop stores the profile in the image's store and returns the image id,
  // chunk count and bytes; FailedPrecondition if not recording. NotFound if
  // the image has no session.
  Result<std::string> StartProfile(const std::string& image_id);
  Result<std::tuple<std::string, uint64_t, uint64_t>> StopProfile(const std::string& image_id);
  std::vector<ImageInfo> Images() const;
  // Refuses new sessions, ends every session and waits up to 2 s for them
  // to drain; one still held by a lazily detached mount in use is left to
  // the kernel when the process exits. Idempotent.
  void Shutdown();

 private:
  struct Session;
  explicit ImageSessions(ImageSessionsOptions opt);
  void CleanStale();
  // Loads the image and mounts a new session for it (no lock held).
  Result<std::unique_ptr<Session>> StartSession(OpenStore* store, const Digest& id,
                                                const std::string& name);
  // A new reference to the live session of `hex`, if there is one; ends it
  // if its loop has returned. With mu_ held.
  std::optional<SessionRef> Share(const std::string& hex);
  void EndSession(std::unique_ptr<Session> s);  // with mu_ held
  void ReapLoop();

  ImageSessionsOptions opt_;
  StoreRegistry stores_;  // outlives the sessions, which read through its readers
  mutable std::mutex mu_;  // a leaf: nothing else is locked while it is held
  std::map<std::string, std::unique_ptr<Session>> sessions_;  // by image id (hex), under mu_
  // Sessions whose mount was detached, waiting for their loop to end.
  std::vector<std::unique_ptr<Session>> draining_;  // under mu_
  std::condition_variable reap_cv_;
  std::atomic<uint64_t> next_seq_{0};  // tells sessions of one image apart
  bool closed_ = false;    // no new sessions, under mu_
  bool stopping_ = false;  // the reaper stops, under mu_
  std::thread reaper_;
};

}  // namespace ferry::snapshotter
