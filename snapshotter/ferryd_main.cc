// ferryd: the per-host daemon. Owns the node cache and serves every ferry
// mount on the host; `ferry mount`, `ferry umount` and `ferry cache` talk to
// it over gRPC on ROOT/ferryd.sock. Runs in the foreground (a supervisor or
// `ferry mount --start-daemon` puts it in the background); SIGTERM, SIGINT
// or SIGHUP unmount everything it serves and stop it.
//
// Exit codes: 0 clean stop; 1 failure at start-up; 2 usage error.
#include <malloc.h>
#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "chunkstore/node_cache.h"
#include "chunkstore/s3_transport.h"
#include "snapshotter/api/daemon_client.h"
#include "snapshotter/containerd_service.h"
#include "snapshotter/control_server.h"
#include "snapshotter/daemon_service.h"
#include "snapshotter/mount_manager.h"

namespace ferry {
namespace {

int Fail(const Status& st) {
  std::fprintf(stderr, "ferryd: %s\n", st.ToString().c_str());
  return 1;
}

void RaiseFileLimit() {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// Faults in, once, every page of the program's and its libraries' code and
// read-only data (49 MB for this build). Pages mapped into
// a process stay resident until memory is short, so the mount, fetch and
// FUSE paths do not wait on the disk for code the first time a sandbox
// starts after ferryd does (a daemon that has served for a while is in that
// state anyway). Nothing is locked: the kernel may still reclaim them.
// bench/coldstart.sh's store at 20 ms, 'ferry mount' with the page cache
// dropped: about 127 -> 122 ms (medians of 4; close to the noise).
void PrefaultCode() {
#ifdef MADV_POPULATE_READ
  std::FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return;
  char line[4096];
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    unsigned long lo = 0, hi = 0;
    char perms[8] = {};
    int path_at = 0;
    if (std::sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &path_at) < 3) continue;
    // Private, read-only, file-backed: code and constants, never data.
    if (perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' || line[path_at] != '/') continue;
    madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_READ);  // a hint: errors ignored
  }
  std::fclose(maps);
#endif
}

struct Flags {
  std::string root, cache_size = "10G", cache_dir;
  std::string containerd_socket, containerd_store;
  unsigned memory_mb = 64, fetch_threads = 32, prefetch_threads = 0;
  double fetch_deadline_s = 30;
};

int Run(Flags f) {
  // Signals are taken by one thread with sigwait; every other thread,
  // including FUSE's and gRPC's, inherits the blocked mask. So this comes
  // before anything starts a thread: the probe of a stale socket below
  // starts gRPC's client threads, and a SIGTERM delivered to one of those
  // would kill ferryd without unmounting anything.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string root = f.root, cache_dir = f.cache_dir;
  const std::string& cache_size = f.cache_size;
  if (geteuid() != 0) {
    return Fail(FailedPreconditionError(
        "ferryd needs root (it makes bind and overlay mounts); without a daemon, "
        "`ferry mount --no-daemon` serves one image as the calling user"));
  }
  auto capacity = api::ParseByteSize(cache_size);
  if (!capacity.ok()) return Fail(capacity.status().Annotate("--cache-size"));
  std::error_code ec;
  root = std::filesystem::absolute(root).lexically_normal().string();
  if (root.size() > 1 && root.back() == '/') root.pop_back();
  std::filesystem::create_directories(root, ec);
  if (ec) return Fail(ErrnoError("create " + root, ec.value()));
  if (cache_dir.empty()) cache_dir = root + "/cache";
  const std::string socket = api::DaemonSocketPath(root);
  if (socket.size() >= 100) {
    return Fail(InvalidArgumentError("socket path " + socket + " is too long for a unix socket"));
  }
  if (access(socket.c_str(), F_OK) == 0) {
    api::DaemonClient probe(root);
    if (auto ping = probe.Ping(std::chrono::seconds(1)); ping.ok()) {
      return Fail(FailedPreconditionError("another ferryd (pid " + std::to_string(ping->pid()) +
                                          ") is serving " + root));
    }
    unlink(socket.c_str());  // left by a daemon that died
  }
  RaiseFileLimit();
  chunkstore::InitHttpClient();

  chunkstore::NodeCacheOptions copt;
  copt.dir = cache_dir;
  copt.capacity_bytes = *capacity;
  // Segments are the unit of eviction: small enough that one is a small
  // part of the cache, large enough for long sequential writes.
  copt.segment_bytes = std::clamp<uint64_t>(*capacity / 16, 1u << 20, 64u << 20);
  auto cache = chunkstore::OpenNodeCache(copt);
  if (!cache.ok()) return Fail(cache.status().Annotate("node cache"));

  snapshotter::MountManagerOptions mopt;
  mopt.root = root;
  mopt.node_cache = cache->get();
  mopt.memory_cache_bytes = static_cast<size_t>(f.memory_mb) << 20;
  mopt.fetch_threads = f.fetch_threads;
  mopt.prefetch_threads = f.prefetch_threads;
  mopt.fetch_deadline = std::chrono::milliseconds(static_cast<int64_t>(f.fetch_deadline_s * 1000));
  auto mounts = snapshotter::MountManager::Create(mopt);
  if (!mounts.ok()) return Fail(mounts.status());

  snapshotter::DaemonService service(root, cache_dir, mounts->get(), cache->get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return Fail(FailedPreconditionError("cannot listen on " + socket));
  chmod(socket.c_str(), 0600);
  auto control = snapshotter::ControlServer::Start(api::ControlSocketPath(root), &service);
  if (!control.ok()) {
    server->Shutdown();
    return Fail(control.status());
  }
  // containerd's snapshots service, on its own socket if asked for.
  std::unique_ptr<snapshotter::ManagerRemoteLayers> remote;
  std::unique_ptr<snapshotter::ContainerdSnapshots> csnaps;
  std::unique_ptr<snapshotter::ContainerdService> cservice;
  std::unique_ptr<grpc::Server> cserver;
  if (!f.containerd_socket.empty()) {
    if (!f.containerd_store.empty()) {
      remote = std::make_unique<snapshotter::ManagerRemoteLayers>(mounts->get(), f.containerd_store);
    }
    auto cs = snapshotter::ContainerdSnapshots::Open(root, remote.get());
    if (!cs.ok()) {
      server->Shutdown();
      return Fail(cs.status().Annotate("containerd snapshots"));
    }
    csnaps = std::move(*cs);
    cservice = std::make_unique<snapshotter::ContainerdService>(csnaps.get());
    unlink(f.containerd_socket.c_str());
    grpc::ServerBuilder cb;
    cb.AddListeningPort("unix:" + f.containerd_socket, grpc::InsecureServerCredentials());
    cb.RegisterService(cservice.get());
    cserver = cb.BuildAndStart();
    if (!cserver) {
      server->Shutdown();
      return Fail(FailedPreconditionError("cannot listen on " + f.containerd_socket));
    }
    chmod(f.containerd_socket.c_str(), 0600);
    std::fprintf(stderr, "ferryd: containerd snapshotter on %s%s%s\n", f.containerd_socket.c_str(),
                 f.containerd_store.empty() ? "" : ", remote layers from ", f.containerd_store.c_str());
  }
  PrefaultCode();
  std::fprintf(stderr, "ferryd: ready (pid %d): root %s, socket %s, node cache %s (%s)\n",
               getpid(), root.c_str(), socket.c_str(), cache_dir.c_str(),
               api::FormatBytes(*capacity).c_str());

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    std::fprintf(stderr, "ferryd: signal %d: unmounting everything and stopping\n", sig);
    (*control)->StopAccepting();
    if (cserver) cserver->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  });
  server->Wait();
  waiter.join();
  if (cserver) {
    cserver->Wait();
    unlink(f.containerd_socket.c_str());
  }
  csnaps.reset();  // releases the remote layers' sessions
  control->reset();  // waits for calls in progress
  (*mounts)->Shutdown();
  (*cache)->Flush().IgnoreError();
  unlink(socket.c_str());
  std::fprintf(stderr, "ferryd: stopped\n");
  return 0;
}

}  // namespace
}  // namespace ferry

