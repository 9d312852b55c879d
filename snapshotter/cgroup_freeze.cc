#include "snapshotter/cgroup_freeze.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "snapshotter/daemon_log.h"

namespace ferry::snapshotter {

namespace stdfs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

Status WriteFreeze(const std::string& cgroup, const char* value) {
  const std::string path = cgroup + "/cgroup.freeze";
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + path);
  ssize_t n = write(fd, value, 1);
  int err = errno;
  close(fd);
  if (n != 1) return ErrnoError("write " + std::string(value) + " to " + path, err);
  return Status::Ok();
}

// "frozen 1" in cgroup.events, read from offset 0 of `fd`.
Result<bool> ReadFrozen(int fd, const std::string& path) {
  char buf[512];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n < 0) return ErrnoError("read " + path);
  std::istringstream in(std::string(buf, static_cast<size_t>(n)));
  std::string key;
  int value = 0;
  while (in >> key >> value) {
    if (key == "frozen") return value == 1;
  }
  return InvalidArgumentError(path + " has no \"frozen\" line (a kernel without the cgroup v2 "
                              "freezer?)");
}

// Whether this process is in `cgroup` or below it.
bool HoldsSelf(const std::string& cgroup) {
  const std::string self = std::to_string(getpid());
  std::error_code ec;
  auto holds = [&](const stdfs::path& dir) {
    std::ifstream in(dir / "cgroup.procs");
    std::string pid;
    while (in >> pid) {
      if (pid == self) return true;
    }
    return false;
  };
  if (holds(cgroup)) return true;
  for (stdfs::recursive_directory_iterator it(cgroup, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && holds(it->path())) return true;
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<CgroupFreeze>> CgroupFreeze::Freeze(const std::string& cgroup_in,
                                                           std::chrono::milliseconds timeout) {
  if (cgroup_in.empty() || cgroup_in[0] != '/') {
    return InvalidArgumentError("freeze cgroup '" + cgroup_in + "' must be an absolute path");
  }
  std::error_code ec;
  const std::string cgroup = stdfs::canonical(cgroup_in, ec).string();
  if (ec) return InvalidArgumentError("freeze cgroup " + cgroup_in + ": " + ec.message());
  struct statfs sfs;
  if (statfs(cgroup.c_str(), &sfs) != 0 || sfs.f_type != CGROUP2_SUPER_MAGIC) {
    return InvalidArgumentError(cgroup_in + " is not a cgroup v2 directory (e.g. "
                                "/sys/fs/cgroup/SANDBOX)");
  }
  if (!stdfs::exists(cgroup + "/cgroup.freeze", ec)) {
    return InvalidArgumentError(cgroup_in + " cannot be frozen (the root cgroup, or a kernel "
                                "without the cgroup v2 freezer)");
  }
  if (HoldsSelf(cgroup)) {
    return InvalidArgumentError(cgroup_in + " holds ferryd itself: freezing it would stop the "
                                "snapshot; name the sandbox's own cgroup");
  }
  const std::string events = cgroup + "/cgroup.events";
  int fd = open(events.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + events);
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  bool was_frozen = false;
  {
    std::ifstream in(cgroup + "/cgroup.freeze");
    int v = 0;
    in >> v;
    was_frozen = v == 1;
  }
  std::unique_ptr<CgroupFreeze> f(new CgroupFreeze(cgroup, was_frozen));
  f->started_ = Clock::now();
  if (!was_frozen) {
    if (Status st = WriteFreeze(cgroup, "1"); !st.ok()) {
      f->thawed_ = true;
      return st;
    }
  }
  const auto deadline = f->started_ + timeout;
  for (;;) {
    auto frozen = ReadFrozen(fd, events);
    if (!frozen.ok()) return frozen.status();  // ~CgroupFreeze thaws
    if (*frozen) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return Status(StatusCode::kDeadlineExceeded,
                    "the processes of " + cgroup + " did not all stop within " +
                        std::to_string(timeout.count()) + " ms (one in uninterruptible sleep?); "
                        "they were thawed and nothing was read");
    }
    // The kernel notifies a change of cgroup.events with POLLPRI.
    struct pollfd p = {fd, POLLPRI, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      return ErrnoError("poll " + events);
    }
  }
  f->settle_ms_ = MsSince(f->started_);
  return f;
}

double CgroupFreeze::Thaw() {
  if (thawed_) return paused_ms_;
  thawed_ = true;
  if (!was_frozen_) {
    // Retried: a sandbox left frozen is the one thing this must not do.
    Status st = WriteFreeze(cgroup_, "0");
    for (int i = 0; !st.ok() && i < 3; ++i) st = WriteFreeze(cgroup_, "0");
    if (!st.ok()) Log("cannot thaw " + cgroup_ + ": " + st.ToString() + "; write 0 to its cgroup.freeze");
  }
  paused_ms_ = MsSince(started_);
  return paused_ms_;
}

CgroupFreeze::~CgroupFreeze() { Thaw(); }

}  // namespace ferry::snapshotter
