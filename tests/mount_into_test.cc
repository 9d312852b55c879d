// `ferry mount NAME PATH --into PID` end to end: the real ferryd and ferry,
// real FUSE, a real sandbox (a shell in its own mount namespace, made by
// `unshare --mount --propagation private --fork`) that waits for commands
// on a pipe and answers with what it sees. Needs root and /dev/fuse.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "snapshotter/api/control_client.h"
#include "snapshotter/api/daemon_client.h"
#include "tests/daemon_fixture.h"
#include "tests/support/daemon.h"
#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"

namespace ferry::testing {
namespace {

// A shell in its own mount namespace. It runs `setup` first (and then, if
// `chroot_dir` is given, chroots there, keeping its pid), then answers
// every command sent to it with the command's output and a line
// "--done RC". It waits on its input pipe, so it runs until it is told to
// stop; the destructor kills and reaps it, also when a test fails.
class Sandbox {
 public:
  explicit Sandbox(const std::string& setup = "true", const std::string& chroot_dir = "") {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
    const std::string loop =
        "echo \"ready $$\"; while IFS= read -r cmd; do (eval \"$cmd\") 2>&1; "
        "echo \"--done $?\"; done";
    const std::string script =
        "{ " + setup + "; } || { echo \"setup failed\"; exit 1; }; " +
        (chroot_dir.empty() ? loop : "exec chroot " + chroot_dir + " /bin/sh -c '" + loop + "'");
    outer_ = fork();
    if (outer_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      dup2(out[1], 2);
      ExecOrExit({"unshare", "--mount", "--propagation", "private", "--fork", "--kill-child",
                  "sh", "-c", script});
    }
    close(in[0]);
    close(out[1]);
    to_ = in[1];
    from_ = fdopen(out[0], "r");
    std::string line = ReadLine();
    if (line.rfind("ready ", 0) == 0) pid_ = std::stoi(line.substr(6));
    UNSCOPED_INFO("sandbox: " << line);
  }
  ~Sandbox() {
    // The shell first, so that unshare reaps it and exits; then unshare.
    if (pid_ > 0) kill(pid_, SIGKILL);
    if (outer_ > 0) {
      if (pid_ <= 0) kill(outer_, SIGKILL);
      int status;
      waitpid(outer_, &status, 0);
    }
    if (to_ >= 0) close(to_);
    if (from_ != nullptr) fclose(from_);
  }
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  bool ok() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  std::string Pid() const { return std::to_string(pid_); }

