// Mounter: the mount system calls ferryd's attachments make, behind an
// interface so that attachments can be tested without root (fake_mounter.h)
// and the real calls live in one file (system_mounter.cc).
//
// Every call is synchronous and leaves nothing half done: a failed mount
// leaves nothing mounted at its target. Errors are ErrnoError values whose
// sys_errno() is the failing call's errno (EBUSY for a busy target, EINVAL
// for a path that is not a mount point). Implementations are thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "chunkstore/status.h"

namespace ferry::snapshotter {

// A running process whose mount namespace a target lives in (`ferry mount
// --into PID`). `mnt_ns` is the namespace's identity, the st_ino of
// /proc/PID/ns/mnt: a call that is given one refuses a process whose
// namespace is another (the pid was reused). pid 0: ferryd's own namespace.
struct ProcessNamespace {
  pid_t pid = 0;
  uint64_t mnt_ns = 0;
};

class Mounter {
 public:
  virtual ~Mounter() = default;
  // Binds the directory `source` at `target`, read-only.
  virtual Status BindReadOnly(const std::string& source, const std::string& target) = 0;
  // Mounts overlayfs at `target`: `lower` read-only beneath the writable
  // `upper`, with `work` (empty, on upper's filesystem) as its work directory.
  virtual Status Overlay(const std::string& lower, const std::string& upper,
                         const std::string& work, const std::string& target) = 0;
  // Unmounts `target`; `lazy` detaches it even while in use (MNT_DETACH).
  virtual Status Unmount(const std::string& target, bool lazy) = 0;
  // Gives the directory `to` the mode, owner, times and extended attributes
  // of `from`. Best effort: what cannot be copied is logged, not returned.
  virtual void CopyRootAttributes(const std::string& from, const std::string& to) = 0;

  // Mounting into a running process (a sandbox) without restarting it. The
  // mount is made detached in ferryd's namespace and then moved, by a child
  // that joined the process's mount namespace and took its root, to `path`
  // as the process sees it. Errors (sys_errno() set): NotFound (ESRCH) if
  // the process is gone or its namespace is not `in.mnt_ns`;
  // FailedPrecondition if `path` is not a directory there (ENOTDIR) or
  // cannot be created (EROFS, EACCES, ...).
  //
  // The identity of process `pid`'s mount namespace. NotFound if no such
  // process.
  virtual Result<uint64_t> MountNamespace(pid_t pid) = 0;
  // Shows the directory `source` read-only at `path` in `in`, creating
  // `path` (and its parents) there if missing.
  virtual Status BindReadOnlyInto(const std::string& source, const ProcessNamespace& in,
                                  const std::string& path) = 0;
  // Mounts overlayfs (as Overlay) at `path` in `in`, creating it if missing.
  virtual Status OverlayInto(const std::string& lower, const std::string& upper,
                             const std::string& work, const ProcessNamespace& in,
                             const std::string& path) = 0;
  // Unmounts `path` in `in` (as Unmount). NotFound (ESRCH) if the process or
  // its namespace is gone, which took the mount with it.
  virtual Status UnmountIn(const ProcessNamespace& in, const std::string& path, bool lazy) = 0;
};

// The real mount(2) and umount2(2). Needs CAP_SYS_ADMIN.
std::shared_ptr<Mounter> NewSystemMounter();

}  // namespace ferry::snapshotter
