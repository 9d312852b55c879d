// Attachments: where ferryd shows an image, and what it must undo after a
// crash.
//
// An attachment makes an image's shared read-only mount (its session's
// mount point, image_sessions.h) visible at a target directory: a read-only
// bind, or (writable) an overlayfs with the session's mount as lowerdir and
// a private upper directory ROOT/sandboxes/XXXXXX/{upper,work}. Attachments
// are keyed by target path and know nothing of FUSE or stores: the caller
// names the source; every mount goes through a Mounter (mounter.h).
//
// The table of targets is ROOT/mounts.json, rewritten atomically (write,
// fsync, rename) on every change and before a target is mounted, so that a
// daemon restarted after a crash finds every mount and upper directory the
// dead one may have left. Its format (docs/daemon.md):
//   {"targets": [{"target": PATH, "image": HEX, "store": URL,
//                 "writable": BOOL, "upper": DIR or "", "kept": BOOL}, ...]}
//
// What a sandbox wrote is never thrown away by ferryd stopping: when the
// daemon stops (Close) or starts after a crash (Open), a writable target is
// unmounted but stays in the table as *kept*, with its upper directory
// (unless it was in another process's namespace and that is gone). A
// kept target is listed; it can be snapshotted (its base image and upper
// directory are all a snapshot needs), resumed (attached again, writable,
// to the same image: the overlay is made over the same upper directory), or
// discarded (Detach removes the entry and the upper directory). Only
// Detach removes an upper directory.
//
// A target may also live in another process's mount namespace (`ferry mount
// --into PID`): the same mounts, made detached and moved there through the
// Mounter's *Into calls, keyed by the namespace's identity and the path as
// that process sees it; its table entry also has "into_pid": PID and
// "mnt_ns": INODE, so that a restarted daemon detaches it only from that
// namespace (and not from a process that reused the pid).
//
// A target can be pinned (Pin) while a snapshot reads its upper directory:
// detaching a pinned target is refused.
//
// Thread-safe. No lock is held while a mount is made, since making an
// overlay reads the session's FUSE mount, nor while an upper directory is
// removed.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chunkstore/status.h"
#include "snapshotter/mounter.h"

namespace ferry::snapshotter {

struct TargetInfo {
  std::string target;
  std::string image_id;
  std::string store_url;
  bool writable = false;
  std::string upper;   // writable: the sandbox directory (upper/ and work/)
  std::string source;  // the session mount shown here (not saved in mounts.json)
  ProcessNamespace into;  // pid 0: a target in ferryd's namespace; else `target` is there
  // Not mounted: a writable target kept, with its upper directory, from
  // before ferryd stopped (see the top of this file). It holds no session.
  bool kept = false;
};

// The overlayfs upper directory of writable target `t` (inside t.upper);
// "" for a read-only one.
inline std::string OverlayUpperDir(const TargetInfo& t) {
  return t.writable && !t.upper.empty() ? t.upper + "/upper" : "";
}

class Attachments {
 public:
  // Creates ROOT/sandboxes if needed, detaches every target the table at
  // ROOT/mounts.json lists (logging "removed stale mount T" for each that was
  // mounted), keeps the writable ones whose upper directory is there (as
  // kept targets, logged "kept the changes of T"), removes every other
  // directory under ROOT/sandboxes, and saves the table. An unreadable
  // table is logged and ignored. `mounter` must outlive the result.
  // Destroying the result leaves every target as it is (mounted and in the
  // table), as a crash would: Close() detaches them.
  static Result<std::unique_ptr<Attachments>> Open(const std::string& root, Mounter* mounter);

