#include "builder/daemon_cli.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "fs/daemon_client.h"
#include "fs/fuse_server.h"

namespace ferry::cli {
namespace {

int Fail(const Status& st) {
  std::fprintf(stderr, "ferry: %s\n", st.ToString().c_str());
  return st.code() == StatusCode::kNotFound ? 3 : 1;
}

std::string Root(const std::string& root) {
  return std::filesystem::absolute(root.empty() ? fs::DefaultDaemonRoot() : root)
      .lexically_normal()
      .string();
}

// ferryd is installed next to ferry (the build tree puts them together);
// otherwise it is looked up on PATH.
std::string FerrydPath() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string beside = std::filesystem::path(self).parent_path() / "ferryd";
    if (access(beside.c_str(), X_OK) == 0) return beside;
  }
  return "ferryd";
}

// Starts ferryd in its own session, logging to ROOT/ferryd.log, and waits
// until it answers.
Status StartDaemon(fs::DaemonClient& client, const std::string& cache_size) {
  const std::string root = client.root();
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) return ErrnoError("create " + root, ec.value());
  const std::string log = root + "/ferryd.log";
  std::string exe = FerrydPath();
  pid_t pid = fork();
  if (pid < 0) return ErrnoError("fork");
  if (pid == 0) {
    setsid();
    int null = open("/dev/null", O_RDONLY);
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null >= 0) dup2(null, 0);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    for (int fd = 3; fd < 1024; ++fd) close(fd);
    std::vector<std::string> args = {exe, "--root", root};
    if (!cache_size.empty()) {
      args.push_back("--cache-size");
      args.push_back(cache_size);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "ferry: cannot run %s: %s\n", exe.c_str(), std::strerror(errno));
    _exit(127);
  }
  std::fprintf(stderr, "ferry: started ferryd (pid %d) for %s; log: %s\n", pid, root.c_str(),
               log.c_str());
  for (int i = 0; i < 300; ++i) {
    if (client.Ping(std::chrono::milliseconds(200)).ok()) return Status::Ok();
    int wstatus;
    if (waitpid(pid, &wstatus, WNOHANG) == pid) {
      return FailedPreconditionError("ferryd exited at start-up; see " + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status(StatusCode::kDeadlineExceeded, "ferryd did not become ready in 15 s; see " + log);
}

}  // namespace

int MountThroughDaemon(const DaemonMountArgs& args) {
  fs::DaemonClient client(Root(args.daemon_root));
  auto ping = client.Ping(std::chrono::seconds(2));
  if (!ping.ok()) {
    if (!args.start_daemon || ping.status().code() != StatusCode::kUnavailable) {
      return Fail(ping.status());
    }
    if (Status st = StartDaemon(client, args.cache_size); !st.ok()) return Fail(st);
  }
  daemon::MountRequest req;
  req.set_store_url(args.store_url);
  req.set_image(args.image);
  req.set_target(std::filesystem::absolute(args.mountpoint).lexically_normal().string());
  req.set_writable(args.writable);
  auto reply = client.Mount(req);
  if (!reply.ok()) return Fail(reply.status());
  std::printf("mounted %s (%s) at %s%s%s\n", args.image.c_str(), reply->image_id().substr(0, 12).c_str(),
              req.target().c_str(), args.writable ? ", writable" : "",
              reply->shared() ? " (shared session)" : "");
  return 0;
}

int Umount(const std::string& daemon_root, const std::string& mountpoint, bool lazy) {
  fs::DaemonClient client(Root(daemon_root));
  daemon::UnmountRequest req;
  req.set_target(std::filesystem::absolute(mountpoint).lexically_normal().string());
  req.set_lazy(lazy);
  auto reply = client.Unmount(req);
  if (reply.ok()) return 0;
  StatusCode code = reply.status().code();
  if (code != StatusCode::kNotFound && code != StatusCode::kUnavailable) return Fail(reply.status());
  // Not the daemon's: a --no-daemon mount, or one left by a dead daemon.
  if (Status st = fs::Unmount(mountpoint); !st.ok()) return Fail(st);
  return 0;
}

int CacheStats(const std::string& daemon_root, bool json) {
  fs::DaemonClient client(Root(daemon_root));
  auto s = client.CacheStats();
  if (!s.ok()) return Fail(s.status());
  if (json) {
    std::string out;
    google::protobuf::util::JsonPrintOptions opt;
    opt.always_print_primitive_fields = true;
    opt.preserve_proto_field_names = true;
    if (!google::protobuf::util::MessageToJsonString(*s, &out, opt).ok()) {
      return Fail(InternalError("cannot print statistics as JSON"));
    }
    std::printf("%s\n", out.c_str());
    return 0;
  }
  auto pct = [](uint64_t a, uint64_t b) { return b == 0 ? 0.0 : 100.0 * a / b; };
  std::printf("node cache  %s\n", s->cache_dir().c_str());
  std::printf("used        %s of %s (%.1f%%), %llu chunks\n", fs::FormatBytes(s->used_bytes()).c_str(),
              fs::FormatBytes(s->capacity_bytes()).c_str(), pct(s->used_bytes(), s->capacity_bytes()),
              (unsigned long long)s->chunks());
  std::printf("lookups     %llu hits, %llu misses (%.1f%% hits), %s served from cache\n",
              (unsigned long long)s->hits(), (unsigned long long)s->misses(),
              pct(s->hits(), s->hits() + s->misses()), fs::FormatBytes(s->hit_bytes()).c_str());
  std::printf("admitted    %llu chunks (%s), %llu dropped\n", (unsigned long long)s->admitted(),
              fs::FormatBytes(s->admitted_bytes()).c_str(), (unsigned long long)s->dropped());
  std::printf("evicted     %llu chunks (%s), %llu kept in use\n", (unsigned long long)s->evicted(),
              fs::FormatBytes(s->evicted_bytes()).c_str(), (unsigned long long)s->kept());
  std::printf("corrupt     %llu chunks dropped and refetched\n", (unsigned long long)s->corrupt());
  if (s->images_size() > 0) {
    std::printf("\n%-12s %4s %9s %10s %10s %10s %10s %10s %7s\n", "image", "refs", "reads",
                "read", "from cache", "from store", "fetches", "mem hits", "corrupt");
  }
  for (const auto& i : s->images()) {
    std::printf("%-12s %4u %9llu %10s %10s %10s %10llu %10llu %7llu\n",
                i.image_id().substr(0, 12).c_str(), i.references(), (unsigned long long)i.reads(),
                fs::FormatBytes(i.read_bytes()).c_str(), fs::FormatBytes(i.cache_hit_bytes()).c_str(),
                fs::FormatBytes(i.store_bytes()).c_str(), (unsigned long long)i.store_fetches(),
                (unsigned long long)i.memory_hits(), (unsigned long long)i.corrupt());
  }
  return 0;
}

int CachePrune(const std::string& daemon_root, const std::string& to_size) {
  auto bytes = fs::ParseByteSize(to_size);
  if (!bytes.ok()) {
    std::fprintf(stderr, "ferry cache prune: %s\n", bytes.status().message().c_str());
    return 2;
  }
  fs::DaemonClient client(Root(daemon_root));
  auto r = client.CachePrune(*bytes);
  if (!r.ok()) return Fail(r.status());
  std::printf("evicted %llu chunks; node cache now uses %s\n", (unsigned long long)r->evicted(),
              fs::FormatBytes(r->used_bytes()).c_str());
  return 0;
}

int ProfileOnMount(const std::string& daemon_root, const std::string& mountpoint, bool start) {
  fs::DaemonClient client(Root(daemon_root));
  auto r = client.Profile(std::filesystem::absolute(mountpoint).lexically_normal().string(), start);
  if (!r.ok()) return Fail(r.status());
  if (start) {
    std::printf("recording which chunks image %s reads; `ferry profile stop %s` stores them\n",
                r->image_id().substr(0, 12).c_str(), mountpoint.c_str());
  } else {
    std::printf("stored a profile of %llu chunks (%.1f MB) for image %s\n",
                (unsigned long long)r->chunks(), r->bytes() / 1e6, r->image_id().substr(0, 12).c_str());
  }
  return 0;
}

}  // namespace ferry::cli
