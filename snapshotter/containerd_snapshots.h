// ContainerdSnapshots: the state behind ferryd's containerd snapshotter
// (containerd.services.snapshots.v1, served by containerd_service.h), with
// the semantics of containerd's own overlayfs snapshotter:
//
//   active     a directory on local disk (ROOT/containerd/snapshots/<id>/fs)
//              that containerd writes: its upper directory over its parents
//   view       a read-only view of a parent chain
//   committed  a read-only layer, named by containerd (a chain ID for
//              image layers), that children stack on
//
// Keys, parents, kinds, labels and times live in ROOT/containerd/
// snapshots.json, saved atomically (write, fsync, rename) before a call
// returns, so a restarted ferryd has every snapshot and every running
// container's mounts as they were.
//
// A committed snapshot may instead be **remote**: a ferry image (its store
// and id) that flattens the layers of an OCI chain ID, mounted lazily
// through ImageSessions. Then its directory is the session's read-only
// mount, and a child's lower directories stop there (the image already
// holds every layer below it). `Remote` is how this class finds and mounts
// those (containerd_service.cc gives the real one).
//
// Thread-safe (one mutex; no store request or mount under it except the
// Remote's Acquire, which this class calls without the lock).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "chunkstore/status.h"

namespace ferry::snapshotter {

enum class SnapshotKind { kView = 1, kActive = 2, kCommitted = 3 };

struct SnapshotInfo {
  std::string name, parent;
  SnapshotKind kind = SnapshotKind::kActive;
  std::map<std::string, std::string> labels;
  int64_t created_ns = 0, updated_ns = 0;  // UTC, nanoseconds since the epoch
};

// What containerd mounts (containerd.types.Mount).
struct MountSpec {
  std::string type, source;
  std::vector<std::string> options;
};

struct SnapshotUsage {
  int64_t size = 0, inodes = 0;
};

// Finding and mounting ferry images for chain IDs.
class RemoteLayers {
 public:
  virtual ~RemoteLayers() = default;
  struct Found {
    std::string store_url, image_id;
  };
  // The image that flattens `chain_id` ("sha256:<hex>"), if ferry indexed
  // one; nullopt if not (an ordinary pull then); an error if the store
  // cannot be asked (within the fetch deadline).
  virtual Result<std::optional<Found>> Lookup(const std::string& chain_id) = 0;
  // A reference to the image's read-only session: its mount point.
  virtual Result<std::string> Acquire(const Found& image) = 0;
  virtual void Release(const Found& image, const std::string& mountpoint) = 0;
};

class ContainerdSnapshots {
 public:
  // Opens (or creates) ROOT/containerd; re-acquires the images of remote
  // snapshots through `remote` (may be null: no remote layers).
  static Result<std::unique_ptr<ContainerdSnapshots>> Open(const std::string& root, RemoteLayers* remote);
  ~ContainerdSnapshots();

  // Prepare: a new active snapshot over `parent` (empty: none).
  // AlreadyExists if `key` exists; NotFound if the parent does not;
  // InvalidArgument if it is not committed. With the label
  // containerd.io/snapshot.ref = CHAIN (containerd's remote-snapshotter
  // protocol) and an image ferry indexed for CHAIN, the committed snapshot
  // CHAIN is made remote and AlreadyExists returned: containerd then
  // neither downloads nor unpacks that layer.
  Result<std::vector<MountSpec>> Prepare(const std::string& key, const std::string& parent,
                                         const std::map<std::string, std::string>& labels);
  Result<std::vector<MountSpec>> View(const std::string& key, const std::string& parent,
                                      const std::map<std::string, std::string>& labels);
  // NotFound; FailedPrecondition for a committed snapshot.
  Result<std::vector<MountSpec>> Mounts(const std::string& key);
  // FailedPrecondition unless `key` is active; AlreadyExists if `name` is.
  Status Commit(const std::string& name, const std::string& key,
                const std::map<std::string, std::string>& labels);
  // FailedPrecondition if it has children.
  Status Remove(const std::string& key);
  Result<SnapshotInfo> Stat(const std::string& key);
  // `paths` as containerd's: empty or "labels" replace every label;
  // "labels.K" sets (or, absent from `info`, removes) K; anything else is
  // InvalidArgument.
  Result<SnapshotInfo> Update(const SnapshotInfo& info, const std::vector<std::string>& paths);
  // Every snapshot matching any of `filters` (containerd's filter syntax:
  // comma-separated AND of `field`, `field==value`, `field!=value`,
  // `field~=regex`; fields name, parent, kind, labels.KEY; values and keys
  // may be quoted); all of them if none. InvalidArgument for a bad filter.
  Result<std::vector<SnapshotInfo>> List(const std::vector<std::string>& filters);
  Result<SnapshotUsage> Usage(const std::string& key);
  // Removes directories under ROOT/containerd/snapshots no snapshot owns.
  Status Cleanup();

 private:
  struct Entry {
    uint64_t id = 0;
    SnapshotInfo info;
    std::optional<RemoteLayers::Found> remote;  // a committed ferry image
    std::string remote_mount;                   // its session's mount point, while acquired
    std::optional<SnapshotUsage> usage;         // fixed at commit
  };

  ContainerdSnapshots(std::string dir, RemoteLayers* remote) : dir_(std::move(dir)), remote_(remote) {}
  Status Load();
  Status LoadTable(const nlohmann::json& table, const std::string& path);
  // Acquires the images of remote layers not mounted (their store was not
  // reachable when they were last tried), without the lock.
  void RemountRemotes();
  Status SaveLocked();
  std::string FsDir(uint64_t id) const;
  std::string WorkDir(uint64_t id) const;
  Result<std::vector<MountSpec>> CreateLocked(const std::string& key, const std::string& parent,
                                              SnapshotKind kind, const std::map<std::string, std::string>& labels);
  Result<std::vector<MountSpec>> MountsLocked(const Entry& e) const;
  // The lower directories of a snapshot whose parent is `parent`, nearest first.
  Result<std::vector<std::string>> LowerDirsLocked(const std::string& parent) const;
  Result<bool> TryRemote(const std::string& key, const std::string& parent,
                         const std::map<std::string, std::string>& labels);

  const std::string dir_;  // ROOT/containerd
  RemoteLayers* const remote_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> snapshots_;
  uint64_t next_id_ = 1;
};

// Parses one containerd filter string (see List) into a predicate.
Result<std::function<bool(const SnapshotInfo&)>> ParseSnapshotFilter(const std::string& filter);

}  // namespace ferry::snapshotter
