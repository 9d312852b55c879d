#include "cli/daemon_verbs.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "cli/verb_support.h"
#include "fs/unmount.h"
#include "snapshotter/api/control_client.h"

namespace ferry::cli {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

// Mounting may load an image from a slow store; everything else is local.
constexpr milliseconds kMountDeadline = std::chrono::minutes(5);
constexpr milliseconds kLocalDeadline = std::chrono::seconds(60);

// Paths go to ferryd absolute: its working directory is not ours.
std::string Absolute(const std::string& path) {
  return std::filesystem::absolute(path).lexically_normal().string();
}

std::string Root(const std::string& root) {
  return Absolute(root.empty() ? api::DefaultDaemonRoot() : root);
}

// ferryd is installed next to ferry (the build tree puts them together);
// otherwise it is looked up on PATH.
std::string FerrydPath() {
  std::string beside = ProgramBesideThis("ferryd");
  return !beside.empty() && access(beside.c_str(), X_OK) == 0 ? beside : "ferryd";
}

// Starts ferryd in its own session, logging to ROOT/ferryd.log, and waits
// until it answers.
Status StartDaemon(const std::string& root, const std::string& cache_size) {
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
    if (api::CallDaemon(root, "Ping", json::object(), milliseconds(200)).ok()) return Status::Ok();
    int wstatus;
    if (waitpid(pid, &wstatus, WNOHANG) == pid) {
      return FailedPreconditionError("ferryd exited at start-up; see " + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status(StatusCode::kDeadlineExceeded, "ferryd did not become ready in 15 s; see " + log);
}

}  // namespace

std::string ProgramBesideThis(const std::string& name) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "";
  self[n] = '\0';
  return std::filesystem::path(self).parent_path() / name;
}

int MountThroughDaemon(const DaemonMountArgs& args) {
  const std::string root = Root(args.daemon_root);
  // A path in another process is as that process sees it: ferryd checks it
  // is absolute, and nothing here can make it so.
  const std::string target = args.into_pid != 0 ? args.mountpoint : Absolute(args.mountpoint);
  json req = {{"store_url", args.store_url}, {"image", args.image}, {"target", target},
              {"writable", args.writable}};
  if (args.into_pid != 0) req["into_pid"] = args.into_pid;
  auto reply = api::CallDaemon(root, "Mount", req, kMountDeadline);
  if (!reply.ok() && reply.status().code() == StatusCode::kUnavailable && args.start_daemon) {
    if (Status st = StartDaemon(root, args.cache_size); !st.ok()) return Fail(st);
    reply = api::CallDaemon(root, "Mount", req, kMountDeadline);
  }
  if (!reply.ok()) return Fail(reply.status());
  const std::string in =
      args.into_pid != 0 ? " in process " + std::to_string(args.into_pid) : "";
  std::printf("mounted %s (%s) at %s%s%s%s%s\n", args.image.c_str(),
              reply->value("image_id", std::string()).substr(0, 12).c_str(), target.c_str(),
              in.c_str(), args.writable ? ", writable" : "",
              reply->value("resumed", false) ? ", resumed (the changes kept there are back)" : "",
              reply->value("shared", false) ? " (shared session)" : "");
  return 0;
}

int Umount(const std::string& daemon_root, const std::string& mountpoint, bool lazy,
           long into_pid) {
  json req = {{"target", into_pid != 0 ? mountpoint : Absolute(mountpoint)},
              {"lazy", lazy}};
  if (into_pid != 0) req["into_pid"] = into_pid;
  auto reply = api::CallDaemon(Root(daemon_root), "Unmount", req, kLocalDeadline);
  if (reply.ok()) return 0;
  if (into_pid != 0) return Fail(reply.status());  // nothing of ours to unmount here
  StatusCode code = reply.status().code();
  if (code != StatusCode::kNotFound && code != StatusCode::kUnavailable) return Fail(reply.status());
  // Not the daemon's: a --no-daemon mount, or one left by a dead daemon.
  if (Status st = fs::Unmount(mountpoint); !st.ok()) return Fail(st);
  return 0;
}

int CacheStats(const std::string& daemon_root, bool as_json, bool flush) {
  json req = json::object();
  if (flush) req["flush"] = true;
  auto reply = api::CallDaemon(Root(daemon_root), "CacheStats", req, kLocalDeadline);
  if (!reply.ok()) return Fail(reply.status());
  if (as_json) {
    std::printf("%s\n", reply->dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return 0;
  }
  const json& s = *reply;
  auto u = [](const json& m, const char* field) { return api::JsonU64(m, field); };
  auto pct = [](uint64_t a, uint64_t b) { return b == 0 ? 0.0 : 100.0 * a / b; };
  std::printf("node cache  %s\n", s.value("cache_dir", std::string()).c_str());
  std::printf("used        %s of %s (%.1f%%), %llu chunks\n", api::FormatBytes(u(s, "used_bytes")).c_str(),
              api::FormatBytes(u(s, "capacity_bytes")).c_str(), pct(u(s, "used_bytes"), u(s, "capacity_bytes")),
              (unsigned long long)u(s, "chunks"));
  std::printf("lookups     %llu hits, %llu misses (%.1f%% hits), %s served from cache\n",
              (unsigned long long)u(s, "hits"), (unsigned long long)u(s, "misses"),
              pct(u(s, "hits"), u(s, "hits") + u(s, "misses")), api::FormatBytes(u(s, "hit_bytes")).c_str());
  std::printf("admitted    %llu chunks (%s), %llu dropped\n", (unsigned long long)u(s, "admitted"),
              api::FormatBytes(u(s, "admitted_bytes")).c_str(), (unsigned long long)u(s, "dropped"));
  std::printf("evicted     %llu chunks (%s), %llu kept in use\n", (unsigned long long)u(s, "evicted"),
              api::FormatBytes(u(s, "evicted_bytes")).c_str(), (unsigned long long)u(s, "kept"));
  std::printf("corrupt     %llu chunks dropped and refetched\n", (unsigned long long)u(s, "corrupt"));
  if (s.contains("images") && !s["images"].empty()) {
    std::printf("\n%-12s %4s %9s %10s %10s %10s %10s %10s %7s\n", "image", "refs", "reads",
                "read", "from cache", "from store", "fetches", "mem hits", "corrupt");
  }
  for (const json& i : s.value("images", json::array())) {
    std::printf("%-12s %4u %9llu %10s %10s %10s %10llu %10llu %7llu\n",
                i.value("image_id", std::string()).substr(0, 12).c_str(), static_cast<unsigned>(u(i, "references")), (unsigned long long)u(i, "reads"),
                api::FormatBytes(u(i, "read_bytes")).c_str(), api::FormatBytes(u(i, "cache_hit_bytes")).c_str(),
                api::FormatBytes(u(i, "store_bytes")).c_str(), (unsigned long long)u(i, "store_fetches"),
                (unsigned long long)u(i, "memory_hits"), (unsigned long long)u(i, "corrupt"));
  }
  return 0;
}

int CachePrune(const std::string& daemon_root, const std::string& to_size) {
  auto bytes = api::ParseByteSize(to_size);
  if (!bytes.ok()) {
    std::fprintf(stderr, "ferry cache prune: %s\n", bytes.status().message().c_str());
    return 2;
  }
  // 64-bit integers travel as strings in protobuf's JSON form.
  auto r = api::CallDaemon(Root(daemon_root), "CachePrune", {{"to_bytes", std::to_string(*bytes)}},
                          std::chrono::minutes(10));
  if (!r.ok()) return Fail(r.status());
  std::printf("evicted %llu chunks; node cache now uses %s\n",
              (unsigned long long)api::JsonU64(*r, "evicted"),
              api::FormatBytes(api::JsonU64(*r, "used_bytes")).c_str());
  return 0;
}

int ProfileOnMount(const std::string& daemon_root, const std::string& mountpoint, bool start) {
  const json req = {{"target", Absolute(mountpoint)}};
  auto r = api::CallDaemon(Root(daemon_root), start ? "ProfileStart" : "ProfileStop", req, kMountDeadline);
  if (!r.ok()) return Fail(r.status());
  const std::string id = r->value("image_id", std::string()).substr(0, 12);
  if (start) {
    std::printf("recording which chunks image %s reads; `ferry profile stop %s` stores them\n",
                id.c_str(), mountpoint.c_str());
  } else {
    std::printf("stored a profile of %llu chunks (%.1f MB) for image %s\n",
                (unsigned long long)api::JsonU64(*r, "chunks"), api::JsonU64(*r, "bytes") / 1e6, id.c_str());
  }
  return 0;
}

}  // namespace ferry::cli
