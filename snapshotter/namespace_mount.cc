#include "snapshotter/namespace_mount.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace ferry::snapshotter {
namespace {

// A child that has not reported after this long is killed: resolving a path
// in a sandbox may cross a filesystem that hangs (a dead FUSE server), and
// Attachments::Detach waits for the child with its lock held.
constexpr int kChildDeadlineMs = 30000;

// glibc 2.36 wraps none of the new mount API: these are the raw calls.
int OpenTree(int dfd, const char* path, unsigned flags) {
  return static_cast<int>(syscall(SYS_open_tree, dfd, path, flags));
}
int MountSetattr(int dfd, const char* path, unsigned flags, struct mount_attr* attr) {
  return static_cast<int>(syscall(SYS_mount_setattr, dfd, path, flags, attr, sizeof(*attr)));
}
int FsOpen(const char* fstype, unsigned flags) {
  return static_cast<int>(syscall(SYS_fsopen, fstype, flags));
}
int FsConfig(int fd, unsigned cmd, const char* key, const char* value) {
  return static_cast<int>(syscall(SYS_fsconfig, fd, cmd, key, value, 0));
}
int FsMount(int fd, unsigned flags, unsigned attrs) {
  return static_cast<int>(syscall(SYS_fsmount, fd, flags, attrs));
}
int MoveMount(int from_dfd, const char* from, int to_dfd, const char* to, unsigned flags) {
  return static_cast<int>(syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags));
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  void reset(int fd) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string Proc(pid_t pid, const char* what) {
  return "/proc/" + std::to_string(pid) + "/" + what;
}

Status Gone(pid_t pid, const std::string& why) {
  return Status(StatusCode::kNotFound, "process " + std::to_string(pid) + " " + why, ESRCH);
}

// The steps a child reports the failure of.
enum Step : int { kJoin = 1, kCreate, kMove, kUnmount };
struct Report {
  int step = 0;  // 0: success
  int err = 0;
};

// mkdir -p in the child (so only system calls: no allocation after fork).
// `p` is absolute and writable.
int MakeDirs(char* p) {
  for (char* s = p + 1;; ++s) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    // EEXIST wins over EROFS in the kernel: an existing directory on a
    // read-only filesystem is fine.
    if (p[1] != '\0' && mkdir(p, 0755) != 0 && errno != EEXIST) return errno;
    struct stat st;
    if (stat(p, &st) != 0) return errno;
    if (!S_ISDIR(st.st_mode)) return ENOTDIR;
    *s = c;
    if (c == '\0') return 0;
  }
}

