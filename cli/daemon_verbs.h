// The `ferry` verbs that are clients of ferryd: mount (through the daemon),
// umount, cache stats, cache prune, profile start/stop. They talk to its
// control socket (snapshotter/api/control_client.h) and link neither gRPC nor a store
// backend, so that the `ferry` front end (ferry_front.cc) runs them without
// loading the full tool. Each returns the process exit code and prints
// errors itself (exit codes as in ferry_main.cc).
#pragma once

#include <cstdint>
#include <string>

namespace ferry::cli {

struct DaemonMountArgs {
  std::string store_url;    // the store the image is in (ferryd makes it canonical)
  std::string image;
  std::string mountpoint;
  std::string daemon_root;  // "" = default
  bool writable = false;
  bool start_daemon = false;
  std::string cache_size;   // for a daemon started here ("" = ferryd's default)
  long into_pid = 0;        // not 0: mount in this process's namespace (MountRequest.into_pid)
};

int MountThroughDaemon(const DaemonMountArgs& args);
// The path of program `name` in the directory of the running program ("" if
// that cannot be read): ferry, ferry-tool and ferryd are installed together.
std::string ProgramBesideThis(const std::string& name);
// Unmounts a target of the daemon; a mount it does not know (one served by
// `ferry mount --no-daemon`) is unmounted directly. With `into_pid`, a
// target made with `ferry mount --into PID` (never unmounted directly).
int Umount(const std::string& daemon_root, const std::string& mountpoint, bool lazy,
           long into_pid = 0);
int CacheStats(const std::string& daemon_root, bool json, bool flush);
int CachePrune(const std::string& daemon_root, const std::string& to_size);
// Starts or stops (and stores) recording a start-up profile on a mount.
int ProfileOnMount(const std::string& daemon_root, const std::string& mountpoint, bool start);

// snapshot_verbs.cc: `ferry snapshot PATH --tag NAME`: asks the ferryd at
// `daemon_root` ("" = default) to make image `tag` of PATH (its Snapshot
// method: a writable mount, a directory in a mount, or, into `store_url`,
// any directory), showing its progress on a terminal. Prints the image id
// on stdout and the figures on stderr unless `quiet`, or one JSON object on
// stdout with `json`. Exit codes: 0 done, 1 failed, 2 usage, 3 not found;
// nothing is published on failure.
struct SnapshotArgs {
  std::string dir, tag, daemon_root;
  std::string store_url;      // --store: for a directory in no mount only
  std::string freeze_cgroup;  // --freeze
  int64_t into_pid = 0;       // --into
  int zstd_level = 0;         // --zstd-level (0: ferryd's default for snapshots)
  bool json = false, quiet = false;
};
int CmdSnapshot(const SnapshotArgs& args);

}  // namespace ferry::cli