  struct Answer {
    int rc = -1;
    std::string out;
  };
  // Runs `cmd` in the sandbox's shell (as the sandbox sees the world).
  Answer Run(const std::string& cmd) {
    Answer a;
    std::string line = cmd + "\n";
    if (write(to_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return a;
    for (;;) {
      line = ReadLine();
      if (line.empty() && feof(from_)) return a;
      if (line.rfind("--done ", 0) == 0) {
        a.rc = std::stoi(line.substr(7));
        return a;
      }
      a.out += line + "\n";
    }
  }

 private:
  std::string ReadLine() {
    std::string line;
    for (int c; from_ != nullptr && (c = fgetc(from_)) != EOF && c != '\n';) line += char(c);
    return line;
  }

  pid_t outer_ = -1;  // unshare
  pid_t pid_ = -1;    // the shell inside
  int to_ = -1;
  FILE* from_ = nullptr;
};

// Mount points at or below `under` in process `pid`'s mount namespace.
std::vector<std::string> MountPointsIn(pid_t pid, const std::string& under) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/mountinfo");
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    f >> id >> parent >> dev >> root >> point;
    if (point == under || point.rfind(under + "/", 0) == 0) out.push_back(point);
  }
  return out;
}

uint64_t MountNamespace(pid_t pid) {
  struct stat st;
  REQUIRE(stat(("/proc/" + std::to_string(pid) + "/ns/mnt").c_str(), &st) == 0);
  return st.st_ino;
}

struct IntoEnv : Env {
  std::string image = tmp.path() + "/image";
  IntoEnv() {
    stdfs::create_directories(image + "/sub");
    std::ofstream(image + "/hello") << "hello from the image\n";
    std::ofstream(image + "/sub/deep") << "deep\n";
    auto b = Ferry(store, {"build", image, "--tag", "img", "-q"});
    INFO(b.err);
    REQUIRE(b.exit_code == 0);
  }
  CommandResult MountInto(const Sandbox& sb, const std::string& path, bool writable = false) {
    std::vector<std::string> args = {"mount", "img", path, "--into", sb.Pid(), "--daemon", root};
    if (writable) args.push_back("--writable");
    return Ferry(store, args);
  }
  CommandResult UmountInto(pid_t pid, const std::string& path) {
    return Ferry(store, {"umount", path, "--into", std::to_string(pid), "--daemon", root});
  }
  nlohmann::json ListMounts() {
    auto r = api::CallDaemon(root, "ListMounts", nlohmann::json::object(), std::chrono::seconds(10));
    REQUIRE(r.ok());
    return r->value("mounts", nlohmann::json::array());
  }
};

TEST_CASE("mount --into: a running sandbox sees the image at once; the host does not; umount removes it") {
  IntoEnv env;
  ScopedDaemon d(env.root);
  Sandbox sb;
  REQUIRE(sb.ok());
  const std::string path = env.tmp.path() + "/view/new/img";  // does not exist yet
  auto m = env.MountInto(sb, path);
  INFO(m.err);
  REQUIRE(m.exit_code == 0);
  CHECK(m.out.find("at " + path + " in process " + sb.Pid()) != std::string::npos);

  auto seen = sb.Run("cat " + path + "/hello " + path + "/sub/deep");
  CHECK(seen.rc == 0);
  CHECK(seen.out == "hello from the image\ndeep\n");
  CHECK(ReadAll("/proc/" + sb.Pid() + "/root" + path + "/hello") == "hello from the image\n");
  CHECK(MountPointsIn(sb.pid(), path) == std::vector<std::string>{path});
  // The host has the directory (made in the sandbox's view of the same
  // filesystem) and no mount on it.
  CHECK(MountsUnder(env.tmp.path() + "/view").empty());
  CHECK(stdfs::is_directory(path));
  CHECK(stdfs::is_empty(path));
  // Read-only.
  auto touch = sb.Run("touch " + path + "/x");
  CHECK(touch.rc != 0);
  CHECK(touch.out.find("Read-only file system") != std::string::npos);

  auto listed = env.ListMounts();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["target"] == path);
  CHECK(U64(listed[0], "into_pid") == static_cast<uint64_t>(sb.pid()));
  CHECK(U64(listed[0], "mount_namespace") == MountNamespace(sb.pid()));
  auto table = nlohmann::json::parse(ReadAll(env.root + "/mounts.json"));
  REQUIRE(table["targets"].size() == 1);
  CHECK(table["targets"][0]["into_pid"] == sb.pid());
  CHECK(table["targets"][0]["mnt_ns"] == MountNamespace(sb.pid()));

  // A host target of the same path is another target.
  CHECK(env.Umount(path).exit_code != 0);
  CHECK(MountPointsIn(sb.pid(), path).size() == 1);