// Opens process `in.pid`'s mount namespace and root, refusing a process
// whose namespace is not `in.mnt_ns` (when given).
Status OpenProcess(const ProcessNamespace& in, Fd* ns, Fd* root) {
  if (in.pid <= 0) return InvalidArgumentError("no process " + std::to_string(in.pid));
  ns->reset(open(Proc(in.pid, "ns/mnt").c_str(), O_RDONLY | O_CLOEXEC));
  if (ns->get() < 0) {
    if (errno == ENOENT || errno == ESRCH) return Gone(in.pid, "does not exist");
    return ErrnoError("open " + Proc(in.pid, "ns/mnt"));
  }
  root->reset(open(Proc(in.pid, "root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (root->get() < 0) {
    if (errno == ENOENT || errno == ESRCH) return Gone(in.pid, "does not exist");
    return ErrnoError("open " + Proc(in.pid, "root"));
  }
  // The root was opened after the namespace: the pid must still name the
  // same process (and namespace) for the two to belong together.
  struct stat by_fd, by_path;
  if (fstat(ns->get(), &by_fd) != 0 || stat(Proc(in.pid, "ns/mnt").c_str(), &by_path) != 0 ||
      by_fd.st_ino != by_path.st_ino) {
    return Gone(in.pid, "exited");
  }
  if (in.mnt_ns != 0 && by_fd.st_ino != in.mnt_ns) {
    return Gone(in.pid, "is no longer in mount namespace " + std::to_string(in.mnt_ns) +
                            " (it exited and its pid was reused)");
  }
  return Status::Ok();
}

// Forks a child that joins `in`'s mount namespace and root and runs `op`
// there (which may use system calls only); returns what it reported.
template <class Op>
Result<Report> RunInNamespace(const ProcessNamespace& in, Op op) {
  Fd ns, root;
  RETURN_IF_ERROR(OpenProcess(in, &ns, &root));
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return ErrnoError("pipe");
  Fd rd(p[0]), wr(p[1]);
  pid_t child = fork();
  if (child < 0) return ErrnoError("fork");
  if (child == 0) {
    Report r;
    if (setns(ns.get(), CLONE_NEWNS) != 0 || fchdir(root.get()) != 0 || chroot(".") != 0 ||
        chdir("/") != 0) {
      r = Report{kJoin, errno};
    } else {
      r = op();
    }
    ssize_t n = write(wr.get(), &r, sizeof(r));
    _exit(n == sizeof(r) ? 0 : 1);
  }
  close(wr.release());
  Report r{kJoin, EPIPE};  // if the child died without a word
  pollfd pfd{rd.get(), POLLIN, 0};
  int ready;
  do {
    ready = poll(&pfd, 1, kChildDeadlineMs);
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) kill(child, SIGKILL);
  ssize_t n;
  do {
    n = ready > 0 ? read(rd.get(), &r, sizeof(r)) : 0;
  } while (n < 0 && errno == EINTR);
  int wstatus;
  while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (ready == 0) {
    return Status(StatusCode::kDeadlineExceeded,
                  "process " + std::to_string(in.pid) + "'s mount namespace did not answer in " +
                      std::to_string(kChildDeadlineMs / 1000) + " s (a filesystem there hangs?)");
  }
  return r;
}

std::string InProcess(const std::string& path, pid_t pid) {
  return path + " in process " + std::to_string(pid);
}

}  // namespace

Result<uint64_t> MountNamespaceOf(pid_t pid) {
  if (pid <= 0) return InvalidArgumentError("no process " + std::to_string(pid));
  struct stat st;
  if (stat(Proc(pid, "ns/mnt").c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ESRCH) return Gone(pid, "does not exist");
    return ErrnoError("stat " + Proc(pid, "ns/mnt"));
  }
  return static_cast<uint64_t>(st.st_ino);
}

Result<int> DetachedReadOnlyBind(const std::string& source) {
  // Not AT_RECURSIVE: like the bind of Mounter::BindReadOnly, the session's
  // mount alone.
  Fd tree(OpenTree(AT_FDCWD, source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (tree.get() < 0) return ErrnoError("open_tree " + source);
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  if (MountSetattr(tree.get(), "", AT_EMPTY_PATH, &attr) != 0) {
    return ErrnoError("make a bind of " + source + " read-only");
  }
  return tree.release();
}

Result<int> DetachedOverlay(const std::string& lower, const std::string& upper,
                            const std::string& work) {
  Fd fs(FsOpen("overlay", FSOPEN_CLOEXEC));
  if (fs.get() < 0) return ErrnoError("fsopen overlay");
  auto fail = [&](const std::string& what) {
    int err = errno;
    // The kernel leaves its reason on the context ("e overlayfs: ...").
    char msg[512];
    ssize_t n = read(fs.get(), msg, sizeof(msg) - 1);
    std::string why = n > 0 ? " (" + std::string(msg, static_cast<size_t>(n)) + ")" : "";
    return ErrnoError(what + why, err);
  };
  if (FsConfig(fs.get(), FSCONFIG_SET_STRING, "lowerdir", lower.c_str()) != 0 ||
      FsConfig(fs.get(), FSCONFIG_SET_STRING, "upperdir", upper.c_str()) != 0 ||
      FsConfig(fs.get(), FSCONFIG_SET_STRING, "workdir", work.c_str()) != 0) {
    return fail("configure an overlay of " + lower);
  }
  if (FsConfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr) != 0) {
    return fail("create an overlay of " + lower);
  }
  int m = FsMount(fs.get(), FSMOUNT_CLOEXEC, 0);
  if (m < 0) return fail("fsmount an overlay of " + lower);
  return m;
}

Status MoveIntoNamespace(int mount_fd, const ProcessNamespace& in, const std::string& path) {
  if (path.empty() || path[0] != '/') return InvalidArgumentError(path + " is not absolute");
  std::string scratch = path;  // the child's mkdir -p writes into its copy
  ASSIGN_OR_RETURN(Report r, RunInNamespace(in, [&]() -> Report {
    if (int err = MakeDirs(scratch.data()); err != 0) return Report{kCreate, err};
    if (MoveMount(mount_fd, "", AT_FDCWD, path.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
      return Report{kMove, errno};
    }
    return Report{};
  }));
  const std::string where = InProcess(path, in.pid);
  switch (r.step) {
    case 0:
      return Status::Ok();
    case kJoin:
      return ErrnoError("join the mount namespace of process " + std::to_string(in.pid), r.err);
    case kCreate:
      if (r.err == ENOTDIR) {
        return Status(StatusCode::kFailedPrecondition,
                      where + " (or a parent of it) exists and is not a directory", r.err);
      }
      return Status(StatusCode::kFailedPrecondition,
                    "cannot create " + where + ": " + std::strerror(r.err), r.err);
    default:
      return ErrnoError("move the mount to " + where, r.err);
  }
}

Status UnmountInNamespace(const ProcessNamespace& in, const std::string& path, bool lazy) {
  const int flags = (lazy ? MNT_DETACH : 0) | UMOUNT_NOFOLLOW;
  ASSIGN_OR_RETURN(Report r, RunInNamespace(in, [&]() -> Report {
    if (umount2(path.c_str(), flags) != 0) return Report{kUnmount, errno};
    return Report{};
  }));
  if (r.step == 0) return Status::Ok();
  if (r.step == kJoin) {
    return ErrnoError("join the mount namespace of process " + std::to_string(in.pid), r.err);
  }
  return ErrnoError("unmount " + InProcess(path, in.pid), r.err);
}

}  // namespace ferry::snapshotter
