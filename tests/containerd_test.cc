// End to end with real containerd 1.6, runc and docker-registry on
// loopback: an image ferry built from a registry is pulled by containerd
// through ferryd's snapshotter without one layer blob being downloaded,
// and python3 runs from the lazy mount; an image ferry does not know is
// pulled and unpacked the ordinary way; a file a container writes is in its
// own snapshot only; a restarted ferryd still has every snapshot.
// Needs root, FUSE, containerd, runc, skopeo, umoci, docker-registry, go.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/daemon.h"
#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"
#include "tests/support/registry.h"

namespace ferry::testing {
namespace {

namespace stdfs = std::filesystem;
using json = nlohmann::json;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Sh(const std::string& cmd) {
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
}

const std::string kScripts = std::string(FERRY_SOURCE_DIR) + "/tests/containerd";

// containerd with the ferry proxy snapshotter at `snapshots_socket`, all
// of its state in `dir`; stopped (SIGTERM, wait) with the object.
class Containerd {
 public:
  Containerd(const std::string& dir, const std::string& snapshots_socket) : dir_(dir) {
    stdfs::create_directories(dir);
    std::ofstream(dir + "/config.toml") << "version = 2\nroot = \"" << dir << "/root\"\nstate = \"" << dir
                                        << "/state\"\n[grpc]\n  address = \"" << socket()
                                        << "\"\n[proxy_plugins]\n  [proxy_plugins.ferry]\n"
                                        << "    type = \"snapshot\"\n    address = \"" << snapshots_socket
                                        << "\"\n";
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      int fd = open((dir + "/containerd.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      ExecOrExit({"containerd", "--config", dir + "/config.toml"});
    }
    for (int i = 0; i < 200; ++i) {  // until it answers
      if (Ctr({"version"}).exit_code == 0) return;
      usleep(100 * 1000);
    }
    FAIL("containerd did not start:\n" << ReadFile(dir + "/containerd.log"));
  }
  ~Containerd() {
    Ctr({"tasks", "kill", "-s", "SIGKILL", "c1"});
    Ctr({"containers", "rm", "c1"});
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    Run({"sh", "-c", "grep -o ' " + dir_ + "/[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l"});
  }
  std::string socket() const { return dir_ + "/containerd.sock"; }
  CommandResult Ctr(std::vector<std::string> args) const {
    args.insert(args.begin(), {"ctr", "-a", socket()});
    return Run(args);
  }

 private:
  std::string dir_;
  pid_t pid_ = -1;
};

// An OCI layout at `layout` (tag t) of `rootfs`, plus, if `extra` is
// given, a second layer adding /etc/ferry-layer2 with that content.
void MakeImage(const std::string& tmp, const std::string& layout, const std::string& rootfs,
               const std::string& extra) {
  const std::string bundle = tmp + "/bundle-" + stdfs::path(layout).filename().string();
  Sh("umoci init --layout " + layout + " && umoci new --image " + layout + ":t && umoci unpack --image " +
     layout + ":t " + bundle + " >/dev/null && cp -a " + rootfs + "/. " + bundle + "/rootfs/ && " +
     "umoci repack --refresh-bundle --image " + layout + ":t " + bundle);
  if (!extra.empty()) {
    Sh("printf '%s' '" + extra + "' > " + bundle + "/rootfs/etc/ferry-layer2 && umoci repack --image " + layout +
       ":t " + bundle);
  }
}

TEST_CASE("containerd pulls an image ferry indexed without downloading a layer, runs python3 from it; others unpack as usual") {
  for (const char* tool : {"containerd", "ctr", "runc", "skopeo", "umoci", "docker-registry", "go"}) {
    INFO(tool << " is not installed (scripts/install-deps.sh installs it)");
    REQUIRE(Run({"sh", "-c", std::string("command -v ") + tool}).exit_code == 0);
  }
  ScopedTempDir tmp("ferry-containerd");
  const std::string t = tmp.path();
  auto pull_tool = Run({kScripts + "/build_pull.sh", t + "/go"});
  INFO(pull_tool.err);
  REQUIRE(pull_tool.exit_code == 0);
  const std::string containerd_pull = pull_tool.out.substr(0, pull_tool.out.find('\n'));

  // Two images in a local registry: test/py (two layers, which ferry
  // imports) and test/other (which it does not).
  Sh(kScripts + "/make_python_rootfs.sh " + t + "/rootfs");
  MakeImage(t, t + "/py", t + "/rootfs", "second layer");
  MakeImage(t, t + "/other", t + "/rootfs", "not ferrys");
  LocalRegistry reg(t + "/registry");
  reg.Push(t + "/py:t", "test/py:1");
  reg.Push(t + "/other:t", "test/other:1");
  const std::string store = t + "/store";
  auto built = Ferry(store, {"build", "docker://" + reg.host() + "/test/py:1", "--tag", "py"});
  INFO(built.err);
  REQUIRE(built.exit_code == 0);
  json source = json::parse(ReadFile(store + "/sources/" + built.out.substr(0, 64)));
  REQUIRE(source["layers"].size() == 2);

  const std::string sock = t + "/ferry-snapshots.sock";
  ScopedDaemon ferryd(t + "/ferryd", {"--containerd-socket", sock, "--containerd-store", "file://" + store});
  Containerd ctrd(t + "/containerd", sock);

  // The pull: the manifest and the config from the registry, no layer.
  const std::string ref = reg.host() + "/test/py:1";
  const std::string log_before = ReadFile(reg.log());
  auto pulled = Run({containerd_pull, ctrd.socket(), ref, "ferry"});
  INFO(pulled.err);
  REQUIRE(pulled.exit_code == 0);
  const std::string pull_log = ReadFile(reg.log()).substr(log_before.size());
  for (const json& l : source["layers"]) {
    INFO("layer " << l["digest"]);
    CHECK(pull_log.find("/blobs/" + l["digest"].get<std::string>()) == std::string::npos);
  }
  CHECK(pull_log.find("/blobs/" + source["config"].get<std::string>()) != std::string::npos);
  // Both layers are ferry's committed snapshots, named by chain ID.
  auto ls = ctrd.Ctr({"snapshots", "--snapshotter", "ferry", "ls"});
  CHECK(ls.out.find(source["layers"][0]["chainID"].get<std::string>()) != std::string::npos);
  CHECK(ls.out.find(source["layers"][1]["chainID"].get<std::string>()) != std::string::npos);

  // python3 from the lazy mount; a file written is the container's own.
  auto run = ctrd.Ctr({"run", "--snapshotter", "ferry", ref, "c1", "python3", "-c",
                       "import json, sqlite3; open('/written', 'w').write('c1');"
                       "print('imports ok', open('/etc/ferry-layer2').read())"});
  INFO(run.out << run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.out.find("imports ok second layer") != std::string::npos);
  json table = json::parse(ReadFile(t + "/ferryd/containerd/snapshots.json"));
  std::string upper;
  for (const json& s : table["snapshots"]) {
    const std::string key = s["key"];
    if (key.size() > 3 && key.compare(key.size() - 3, 3, "/c1") == 0) {
      upper = t + "/ferryd/containerd/snapshots/" + std::to_string(s["id"].get<uint64_t>()) + "/fs";
    }
  }
  REQUIRE(!upper.empty());
  CHECK(ReadFile(upper + "/written") == "c1");
  for (const auto& m : MountsUnder(t + "/ferryd/mnt", "fuse.ferry")) CHECK(!stdfs::exists(m + "/written"));
  auto other_view = ctrd.Ctr({"run", "--rm", "--snapshotter", "ferry", ref, "c2", "python3", "-c",
                              "import os; print('sees c1:', os.path.exists('/written'))"});
  CHECK(other_view.out.find("sees c1: False") != std::string::npos);

  // An image ferry did not import: its own second layer is fetched and
  // unpacked as any snapshotter does; its first layer is test/py's (the
  // same tar, so the same chain ID), which ferry serves already.
  json other_index = json::parse(ReadFile(t + "/other/index.json"));
  json other_manifest = json::parse(ReadFile(t + "/other/blobs/sha256/" +
                                             other_index["manifests"][0]["digest"].get<std::string>().substr(7)));
  const std::string other_log_before = ReadFile(reg.log());
  auto other = Run({containerd_pull, ctrd.socket(), reg.host() + "/test/other:1", "ferry"});
  INFO(other.err);
  REQUIRE(other.exit_code == 0);
  const std::string other_log = ReadFile(reg.log()).substr(other_log_before.size());
  CHECK(other_manifest["layers"][0]["digest"] == source["layers"][0]["digest"]);
  CHECK(other_log.find("/blobs/" + other_manifest["layers"][0]["digest"].get<std::string>()) == std::string::npos);
  CHECK(other_log.find("/blobs/" + other_manifest["layers"][1]["digest"].get<std::string>()) != std::string::npos);
  auto other_run = ctrd.Ctr({"run", "--rm", "--snapshotter", "ferry", reg.host() + "/test/other:1", "c3",
                             "python3", "-c", "print(open('/etc/ferry-layer2').read())"});
  INFO(other_run.err);
  CHECK(other_run.out.find("not ferrys") != std::string::npos);

  // ferryd restarted: every snapshot is still there, and a new container
  // runs from the remote layers, mounted again.
  ctrd.Ctr({"tasks", "kill", "-s", "SIGKILL", "c1"});
  ctrd.Ctr({"tasks", "rm", "c1"});
  const std::string before = ctrd.Ctr({"snapshots", "--snapshotter", "ferry", "ls"}).out;
  ferryd.Signal(SIGTERM);
  ferryd.Start();
  const std::string after = ctrd.Ctr({"snapshots", "--snapshotter", "ferry", "ls"}).out;
  CHECK(after == before);
  auto again = ctrd.Ctr({"run", "--rm", "--snapshotter", "ferry", ref, "c4", "python3", "-c",
                         "import json, sqlite3; print('again ok')"});
  INFO(again.err);
  CHECK(again.out.find("again ok") != std::string::npos);
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  ferry::testing::RequireFuseOrSkip();
  return Catch::Session().run(argc, argv);
}
