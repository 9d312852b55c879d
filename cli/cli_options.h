// The command-line options of the `ferry` verbs that talk to ferryd, defined
// once for both programs that parse them: the `ferry` front end
// (ferry_front.cc, which runs these verbs itself) and the full tool
// (ferry_main.cc, which has every verb). Header-only: CLI11 is.
#pragma once

#include <CLI/CLI.hpp>

#include <climits>
#include <string>

#include "cli/daemon_verbs.h"
#include "chunkstore/store_url.h"

namespace ferry::cli {

struct DaemonVerbArgs {
  std::string store_url, image, mountpoint, daemon_root, cache_size, log_file, prune_to;
  bool writable = false, start_daemon = false, no_daemon = false, foreground = false;
  bool debug = false, lazy = false, json = false, flush = false;
  size_t cache_mb = 256;
  long into_pid = 0;  // mount/umount --into PID: in that process's mount namespace
};

inline void AddStoreOption(CLI::App& app, DaemonVerbArgs* a) {
  app.add_option("--store", a->store_url,
                 "object store URL (file:///path); default $FERRY_STORE, else "
                 "/var/lib/ferry (root) or ~/.local/share/ferry");
}

inline CLI::App* AddMountCommand(CLI::App& app, DaemonVerbArgs* a) {
  auto* mount = app.add_subcommand(
      "mount", "mount an image (through ferryd, or --no-daemon); returns when ready");
  mount->add_option("IMAGE", a->image, "image name or id")->required();
  mount->add_option("MOUNTPOINT", a->mountpoint,
                    "an existing directory (with --into: a path as that process sees it)")
      ->required();
  mount->add_flag("--writable,-w", a->writable,
                  "a private writable overlay on the shared image (ferryd)");
  mount->add_flag("--start-daemon", a->start_daemon, "start ferryd if none is running");
  mount->add_option("--cache-size", a->cache_size,
                    "node cache size for a daemon started here (e.g. 10G)");
  mount->add_flag("--no-daemon", a->no_daemon,
                  "serve this one image from this process (no node cache, no ferryd)");
  mount->add_flag("--foreground,-f", a->foreground,
                  "with --no-daemon: serve in the foreground, logging to stderr");
  mount->add_option("--log-file", a->log_file, "with --no-daemon: log file in the background");
  mount->add_option("--memory-cache-mb", a->cache_mb, "with --no-daemon: in-memory chunk cache")
      ->capture_default_str();
  mount->add_flag("--debug", a->debug, "with --no-daemon --foreground: trace FUSE requests");
  auto* into = mount->add_option(
      "--into", a->into_pid,
      "mount inside the mount namespace of running process PID (a sandbox), without restarting "
      "it: MOUNTPOINT is an absolute path as PID sees it (below its root), created if missing; "
      "nothing is mounted on the host (ferryd)");
  into->type_name("PID")->check(CLI::Range(1L, long{INT_MAX}));
  into->excludes(mount->get_option("--no-daemon"))->excludes(mount->get_option("--foreground"));
  return mount;
}

inline CLI::App* AddUmountCommand(CLI::App& app, DaemonVerbArgs* a) {
  auto* umount = app.add_subcommand("umount", "unmount a ferry mount");
  umount->add_option("MOUNTPOINT", a->mountpoint, "the mount point")->required();
  umount->add_flag("--lazy,-l", a->lazy, "detach now even if in use (MNT_DETACH)");
  umount->add_option("--into", a->into_pid,
                     "a mount made with `ferry mount --into PID`: MOUNTPOINT is the path as PID "
                     "sees it")
      ->type_name("PID")
      ->check(CLI::Range(1L, long{INT_MAX}));
  return umount;
}

struct CacheCommands {
  CLI::App *cache, *stats, *prune;
};

inline CacheCommands AddCacheCommand(CLI::App& app, DaemonVerbArgs* a) {
  auto* cache = app.add_subcommand("cache", "the node cache of ferryd");
  cache->require_subcommand(1);
  auto* stats = cache->add_subcommand("stats", "hits, misses, evictions, per image");
  stats->add_flag("--json", a->json, "print JSON");
  stats->add_flag("--flush", a->flush,
                  "first write the chunks waiting for admission (the cache writes them once "
                  "reads pause)");
  auto* prune = cache->add_subcommand("prune", "evict until the cache is at most SIZE");
  prune->add_option("--to", a->prune_to, "target size, e.g. 1G or 0")->required();
  return {cache, stats, prune};
}

struct ProfileOnMountCommands {
  CLI::App *start, *stop;
};

// `ferry profile start|stop MOUNTPOINT`, under the `profile` command.
inline ProfileOnMountCommands AddProfileOnMountCommands(CLI::App* profile, DaemonVerbArgs* a) {
  auto* start = profile->add_subcommand(
      "start", "record on a ferryd mount: what its image's reads touch from now on");
  start->add_option("MOUNTPOINT", a->mountpoint, "a mount of ferryd")->required();
  auto* stop = profile->add_subcommand("stop", "stop recording on a mount; store the profile");
  stop->add_option("MOUNTPOINT", a->mountpoint, "a mount of ferryd")->required();
  return {start, stop};
}

// `ferry snapshot` (cli/daemon_verbs.h SnapshotArgs).
inline CLI::App* AddSnapshotCommand(CLI::App& app, SnapshotArgs* a) {
  auto* snapshot = app.add_subcommand(
      "snapshot",
      "save a sandbox's filesystem (a writable ferryd mount: its image plus its changes), or one "
      "directory, as a new image; only new or changed bytes are chunked and written");
  snapshot->add_option("PATH", a->dir,
                       "a mount made by `ferry mount IMAGE DIR --writable` (a filesystem "
                       "snapshot), a directory inside a ferryd mount, or any directory (a "
                       "directory snapshot)")
      ->required();
  snapshot->add_option("--tag,-t", a->tag, "name the new image (a ref)")->required();
  snapshot->add_option("--freeze", a->freeze_cgroup,
                       "a cgroup v2 directory holding the sandbox's processes (e.g. "
                       "/sys/fs/cgroup/sandbox-1): they are frozen while the changes are read, "
                       "so the snapshot is one instant's tree; the pause is printed");
  snapshot->add_option("--into", a->into_pid,
                       "PATH is as this process sees it (a mount made with `ferry mount --into "
                       "PID`, or a directory in one)");
  snapshot->add_option("--zstd-level", a->zstd_level,
                       "compression level of the new chunks, 1-19 (default: ferryd's for "
                       "snapshots, 6)")
      ->check(CLI::Range(1, 19));
  snapshot->add_flag("--json", a->json,
                     "print one JSON object (image id and figures) on stdout, nothing else");
  snapshot->add_flag("--quiet,-q", a->quiet, "no progress or figures on stderr");
  snapshot->footer(
      "ferryd takes the snapshot (the CLI asks it over its control socket and shows its "
      "progress). Prints the new image's id on stdout, and the files read, bytes, new chunks and "
      "time on stderr. Files the sandbox did not change keep the base image's chunks and are not "
      "read. Without --freeze the changes are read while the sandbox runs: a file written "
      "meanwhile fails the snapshot, naming it (retry, or use --freeze). The image goes to the mount's store; --store is "
      "used only for a directory that is in no ferryd mount. A writable mount whose overlay went "
      "when ferryd stopped keeps its changes, and can still be snapshotted.\n"
      "Exit codes: 0 done; 1 failed (nothing was published); 2 usage error; 3 PATH, or the "
      "mount's base image, not found (nothing was published).");
  snapshot->add_option("--daemon", a->daemon_root,
                       "ferryd's root (its socket is ROOT/ferryd.sock); default $FERRY_DAEMON, "
                       "else /var/lib/ferryd (root) or ~/.local/share/ferryd");
  return snapshot;
}

inline void AddDaemonOption(std::initializer_list<CLI::App*> subs, DaemonVerbArgs* a) {
  for (auto* sub : subs) {
    sub->add_option("--daemon", a->daemon_root,
                    "ferryd's root (its socket is ROOT/ferryd.sock); default $FERRY_DAEMON, "
                    "else /var/lib/ferryd (root) or ~/.local/share/ferryd");
  }
}

// Runs the daemon verb that was parsed: mount through ferryd (not
// --no-daemon or --foreground, which serve from this process), umount,
// cache stats|prune, profile start|stop. Returns the exit code, or -1 if
// none of them was given.
inline int RunDaemonVerb(CLI::App* mount, CLI::App* umount, const CacheCommands& cache,
                         const ProfileOnMountCommands& profile, const DaemonVerbArgs& a) {
  if (*mount && !a.no_daemon && !a.foreground) {
    std::string url = a.store_url.empty() ? chunkstore::DefaultStoreUrl() : a.store_url;
    return MountThroughDaemon({chunkstore::AbsoluteStoreUrl(url), a.image, a.mountpoint,
                               a.daemon_root, a.writable, a.start_daemon, a.cache_size,
                               a.into_pid});
  }
  if (*umount) return Umount(a.daemon_root, a.mountpoint, a.lazy, a.into_pid);
  if (*cache.stats) return CacheStats(a.daemon_root, a.json, a.flush);
  if (*cache.prune) return CachePrune(a.daemon_root, a.prune_to);
  if (*profile.start) return ProfileOnMount(a.daemon_root, a.mountpoint, true);
  if (*profile.stop) return ProfileOnMount(a.daemon_root, a.mountpoint, false);
  return -1;
}

}  // namespace ferry::cli
