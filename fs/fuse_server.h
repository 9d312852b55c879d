// FuseServer: serves one ImageFs through the libfuse3 low-level API.
//
// Mount() mounts read-only and returns once the kernel can route requests to
// the session; Serve() runs a multi-threaded loop until the filesystem is
// unmounted (`ferry umount`, fusermount3 -u, umount). The image is immutable,
// so attributes, entries (also negative ones), symlinks, directory listings
// and file data are cached by the kernel with long timeouts; a second read of
// anything costs no trip to user space. Every write attempt gets EROFS.
#pragma once

#include <memory>
#include <string>

#include "fs/image_fs.h"
#include "fs/unmount.h"

struct fuse_session;

namespace ferry::fs {

struct FuseOptions {
  bool allow_other = false;  // let other users (sandboxes) use the mount
  bool debug = false;        // libfuse request tracing to stderr
  unsigned max_threads = 16;
  unsigned idle_threads = 4;
  bool handle_signals = true;  // SIGINT/SIGTERM/SIGHUP unmount (one mount per process)
  std::string fsname = "ferry";
};

class FuseServer {
 public:
  FuseServer(ImageFs* fs, FuseOptions opt);
  ~FuseServer();

  Status Mount(const std::string& mountpoint);
  // Detaches into the background after Mount(): the calling process exits 0
  // once the child is ready; the child returns OK and goes on to Serve().
  // Call before any thread is started.
  Status Daemonize();
  // Blocks until unmounted (or, with handle_signals, SIGINT/SIGTERM/SIGHUP).
  Status Serve();
  // Detaches the mount (MNT_DETACH) so that Serve() returns once nothing
  // holds it any more; callable from another thread while Serve() runs.
  void Detach();

 private:
  ImageFs* fs_;
  FuseOptions opt_;
  struct fuse_session* se_ = nullptr;
  bool mounted_ = false;
  std::string mountpoint_;
  bool signals_ = false;
};

}  // namespace ferry::fs
