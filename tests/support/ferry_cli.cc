#include "tests/support/ferry_cli.h"

#include <algorithm>
#include <fcntl.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace ferry::testing {

void ExecOrExit(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  _exit(127);
}

CommandResult Run(const std::vector<std::string>& argv) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, STDIN_FILENO);
    ExecOrExit(argv);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  CommandResult r;
  // Both pipes are read until EOF. A daemonizing child keeps no copy of
  // them (libfuse points its stdio at /dev/null).
  struct pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string FerryBinary() {
  if (const char* env = std::getenv("FERRY_BIN")) return env;
  return FERRY_BIN_DEFAULT;
}

CommandResult Ferry(const std::string& store, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {FerryBinary(), "--store", store};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv);
}

ScopedMount::ScopedMount(const std::string& store, const std::string& image,
                         const std::string& mountpoint, const std::vector<std::string>& extra)
    : mountpoint_(mountpoint) {
  std::vector<std::string> args = {"mount", image, mountpoint};
  args.insert(args.end(), extra.begin(), extra.end());
  if (std::find(extra.begin(), extra.end(), "--daemon") == extra.end()) args.push_back("--no-daemon");
  result_ = Ferry(store, args);
}

ScopedMount::~ScopedMount() {
  if (!ok()) return;
  auto r = Ferry("/nonexistent-unused", {"umount", mountpoint_});
  if (r.exit_code != 0) umount2(mountpoint_.c_str(), MNT_DETACH);
}

void RequireFuseOrSkip() {
  bool ok = geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0;
  if (ok) return;
  const char* ci = std::getenv("CI");
  if (ci != nullptr && std::strcmp(ci, "true") == 0) {
    std::fprintf(stderr, "FAIL: this test needs root and /dev/fuse, and CI=true\n");
    std::exit(1);
  }
  std::fprintf(stderr, "SKIP: this test needs root and /dev/fuse\n");
  std::exit(77);
}

}  // namespace ferry::testing
