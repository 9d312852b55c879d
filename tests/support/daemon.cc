#include "tests/support/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/support/ferry_cli.h"

namespace ferry::testing {

std::string FerrydBinary() {
  return (std::filesystem::path(FerryBinary()).parent_path() / "ferryd").string();
}

ScopedDaemon::ScopedDaemon(const std::string& root, std::vector<std::string> extra)
    : root_(root), extra_(std::move(extra)) {
  Start();
}

void ScopedDaemon::Start() {
  std::filesystem::create_directories(root_);
  std::string log = root_ + "/test-ferryd.log";
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(out, 1);
    dup2(out, 2);
    std::vector<std::string> args = {FerrydBinary(), "--root", root_};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  // Ready when the log says so (it prints after the socket is listening).
  for (int i = 0; i < 400; ++i) {
    if (Log().find("ferryd: ready (pid " + std::to_string(pid_) + ")") != std::string::npos) return;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("ferryd exited at start-up:\n" + Log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("ferryd did not become ready:\n" + Log());
}

int ScopedDaemon::Signal(int sig) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  int status = 0;
  for (int i = 0; i < 400; ++i) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

ScopedDaemon::~ScopedDaemon() {
  if (pid_ > 0) Signal(SIGTERM);
}

std::string ScopedDaemon::Log() const {
  std::ifstream in(root_ + "/test-ferryd.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
size_t CountEntries(const std::string& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

struct MountLine {
  std::string dev, path, fstype;
};

// Octal escapes (\040) in mountinfo paths are decoded.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<MountLine> ReadMountInfo() {
  std::ifstream in("/proc/self/mountinfo");
  std::vector<MountLine> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, dev, root, path, word;
    ls >> id >> parent >> dev >> root >> path;
    while (ls >> word && word != "-") {
    }
    std::string fstype;
    ls >> fstype;
    out.push_back({dev, Unescape(path), fstype});
  }
  return out;
}
}  // namespace

size_t ScopedDaemon::OpenFds() const { return CountEntries("/proc/" + std::to_string(pid_) + "/fd"); }
size_t ScopedDaemon::Threads() const { return CountEntries("/proc/" + std::to_string(pid_) + "/task"); }
size_t ScopedDaemon::RssKib() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      size_t kib = 0;
      in >> kib;
      return kib;
    }
  }
  return 0;
}

std::vector<std::string> MountsUnder(const std::string& under, const std::string& fstype) {
  std::vector<std::string> out;
  for (const auto& m : ReadMountInfo()) {
    if (m.path.rfind(under, 0) == 0 && (fstype.empty() || m.fstype == fstype)) out.push_back(m.path);
  }
  return out;
}

size_t DistinctDevices(const std::string& under, const std::string& fstype) {
  std::set<std::string> devs;
  for (const auto& m : ReadMountInfo()) {
    if (m.path.rfind(under, 0) == 0 && m.fstype == fstype) devs.insert(m.dev);
  }
  return devs.size();
}

}  // namespace ferry::testing