int main(int argc, char** argv) {
  // Keep freed memory for the next request instead of giving it back to the
  // kernel at once: glibc maps blocks over 128 KiB (then up to 32 MiB, as it
  // adapts) afresh and unmaps them when freed, and trims the heap above
  // 128 KiB of free space, so each snapshot (a base's tree and its new
  // metadata object, a few MB) faulted in its pages again. On a 1-file
  // snapshot of the Debian+python3 image (bench/snapshot.sh) ferryd's own
  // time fell from 78 to 25 ms; at most 64 MiB of free heap stays held.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  CLI::App app{"ferryd: the ferry host daemon (node cache and mounts)"};
  ferry::Flags f;
  f.root = ferry::api::DefaultDaemonRoot();
  app.add_option("--root", f.root, "state directory: socket, mounts, node cache")->capture_default_str();
  app.add_option("--cache-size", f.cache_size, "node cache capacity (e.g. 10G, 512M)")->capture_default_str();
  app.add_option("--cache-dir", f.cache_dir, "node cache directory (default ROOT/cache)");
  app.add_option("--memory-cache-mb", f.memory_mb, "in-memory chunk cache per store")->capture_default_str();
  app.add_option("--fetch-threads", f.fetch_threads, "store requests in parallel, per store, for demand reads")
      ->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--prefetch-threads", f.prefetch_threads,
                 "store requests in parallel, per store, for prefetch (0: as --fetch-threads for a remote store, half the CPUs for a local file:// one)")
      ->capture_default_str()->check(CLI::Range(0, 256));
  app.add_option("--fetch-deadline", f.fetch_deadline_s,
                 "seconds a read waits for the store before it fails with EIO")
      ->capture_default_str()->check(CLI::Range(0.01, 3600.0));
  app.add_option("--containerd-socket", f.containerd_socket,
                 "also serve containerd's snapshots API on this unix socket (a proxy_plugins "
                 "entry of type snapshot); state in ROOT/containerd");
  app.add_option("--containerd-store", f.containerd_store,
                 "store URL whose OCI-imported images (ferry build oci:/docker://) serve "
                 "containerd's layers lazily, by chain ID");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return ferry::Run(f);
}
