// DaemonService: ferryd's control API (snapshotter/api/ferryd.proto) over the
// mount manager and the node cache. Each call maps a ferry Status to a gRPC
// status in one place (api::ToGrpc).
#pragma once

#include <functional>
#include <string>

#include "chunkstore/node_cache.h"
#include "snapshotter/api/ferryd.grpc.pb.h"
#include "snapshotter/mount_manager.h"

namespace ferry::snapshotter {

class DaemonService final : public daemon::Ferryd::Service {
 public:
  // Both must outlive the service.
  DaemonService(std::string root, std::string cache_dir, MountManager* mounts,
                chunkstore::ChunkCache* cache)
      : root_(std::move(root)), cache_dir_(std::move(cache_dir)), mounts_(mounts), cache_(cache) {}

  grpc::Status Mount(grpc::ServerContext*, const daemon::MountRequest*, daemon::MountReply*) override;
  grpc::Status Unmount(grpc::ServerContext*, const daemon::UnmountRequest*,
                       daemon::UnmountReply*) override;
  grpc::Status ListMounts(grpc::ServerContext*, const daemon::ListMountsRequest*,
                          daemon::ListMountsReply*) override;
  grpc::Status CacheStats(grpc::ServerContext*, const daemon::CacheStatsRequest*,
                          daemon::CacheStatsReply*) override;
  grpc::Status CachePrune(grpc::ServerContext*, const daemon::CachePruneRequest*,
                          daemon::CachePruneReply*) override;
  grpc::Status ProfileStart(grpc::ServerContext*, const daemon::ProfileRequest*,
                            daemon::ProfileReply*) override;
  grpc::Status ProfileStop(grpc::ServerContext*, const daemon::ProfileRequest*,
                           daemon::ProfileReply*) override;
  grpc::Status Ping(grpc::ServerContext*, const daemon::PingRequest*, daemon::PingReply*) override;
  grpc::Status Snapshot(grpc::ServerContext*, const daemon::SnapshotRequest*,
                        grpc::ServerWriter<daemon::SnapshotProgress>*) override;

  // Snapshot without gRPC (the control socket): progress messages go to
  // `send`, and so does the last one, with the result.
  Status RunSnapshot(const daemon::SnapshotRequest& req,
                     const std::function<void(const daemon::SnapshotProgress&)>& send);

 private:
  std::string root_, cache_dir_;
  MountManager* mounts_;
  chunkstore::ChunkCache* cache_;
};

}  // namespace ferry::snapshotter