  auto u = env.UmountInto(sb.pid(), path);
  INFO(u.err);
  REQUIRE(u.exit_code == 0);
  CHECK(MountPointsIn(sb.pid(), path).empty());
  auto after = sb.Run("cat " + path + "/hello");
  CHECK(after.rc != 0);
  CHECK(after.out.find("No such file or directory") != std::string::npos);
  CHECK(env.ListMounts().empty());
}

TEST_CASE("mount --into over gRPC: a program attaches, lists and detaches without the CLI") {
  IntoEnv env;
  ScopedDaemon d(env.root);
  Sandbox sb;
  REQUIRE(sb.ok());
  api::DaemonClient client(env.root);
  const std::string path = env.tmp.path() + "/grpc";
  daemon::MountRequest req;
  req.set_store_url("file://" + env.store);
  req.set_image("img");
  req.set_target(path);
  req.set_writable(true);
  req.set_into_pid(sb.pid());
  auto m = client.Mount(req);
  INFO(m.status().message());
  REQUIRE(m.ok());
  CHECK(sb.Run("cat " + path + "/hello").out == "hello from the image\n");
  auto listed = client.ListMounts();
  REQUIRE(listed.ok());
  REQUIRE(listed->mounts_size() == 1);
  CHECK(listed->mounts(0).into_pid() == sb.pid());
  CHECK(listed->mounts(0).mount_namespace() == MountNamespace(sb.pid()));
  CHECK(listed->mounts(0).writable());

  req.set_into_pid(999999999);  // no such process
  auto gone = client.Mount(req);
  CHECK(gone.status().code() == StatusCode::kNotFound);
  req.set_into_pid((int64_t{1} << 32) + sb.pid());  // not cut down to the sandbox's pid
  auto wide = client.Mount(req);
  CHECK(wide.status().code() == StatusCode::kInvalidArgument);
  CHECK(MountPointsIn(sb.pid(), path).size() == 1);

  daemon::UnmountRequest u;
  u.set_target(path);
  u.set_into_pid(sb.pid());
  auto un = client.Unmount(u);
  REQUIRE(un.ok());
  CHECK(un->session_ended());
  CHECK(MountPointsIn(sb.pid(), path).empty());
}

TEST_CASE("mount --into: PATH is as a chrooted sandbox sees it, below its root") {
  IntoEnv env;
  ScopedDaemon d(env.root);
  // A root of its own: the host's /usr bound (in the sandbox's namespace
  // only) below a new directory, with merged-/usr links.
  const std::string r = env.Dir("newroot");
  Sandbox sb("mkdir -p " + r + "/usr && ln -s usr/bin " + r + "/bin && ln -s usr/lib " + r +
                 "/lib && ln -s usr/lib64 " + r + "/lib64 && mount --bind /usr " + r + "/usr",
             r);
  REQUIRE(sb.ok());
  REQUIRE(sb.Run("test -e " + r).rc != 0);  // chrooted: the host's path is not there
  auto m = env.MountInto(sb, "/data/img");
  INFO(m.err);
  REQUIRE(m.exit_code == 0);
  auto seen = sb.Run("cat /data/img/hello");
  CHECK(seen.rc == 0);
  CHECK(seen.out == "hello from the image\n");
  CHECK(stdfs::is_directory(r + "/data/img"));  // made below its root
  CHECK(stdfs::is_empty(r + "/data/img"));      // and mounted in its namespace only
  CHECK(MountPointsIn(sb.pid(), "/data/img") == std::vector<std::string>{"/data/img"});
  REQUIRE(env.UmountInto(sb.pid(), "/data/img").exit_code == 0);
  CHECK(sb.Run("cat /data/img/hello").rc != 0);
  CHECK(MountPointsIn(sb.pid(), "/data/img").empty());
}

TEST_CASE("mount --into --writable: the sandbox writes into a private upper directory") {
  IntoEnv env;
  ScopedDaemon d(env.root);
  Sandbox sb;
  REQUIRE(sb.ok());
  const std::string path = env.tmp.path() + "/rw";
  auto m = env.MountInto(sb, path, /*writable=*/true);
  INFO(m.err);
  REQUIRE(m.exit_code == 0);
  auto w = sb.Run("echo written > " + path + "/new && cat " + path + "/new " + path + "/hello");
  CHECK(w.rc == 0);
  CHECK(w.out == "written\nhello from the image\n");
  CHECK(MountsUnder(path).empty());
  CHECK(stdfs::is_empty(path));  // the host sees its own empty directory
  std::vector<stdfs::path> sandboxes(stdfs::directory_iterator(env.root + "/sandboxes"), {});
  REQUIRE(sandboxes.size() == 1);
  CHECK(ReadAll((sandboxes[0] / "upper" / "new").string()) == "written\n");
  auto listed = env.ListMounts();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["writable"] == true);

  REQUIRE(env.UmountInto(sb.pid(), path).exit_code == 0);
  CHECK(MountPointsIn(sb.pid(), path).empty());
  CHECK(sb.Run("cat " + path + "/new").rc != 0);
  CHECK(stdfs::is_empty(env.root + "/sandboxes"));
}

