// CgroupFreeze: pausing a sandbox's processes while its snapshot reads
// what they wrote (docs/daemon.md, "Snapshots").
//
// Uses the cgroup v2 freezer: writing "1" to CGROUP/cgroup.freeze asks the
// kernel to stop every task in the cgroup and its descendants at their next
// return to user space; the kernel sets "frozen 1" in CGROUP/cgroup.events
// (and notifies pollers of that file with POLLPRI) once all of them have
// stopped. A frozen task is in no system call and holds no file open for a
// write in progress: a write(2) either completed before the freeze or has not
// started. Writing "0" thaws them; they see nothing but the pause (time
// jumps, as after a SIGSTOP/SIGCONT, but no signal is delivered).
//
// A cgroup that was frozen already (by its owner) is left frozen.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "chunkstore/status.h"

namespace ferry::snapshotter {

class CgroupFreeze {
 public:
  // Freezes `cgroup` (an absolute path of a directory in a cgroup v2
  // hierarchy, not its root) and waits until the kernel says it is frozen,
  // up to `timeout` (then thaws it and fails with DeadlineExceeded). Errors
  // name the cgroup: InvalidArgument (not a cgroup v2 directory, the root,
  // or one holding this process: freezing it would freeze ferryd), or the
  // error of writing cgroup.freeze.
  static Result<std::unique_ptr<CgroupFreeze>> Freeze(const std::string& cgroup,
                                                      std::chrono::milliseconds timeout);
  ~CgroupFreeze();  // Thaw()
  CgroupFreeze(const CgroupFreeze&) = delete;
  CgroupFreeze& operator=(const CgroupFreeze&) = delete;

  // Thaws the cgroup (unless it was frozen before Freeze). Idempotent.
  // Returns how long the processes were paused: from the freeze request to
  // the thaw, in milliseconds.
  double Thaw();
  // The time from the freeze request until every task had stopped.
  double settle_ms() const { return settle_ms_; }

 private:
  CgroupFreeze(std::string cgroup, bool was_frozen)
      : cgroup_(std::move(cgroup)), was_frozen_(was_frozen) {}

  const std::string cgroup_;
  const bool was_frozen_;
  bool thawed_ = false;
  double paused_ms_ = 0, settle_ms_ = 0;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace ferry::snapshotter
