#include "tests/s3/test_servers.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/support/ferry_cli.h"

namespace ferry::testing {
namespace {

std::string SourceDir() { return FERRY_SOURCE_DIR; }

bool OnPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

void SkipOrFail(const std::string& what) {
  const char* ci = std::getenv("CI");
  if (ci != nullptr && std::strcmp(ci, "true") == 0) {
    std::fprintf(stderr, "FAIL: %s, and CI=true (run scripts/install-deps.sh)\n", what.c_str());
    std::exit(1);
  }
  std::fprintf(stderr, "SKIP: %s (run scripts/install-deps.sh)\n", what.c_str());
  std::exit(77);
}

void UseTestCredentials() {
  setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
  setenv("AWS_REGION", "us-east-1", 1);
  setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  for (const char* name : {"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
                           "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"}) {
    unsetenv(name);
  }
}

ListeningProcess::ListeningProcess(const std::vector<std::string>& argv, const std::string& log) {
  pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    if (getppid() != parent) _exit(1);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY);
    if (fd < 0 || null < 0) _exit(126);
    dup2(null, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    ExecOrExit(argv);
  }
  const std::string marker = "listening on 127.0.0.1:";
  for (int i = 0; i < 600; ++i) {  // 30 s
    std::string text = ReadFile(log);
    size_t at = text.find(marker);
    if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
      port_ = std::atoi(text.c_str() + at + marker.size());
      return;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error(argv[0] + " exited before listening: " + text);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error(argv[0] + " did not start listening within 30 s: " + ReadFile(log));
}

ListeningProcess::~ListeningProcess() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 200; ++i) {  // 10 s
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

ScopedS3rver::ScopedS3rver(bool tls) : tls_(tls) {
  std::string script = SourceDir() + "/tests/s3/start-s3rver.sh";
  if (!OnPath("node")) SkipOrFail("the s3:// tests need node (Debian package nodejs)");
  if (access((SourceDir() + "/tests/s3/node_modules/s3rver/bin/s3rver.js").c_str(), R_OK) != 0) {
    SkipOrFail("the s3:// tests need s3rver in tests/s3/node_modules");
  }
  if (tls && !OnPath("openssl")) SkipOrFail("the TLS test needs the openssl command");
  dir_ = std::make_unique<ScopedTempDir>("ferry-s3");
  std::string data = dir_->path() + "/data";
  std::filesystem::create_directories(data);
  std::vector<std::string> argv = {script, data, kBucket};
  if (tls) {
    cert_ = dir_->path() + "/cert.pem";
    std::string key = dir_->path() + "/key.pem";
    std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                      "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                      key + " -out " + cert_ + " 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl req failed");
    argv.insert(argv.end(), {"--key", key, "--cert", cert_});
  }
  process_ = std::make_unique<ListeningProcess>(argv, dir_->path() + "/s3rver.log");
}

std::string ScopedS3rver::endpoint() const {
  return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port());
}

void ScopedS3rver::CreateBucket(const std::string& name) const {
  std::filesystem::create_directories(dir_->path() + "/data/" + name);
}

ScopedS3Front::ScopedS3Front(int upstream_port) {
  if (!OnPath("python3")) SkipOrFail("the s3:// tests need python3");
  dir_ = std::make_unique<ScopedTempDir>("ferry-s3");
  std::vector<std::string> argv = {"python3", SourceDir() + "/tests/s3/sigv4_front.py",
                                   "--log", dir_->path() + "/requests.log",
                                   "--faults", dir_->path() + "/faults"};
  if (upstream_port != 0) argv.insert(argv.end(), {"--upstream", std::to_string(upstream_port)});
  process_ = std::make_unique<ListeningProcess>(argv, dir_->path() + "/front.log");
}

std::string ScopedS3Front::endpoint() const {
  return "http://127.0.0.1:" + std::to_string(process_->port());
}

void ScopedS3Front::ScriptFaults(const std::vector<std::string>& faults) const {
  std::ofstream out(dir_->path() + "/faults", std::ios::trunc);
  for (const auto& f : faults) out << f << "\n";
}

std::vector<std::string> ScopedS3Front::Log() const {
  std::vector<std::string> lines;
  std::ifstream in(dir_->path() + "/requests.log");
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

}  // namespace ferry::testing
