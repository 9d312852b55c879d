// DaemonClient: a gRPC client of ferryd, the per-host daemon that owns the
// node cache and serves every mount (API: snapshotter/api/ferryd.proto). The
// `ferry` CLI uses the control socket instead (snapshotter/api/control_client.h).
//
// The daemon listens on ROOT/ferryd.sock. Every call has a deadline; a
// daemon that is not running (no socket, connection refused) is
// kUnavailable with a message that says how to start one. Daemon errors
// come back with the code and message the daemon gave. Thread-safe.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "chunkstore/status.h"
#include "snapshotter/api/control_client.h"  // DefaultDaemonRoot, DaemonSocketPath
#include "snapshotter/api/ferryd.grpc.pb.h"

namespace ferry::api {

// gRPC status <-> ferry Status, keeping the code's meaning both ways.
grpc::Status ToGrpc(const Status& st);
Status FromGrpc(const grpc::Status& st);

class DaemonClient {
 public:
  explicit DaemonClient(const std::string& root);

  const std::string& root() const { return root_; }
  Result<daemon::PingReply> Ping(std::chrono::milliseconds deadline = std::chrono::seconds(3));
  Result<daemon::MountReply> Mount(const daemon::MountRequest& req);
  Result<daemon::UnmountReply> Unmount(const daemon::UnmountRequest& req);
  Result<daemon::ListMountsReply> ListMounts();
  Result<daemon::CacheStatsReply> CacheStats();
  Result<daemon::CachePruneReply> CachePrune(uint64_t to_bytes);
  Result<daemon::ProfileReply> Profile(const std::string& target, bool start);

 private:
  Status Check(const grpc::Status& st) const;
  std::string root_;
  std::unique_ptr<daemon::Ferryd::Stub> stub_;
};

}  // namespace ferry::api