TEST_CASE("mount --into refuses a gone process, a file, a read-only parent, and leaves no mount") {
  IntoEnv env;
  const std::string ro = env.Dir("ro");
  ScopedDaemon d(env.root);
  Sandbox sb("mount -t tmpfs -o ro tmpfs " + ro);
  REQUIRE(sb.ok());
  const std::string file = env.tmp.path() + "/file";
  std::ofstream(file) << "a file\n";
  const auto before = MountPointsIn(sb.pid(), env.tmp.path());
  REQUIRE(before == std::vector<std::string>{ro});

  pid_t gone_pid;
  {
    Sandbox gone;
    REQUIRE(gone.ok());
    gone_pid = gone.pid();
  }  // killed and reaped
  auto g = Ferry(env.store, {"mount", "img", env.tmp.path() + "/x", "--into",
                             std::to_string(gone_pid), "--daemon", env.root});
  CHECK(g.exit_code != 0);
  CHECK(g.err.find("process " + std::to_string(gone_pid) + " does not exist") != std::string::npos);

  for (bool writable : {false, true}) {
    INFO("writable " << writable);
    auto f = env.MountInto(sb, file, writable);
    CHECK(f.exit_code != 0);
    CHECK(f.err.find(file + " in process " + sb.Pid() + " (or a parent of it) exists and is not "
                     "a directory") != std::string::npos);
    auto under = env.MountInto(sb, file + "/below", writable);
    CHECK(under.exit_code != 0);
    CHECK(under.err.find("is not a directory") != std::string::npos);
    auto r = env.MountInto(sb, ro + "/sub/img", writable);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("cannot create " + ro + "/sub/img in process " + sb.Pid() +
                     ": Read-only file system") != std::string::npos);
    CHECK(MountPointsIn(sb.pid(), env.tmp.path()) == before);
    CHECK(MountsUnder(file).empty());
    CHECK(MountsUnder(env.tmp.path(), "overlay").empty());
    CHECK(stdfs::is_empty(env.root + "/sandboxes"));
  }
  auto rel = Ferry(env.store, {"mount", "img", "relative", "--into", sb.Pid(), "--daemon", env.root});
  CHECK(rel.exit_code != 0);
  CHECK(rel.err.find("must be an absolute path") != std::string::npos);
  CHECK(env.ListMounts().empty());
  CHECK(nlohmann::json::parse(ReadAll(env.root + "/mounts.json"))["targets"].empty());
}

TEST_CASE("mount --into: a sandbox that exits takes the mount along; umount --into forgets it") {
  IntoEnv env;
  ScopedDaemon d(env.root);
  auto sb = std::make_unique<Sandbox>();
  REQUIRE(sb->ok());
  const pid_t pid = sb->pid();
  const std::string path = env.tmp.path() + "/gone";
  REQUIRE(env.MountInto(*sb, path, /*writable=*/true).exit_code == 0);
  sb.reset();  // killed and reaped
  auto u = env.UmountInto(pid, path);
  INFO(u.err);
  CHECK(u.exit_code == 0);
  CHECK(env.ListMounts().empty());
  CHECK(stdfs::is_empty(env.root + "/sandboxes"));
}

TEST_CASE("mount --into: a restarted ferryd detaches what a dead one left in a sandbox") {
  IntoEnv env;
  ScopedDaemon d(env.root);
  Sandbox sb;
  REQUIRE(sb.ok());
  const std::string path = env.tmp.path() + "/left";
  REQUIRE(env.MountInto(sb, path).exit_code == 0);
  REQUIRE(MountPointsIn(sb.pid(), path).size() == 1);
  d.Signal(SIGKILL);
  d.Start();  // answers once it has cleaned up
  CHECK(MountPointsIn(sb.pid(), path).empty());
  CHECK(d.Log().find("removed stale mount " + path + " in process " + sb.Pid()) !=
        std::string::npos);
  CHECK(env.ListMounts().empty());
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  ferry::testing::RequireFuseOrSkip();
  return Catch::Session().run(argc, argv);
}
