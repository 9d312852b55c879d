// Servers for the s3:// store tests: a real S3-compatible server (s3rver)
// and a SigV4-checking front with scripted faults (sigv4_front.py), each on
// 127.0.0.1 at a free port, in its own temporary directory, stopped and
// removed when its owner goes away (and killed if the test process dies).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/support/fs_util.h"

namespace ferry::testing {

// Ends the test program because `what` is missing: exit 77 (CTest's
// "skipped"), or under CI=true, where nothing may be skipped, exit 1.
[[noreturn]] void SkipOrFail(const std::string& what);

// Sets the AWS variables that stores opened by the tests read: s3rver's
// dummy credentials, region us-east-1; clears profiles, tokens, endpoints.
void UseTestCredentials();

// A child process with stdout and stderr in `log`, that must print
// "listening on 127.0.0.1:PORT" within 30 s (else std::runtime_error).
// SIGTERM on destruction, SIGKILL if it lingers.
class ListeningProcess {
 public:
  ListeningProcess(const std::vector<std::string>& argv, const std::string& log);
  ~ListeningProcess();
  ListeningProcess(const ListeningProcess&) = delete;
  ListeningProcess& operator=(const ListeningProcess&) = delete;
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

// s3rver serving bucket kBucket (tests/s3/start-s3rver.sh). Skips or fails
// (SkipOrFail) when node or s3rver is not installed. With `tls`, serves
// https with a fresh self-signed certificate for 127.0.0.1 (cert_file()).
class ScopedS3rver {
 public:
  static constexpr const char* kBucket = "ferry-test";
  explicit ScopedS3rver(bool tls = false);
  int port() const { return process_->port(); }
  // http://127.0.0.1:PORT (https with tls).
  std::string endpoint() const;
  const std::string& cert_file() const { return cert_; }
  // Another bucket (s3rver keeps one directory per bucket).
  void CreateBucket(const std::string& name) const;

 private:
  std::unique_ptr<ScopedTempDir> dir_;  // made once the checks passed (SkipOrFail exits)
  bool tls_;
  std::string cert_;
  std::unique_ptr<ListeningProcess> process_;
};

// sigv4_front.py: checks every request's signature, answers scripted
// faults first, then passes requests to s3rver at `upstream_port`, or with
// 0 serves them from memory. Needs python3 (SkipOrFail otherwise).
class ScopedS3Front {
 public:
  explicit ScopedS3Front(int upstream_port = 0);
  std::string endpoint() const;
  // The next requests are answered with these, one each, before anything
  // else: "503 SlowDown", "403 AccessDenied", "drop", "hang 3".
  void ScriptFaults(const std::vector<std::string>& faults) const;
  // One line per request so far: "METHOD PATH -> STATUS sig=.. conn=..".
  std::vector<std::string> Log() const;

 private:
  std::unique_ptr<ScopedTempDir> dir_;
  std::unique_ptr<ListeningProcess> process_;
};

}  // namespace ferry::testing
