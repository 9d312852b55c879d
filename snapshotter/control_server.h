// ControlServer: ferryd's control socket (ROOT/ferryd.ctl). The methods of
// DaemonService, each request and reply one line of JSON (protobuf's JSON
// form of the .proto messages); what the `ferry` CLI uses, since a client
// without gRPC starts fast (snapshotter/api/control_client.h, docs/daemon.md).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "chunkstore/status.h"
#include "snapshotter/daemon_service.h"

namespace ferry::snapshotter {

class ControlServer {
 public:
  // Listens on `path` (owner-only), serving `service`, which must outlive
  // the server. A stale socket file at `path` is replaced.
  static Result<std::unique_ptr<ControlServer>> Start(const std::string& path,
                                                      DaemonService* service);
  // Stops accepting, waits for the calls in progress, removes the socket.
  ~ControlServer();
  // Stops accepting new connections (calls in progress go on).
  void StopAccepting();

 private:
  ControlServer(std::string path, int fd, DaemonService* service)
      : path_(std::move(path)), fd_(fd), service_(service) {}
  void AcceptLoop();
  void Serve(int conn);

  std::string path_;
  int fd_;
  DaemonService* service_;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable idle_cv_;
  int active_ = 0;  // connections being served, under mu_
};

}  // namespace ferry::snapshotter
