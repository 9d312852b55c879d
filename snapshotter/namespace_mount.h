// Mounts in another process's mount namespace: the system calls behind the
// Mounter's *Into and UnmountIn (mounter.h), for system_mounter.cc.
//
// A detached mount (open_tree(OPEN_TREE_CLONE) or fsopen/fsmount) is made in
// ferryd's namespace, where the session's FUSE mount and the upper directory
// are, and then moved by a forked child: setns(2) into a mount namespace
// needs a single-threaded caller, and ferryd has many threads. The child
// joins the namespace of /proc/PID/ns/mnt, takes the process's root
// (/proc/PID/root: a sandbox may be chrooted or pivot_rooted), creates the
// path if missing and move_mount(2)s the detached mount there. A failure at
// any step leaves nothing mounted: the detached mount is freed when its
// descriptor is closed.
//
// A child that does not report within 30 s (a path there crosses a hung
// filesystem) is killed and the call is DeadlineExceeded.
//
// Needs CAP_SYS_ADMIN and CAP_SYS_CHROOT. Thread-safe (each call forks its
// own child and waits for it).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "chunkstore/status.h"
#include "snapshotter/mounter.h"

namespace ferry::snapshotter {

// st_ino of /proc/PID/ns/mnt. NotFound (ESRCH) if there is no process `pid`.
Result<uint64_t> MountNamespaceOf(pid_t pid);

// A detached mount: `source` bound read-only, or an overlayfs. The result
// is a descriptor owned by the caller (close it to free the mount).
Result<int> DetachedReadOnlyBind(const std::string& source);
Result<int> DetachedOverlay(const std::string& lower, const std::string& upper,
                            const std::string& work);

// Moves the detached mount `mount_fd` to `path` (absolute, as the process
// sees it) in `in`, creating `path` and its parents there (mode 0755) if
// missing. Does not close `mount_fd`. Errors as in mounter.h.
Status MoveIntoNamespace(int mount_fd, const ProcessNamespace& in, const std::string& path);

// umount2(path, lazy ? MNT_DETACH : 0) inside `in`. Errors as in mounter.h;
// EINVAL (not a mount point) and EBUSY as the kernel says them.
Status UnmountInNamespace(const ProcessNamespace& in, const std::string& path, bool lazy);

}  // namespace ferry::snapshotter
