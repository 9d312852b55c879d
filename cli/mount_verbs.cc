// `ferry mount --no-daemon` (one image served by this process, no node
// cache) and `ferry stats` (what a mount read and fetched).
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>

#include "chunkstore/chunk_reader.h"
#include "cli/store_access.h"
#include "cli/verb_support.h"
#include "cli/verbs.h"
#include "fs/fuse_server.h"
#include "fs/image_fs.h"

namespace ferry::cli {
namespace {

std::string DefaultLogFile() {
  if (geteuid() == 0) return "/var/log/ferry/mount.log";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/state/ferry/mount.log";
}

}  // namespace

int CmdMount(const std::string& store_url, const std::string& name, const std::string& mountpoint,
             bool foreground, std::string log_file, bool debug, size_t cache_mb) {
  auto store = OpenStore(store_url);
  if (!store.ok()) return Fail(store.status());
  Digest id;
  auto image = OpenImage(**store, name, &id);
  if (!image.ok()) return Fail(image.status().Annotate("cannot mount '" + name + "'"));
  if (!IsDirectory(mountpoint)) {
    return Fail(NotFoundError("mount point " + mountpoint + " is not a directory"));
  }
  FILE* log = stderr;
  if (!foreground) {
    if (log_file.empty()) log_file = DefaultLogFile();
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(log_file).parent_path(), ec);
    log = std::fopen(log_file.c_str(), "a");
    if (log == nullptr) return Fail(ErrnoError("open log file " + log_file));
    setvbuf(log, nullptr, _IOLBF, 0);
  }
  std::string mp = std::filesystem::absolute(mountpoint).lexically_normal().string();
  auto logger = [log, mp](const std::string& msg) {
    char when[32];
    std::time_t now = std::time(nullptr);
    std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
    std::fprintf(log, "%s ferry[%d] %s: %s\n", when, getpid(), mp.c_str(), msg.c_str());
  };
  chunkstore::ChunkReader chunks(store->get(), cache_mb << 20);
  fs::ImageFs imagefs(std::move(*image), &chunks, logger);
  fs::FuseOptions fopt;
  fopt.allow_other = geteuid() == 0;
  fopt.debug = debug;
  fopt.fsname = "ferry:" + id.Short();
  fs::FuseServer server(&imagefs, fopt);
  if (Status st = server.Mount(mp); !st.ok()) return Fail(st);
  logger("mounted image " + id.Hex() + " from " + (*store)->Url());
  if (!foreground) {
    std::printf("mounted %s (%s) at %s; log: %s\n", name.c_str(), id.Short().c_str(), mp.c_str(),
                log_file.c_str());
    std::fflush(stdout);
    // Detach: the parent returns with the mount ready; the child serves.
    if (Status st = server.Daemonize(); !st.ok()) return Fail(st);
  }
  Status st = server.Serve();
  logger("unmounted; stats " + imagefs.StatsJson());
  if (!st.ok()) return Fail(st);
  return 0;
}

int CmdStats(const std::string& mountpoint) {
  std::string value(4096, '\0');
  ssize_t n = getxattr(mountpoint.c_str(), "user.ferry.stats", value.data(), value.size());
  if (n < 0) {
    return Fail(ErrnoError(mountpoint + " is not a ferry mount (no stats)"));
  }
  value.resize(static_cast<size_t>(n));
  std::printf("%s\n", value.c_str());
  return 0;
}

}  // namespace ferry::cli
