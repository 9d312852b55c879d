// The real mount calls behind Mounter (mounter.h).
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "snapshotter/daemon_log.h"
#include "snapshotter/mounter.h"
#include "snapshotter/namespace_mount.h"

namespace ferry::snapshotter {
namespace {

class SystemMounter final : public Mounter {
 public:
  Status BindReadOnly(const std::string& source, const std::string& target) override {
    if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return ErrnoError("bind " + source + " at " + target);
    }
    // A bind keeps the source's flags: read-only takes a remount of the bind.
    if (mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
      Status st = ErrnoError("make " + target + " read-only");
      umount2(target.c_str(), MNT_DETACH);
      return st;
    }
    return Status::Ok();
  }

  Status Overlay(const std::string& lower, const std::string& upper, const std::string& work,
                 const std::string& target) override {
    std::string opts = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
    if (mount("overlay", target.c_str(), "overlay", 0, opts.c_str()) != 0) {
      return ErrnoError("mount overlay at " + target);
    }
    return Status::Ok();
  }

  Status Unmount(const std::string& target, bool lazy) override {
    if (umount2(target.c_str(), lazy ? MNT_DETACH : 0) != 0) return ErrnoError("unmount " + target);
    return Status::Ok();
  }

  // overlayfs shows the upper directory's own attributes for the root of the
  // merged tree: give it the image root's mode, owner, times and xattrs.
  void CopyRootAttributes(const std::string& from, const std::string& to) override {
    struct stat st;
    if (stat(from.c_str(), &st) != 0) return;
    if (chown(to.c_str(), st.st_uid, st.st_gid) != 0 || chmod(to.c_str(), st.st_mode & 07777) != 0) {
      Log("cannot set the attributes of " + to + ": " + std::strerror(errno));
    }
    std::string names(65536, '\0');
    ssize_t n = llistxattr(from.c_str(), names.data(), names.size());
    for (ssize_t i = 0; n > 0 && i < n; i += static_cast<ssize_t>(std::strlen(&names[i])) + 1) {
      const char* name = &names[i];
      std::string value(65536, '\0');
      ssize_t v = lgetxattr(from.c_str(), name, value.data(), value.size());
      if (v >= 0) lsetxattr(to.c_str(), name, value.data(), static_cast<size_t>(v), 0);
    }
    const struct timespec times[2] = {st.st_atim, st.st_mtim};
    utimensat(AT_FDCWD, to.c_str(), times, AT_SYMLINK_NOFOLLOW);
  }

  Result<uint64_t> MountNamespace(pid_t pid) override { return MountNamespaceOf(pid); }

  Status BindReadOnlyInto(const std::string& source, const ProcessNamespace& in,
                          const std::string& path) override {
    ASSIGN_OR_RETURN(int fd, DetachedReadOnlyBind(source));
    Status st = MoveIntoNamespace(fd, in, path);
    close(fd);  // frees the detached mount if it was not moved
    return st;
  }

  Status OverlayInto(const std::string& lower, const std::string& upper, const std::string& work,
                     const ProcessNamespace& in, const std::string& path) override {
    ASSIGN_OR_RETURN(int fd, DetachedOverlay(lower, upper, work));
    Status st = MoveIntoNamespace(fd, in, path);
    close(fd);
    return st;
  }

  Status UnmountIn(const ProcessNamespace& in, const std::string& path, bool lazy) override {
    return UnmountInNamespace(in, path, lazy);
  }
};

}  // namespace

std::shared_ptr<Mounter> NewSystemMounter() { return std::make_shared<SystemMounter>(); }

}  // namespace ferry::snapshotter
