// Running the real ferryd from tests: start, wait until it answers, signal,
// restart, and read its log and resource use.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace ferry::testing {

std::string FerrydBinary();

class ScopedDaemon {
 public:
  // Starts `ferryd --root ROOT` with `extra` arguments; output goes to
  // ROOT/test-ferryd.log. Throws std::runtime_error if it does not answer
  // within 20 s.
  ScopedDaemon(const std::string& root, std::vector<std::string> extra = {});
  // SIGTERM, wait; SIGKILL if it does not stop within 20 s.
  ~ScopedDaemon();
  ScopedDaemon(const ScopedDaemon&) = delete;
  ScopedDaemon& operator=(const ScopedDaemon&) = delete;

  const std::string& root() const { return root_; }
  pid_t pid() const { return pid_; }
  // Sends `sig` and reaps the process; returns its wait status.
  int Signal(int sig);
  // Starts it again after Signal (same arguments).
  void Start();
  std::string Log() const;
  // Entries in /proc/PID/fd and /proc/PID/task, and VmRSS in KiB.
  size_t OpenFds() const;
  size_t Threads() const;
  size_t RssKib() const;

 private:
  std::string root_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

// Mount points in /proc/self/mountinfo whose path starts with `under` (and,
// if `fstype` is given, whose filesystem type is it: "fuse.ferry", "overlay").
std::vector<std::string> MountsUnder(const std::string& under, const std::string& fstype = "");
// Distinct superblocks (major:minor) of those mounts.
size_t DistinctDevices(const std::string& under, const std::string& fstype);

}  // namespace ferry::testing
