// Running the real `ferry` binary from tests: commands, mounts, skips.
#pragma once

#include <string>
#include <vector>

namespace ferry::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// In a forked child: becomes argv[0] (searched in $PATH) with arguments,
// or exits with 127 if it cannot.
[[noreturn]] void ExecOrExit(const std::vector<std::string>& argv);
// Runs argv[0] with arguments, capturing stdout and stderr.
CommandResult Run(const std::vector<std::string>& argv);
// Runs the ferry binary under test with `args` and --store `store`.
CommandResult Ferry(const std::string& store, const std::vector<std::string>& args);
std::string FerryBinary();

// A mounted image that is unmounted (lazily, if busy) when it goes away,
// also when a test fails. Served by the `ferry` process itself
// (--no-daemon) unless `extra` names a daemon with --daemon ROOT.
class ScopedMount {
 public:
  ScopedMount(const std::string& store, const std::string& image, const std::string& mountpoint,
              const std::vector<std::string>& extra = {});
  ~ScopedMount();
  ScopedMount(const ScopedMount&) = delete;
  ScopedMount& operator=(const ScopedMount&) = delete;
  bool ok() const { return result_.exit_code == 0; }
  const CommandResult& result() const { return result_; }
  const std::string& path() const { return mountpoint_; }

 private:
  std::string mountpoint_;
  CommandResult result_;
};

// True when FUSE mounts can be made here (root and /dev/fuse). When they
// cannot, outside CI the test program exits with code 77, which CTest
// reports as skipped (never as passed); in CI (CI=true) it is a failure.
void RequireFuseOrSkip();

}  // namespace ferry::testing
