#include "fs/unmount.h"

#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ferry::fs {

Status Unmount(const std::string& mountpoint) {
  if (geteuid() == 0) {
    if (umount2(mountpoint.c_str(), 0) == 0) return Status::Ok();
    int err = errno;
    if (err == EBUSY) return ErrnoError("unmount " + mountpoint + " (still in use)", err);
    if (err == EINVAL) {
      return Status(StatusCode::kInvalidArgument, mountpoint + " is not a mount point", err);
    }
    if (err != EPERM) return ErrnoError("unmount " + mountpoint, err);
  }
  pid_t pid = fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) {
    execlp("fusermount3", "fusermount3", "-u", "-q", mountpoint.c_str(), nullptr);
    _exit(127);
  }
  int wstatus = 0;
  waitpid(pid, &wstatus, 0);
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return FailedPreconditionError("cannot unmount " + mountpoint + " (not a ferry mount, or busy)");
  }
  return Status::Ok();
}

}  // namespace ferry::fs
