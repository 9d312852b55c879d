// Mounter: the mount system calls ferryd's attachments make, behind an
// interface so that attachments can be tested without root (fake_mounter.h)
// and the real calls live in one file (system_mounter.cc).
//
// Every call is synchronous and leaves nothing half done: a failed mount
// leaves nothing mounted at its target. Errors are ErrnoError values whose
// sys_errno() is the failing call's errno (EBUSY for a busy target, EINVAL
// for a path that is not a mount point). Implementations are thread-safe.
#pragma once

#include <memory>
#include <string>

#include "chunkstore/status.h"

namespace ferry::snapshotter {

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
};

// The real mount(2) and umount2(2). Needs CAP_SYS_ADMIN.
std::shared_ptr<Mounter> NewSystemMounter();

}  // namespace ferry::snapshotter
