#include "tests/support/registry.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

#include "tests/support/ferry_cli.h"

namespace ferry::testing {

namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& out, bool with_stderr) {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    if (with_stderr) dup2(fd, 2);
    ExecOrExit(argv);
  }
  return pid;
}

void Stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
}

// Waits (up to 20 s) until `url` answers at all.
bool WaitForHttp(const std::string& url) {
  for (int i = 0; i < 200; ++i) {
    auto r = Run({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url});
    if (r.exit_code == 0 && r.out != "000") return true;
    usleep(100 * 1000);
  }
  return false;
}

}  // namespace

int FreePort() {
  auto r = Run({"python3", "-c",
                "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"});
  if (r.exit_code != 0) throw std::runtime_error("no free port: " + r.err);
  return std::stoi(r.out);
}

LocalRegistry::LocalRegistry(const std::string& dir) : dir_(dir), log_(dir + "/registry.log") {
  if (Run({"sh", "-c", "command -v docker-registry"}).exit_code != 0) {
    throw std::runtime_error("docker-registry is not installed (scripts/install-deps.sh installs it)");
  }
  port_ = FreePort();
  Run({"mkdir", "-p", dir_});
  std::ofstream(dir_ + "/config.yml") << "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
                                      << "    rootdirectory: " << dir_ << "/data\nhttp:\n  addr: 127.0.0.1:"
                                      << port_ << "\n";
  pid_ = Spawn({"docker-registry", "serve", dir_ + "/config.yml"}, log_, true);
  if (!WaitForHttp("http://" + host() + "/v2/")) {
    Stop(pid_);
    throw std::runtime_error("docker-registry did not start:\n" + Slurp(log_));
  }
}

LocalRegistry::~LocalRegistry() { Stop(pid_); }

void LocalRegistry::Push(const std::string& layout_ref, const std::string& repo_tag, bool all) const {
  std::vector<std::string> argv = {"skopeo", "copy", "-q", "--dest-tls-verify=false"};
  if (all) argv.push_back("--all");
  argv.push_back("oci:" + layout_ref);
  argv.push_back("docker://" + host() + "/" + repo_tag);
  auto r = Run(argv);
  if (r.exit_code != 0) throw std::runtime_error("skopeo push of " + layout_ref + " failed: " + r.err);
}

std::string LocalRegistry::BlobData(const std::string& digest) const {
  return dir_ + "/data/docker/registry/v2/blobs/sha256/" + digest.substr(7, 2) + "/" + digest.substr(7) + "/data";
}

size_t LocalRegistry::BlobGets(const std::string& repo) const {
  const std::string text = Slurp(log_);
  const std::string want = "\"GET /v2/" + repo;
  size_t n = 0;
  for (size_t at = 0; (at = text.find(want, at)) != std::string::npos; ++at) {
    size_t end = text.find('"', at + 1);
    if (text.substr(at, end - at).find("/blobs/sha256:") != std::string::npos) ++n;
  }
  return n;
}

RegistryFront::RegistryFront(const std::string& dir, int upstream_port, const std::vector<std::string>& flags) {
  const std::string out = dir + "/front.out";
  std::vector<std::string> argv = {"python3", std::string(FERRY_SOURCE_DIR) + "/tests/oci/registry_front.py",
                                   std::to_string(upstream_port)};
  argv.insert(argv.end(), flags.begin(), flags.end());
  pid_ = Spawn(argv, out, false);
  for (int i = 0; i < 200 && port_.empty(); ++i) {  // until it says where it listens
    std::string text = Slurp(out);
    if (text.rfind("listening on ", 0) == 0 && text.find('\n') != std::string::npos) {
      port_ = text.substr(13, text.find('\n') - 13);
    } else {
      usleep(100 * 1000);
    }
  }
  if (port_.empty()) {
    Stop(pid_);
    throw std::runtime_error("registry_front.py did not start");
  }
}

RegistryFront::~RegistryFront() { Stop(pid_); }

}  // namespace ferry::testing