  // OK if `target` may be attached now (a kept target may be, if Attach
  // resumes it). FailedPrecondition once Close() has been called;
  // AlreadyExists if it is a target (or being made one).
  // `into`: a target in that process's namespace (with its mnt_ns).
  Status CheckFree(const std::string& target, const ProcessNamespace& into = {}) const;
  // Shows `source` at `target` (an absolute, normalised path of an existing
  // directory; with `what.into`, a path in that process, created there if
  // missing) as `what` says: `what.writable` picks an overlay, for which a
  // fresh upper directory is made; `what.upper` and `what.source` are set
  // here. The target is in the saved table before it is mounted. On failure
  // nothing is left: no mount, no table entry, no upper directory. Errors:
  // those of CheckFree, the mounter's, or an I/O error saving the table.
  // If `target` is kept: a writable attach of the same image resumes it
  // (the overlay is made over its upper directory; *resumed is set; on
  // failure it stays kept, its upper directory untouched); anything else
  // is AlreadyExists saying how to resume, snapshot or discard it.
  Status Attach(TargetInfo what, const std::string& source, bool* resumed = nullptr);
  // Unmounts `target` (with `lazy`, even if busy), removes its table entry
  // and then its upper directory. NotFound if it is not an attached target;
  // FailedPrecondition if busy and not `lazy`. A target already unmounted by
  // hand is removed from the table. `*removed` is set whenever the entry was
  // removed, even if saving the table then failed (the error returned).
  // `into`: a target in that process's namespace; with mnt_ns 0 (the process
  // is gone), the target attached into the process with that pid. A target
  // whose process (namespace) is gone went with it: its entry is removed.
  // A kept target is only removed (with its upper directory), and
  // `removed->kept` is set: it held no session. FailedPrecondition if the
  // target is pinned.
  Status Detach(const std::string& target, bool lazy, TargetInfo* removed,
                const ProcessNamespace& into = {});
  // The attached and the kept targets (not those being attached), sorted
  // by path.
  std::vector<TargetInfo> List() const;
  // An attached target (not a kept one).
  std::optional<TargetInfo> Find(const std::string& target, const ProcessNamespace& into = {}) const;
  // The attached or kept target in ferryd's namespace (or, with `into`, in
  // that process's: its mnt_ns) that is `path` or holds it (the longest
  // such target path), pinned: Detach refuses it until Unpin. NotFound if
  // there is none.
  Result<TargetInfo> PinContaining(const std::string& path, const ProcessNamespace& into = {});
  void Unpin(const TargetInfo& pinned);
  // Refuses attachments from now on, detaches every target lazily, keeps
  // the writable ones (with their upper directories) as kept targets and
  // saves the table. Idempotent.
  void Close();

 private:
  struct Entry {
    TargetInfo info;
    bool attached = false;  // false while its mount is being made (and when kept)
    int pins = 0;           // snapshots reading it
  };
  Attachments(std::string root, Mounter* mounter) : root_(std::move(root)), mounter_(mounter) {}
  void CleanStale();
  Status SaveTable();  // with mu_ held
  // `fresh`: a new upper directory (its root takes the source's attributes).
  Status MountTarget(const TargetInfo& info, bool fresh);
  Status UnmountTarget(const TargetInfo& info, bool lazy);
  // A target in ferryd's namespace, or in one whose process is still there:
  // one in a namespace that is gone went with it (nothing to keep).
  bool NamespaceAlive(const TargetInfo& info) const;
  // The key of a target in targets_: its path, or for one in another
  // namespace, "mntns INODE:" and its path (never a path: no leading '/').
  static std::string KeyOf(const std::string& target, const ProcessNamespace& into);
  // With mu_ held: the key of `target` in `into` (see Detach), or "".
  std::string LookupKey(const std::string& target, const ProcessNamespace& into) const;
  static void RemoveUpper(const std::string& upper);

  const std::string root_;
  Mounter* const mounter_;
  mutable std::mutex mu_;  // a leaf: nothing else is locked while it is held
  std::map<std::string, Entry> targets_;  // by KeyOf(), under mu_
  bool closed_ = false;                   // under mu_
};

}  // namespace ferry::snapshotter
