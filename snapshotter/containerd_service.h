// ContainerdService: containerd's snapshots service
// (containerd.services.snapshots.v1.Snapshots, from the .proto files of
// Debian's containerd development package; snapshotter/api/CMakeLists.txt)
// over ContainerdSnapshots, served by ferryd on its own socket
// (`ferryd --containerd-socket PATH`) for containerd to load as a
// `[proxy_plugins]` entry of type "snapshot".
//
// Remote layers: with `--containerd-store URL`, a layer whose chain ID the
// store's OCI index names (fs/oci_index.h, written by `ferry build oci:...`)
// is a ferry image mounted lazily through ferryd's shared read-only session
// (MountManager::AcquireImage), and never downloaded or unpacked.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.grpc.pb.h"
#include "snapshotter/containerd_snapshots.h"
#include "snapshotter/mount_manager.h"

namespace ferry::snapshotter {

// RemoteLayers over a MountManager and one store.
class ManagerRemoteLayers final : public RemoteLayers {
 public:
  ManagerRemoteLayers(MountManager* mounts, std::string store_url)
      : mounts_(mounts), store_url_(std::move(store_url)) {}
  Result<std::optional<Found>> Lookup(const std::string& chain_id) override;
  Result<std::string> Acquire(const Found& image) override;
  void Release(const Found& image, const std::string& mountpoint) override;

 private:
  MountManager* const mounts_;
  const std::string store_url_;
  std::mutex mu_;
  std::multimap<std::string, SessionRef> refs_;  // by mount point, under mu_
};

class ContainerdService final : public containerd::services::snapshots::v1::Snapshots::Service {
 public:
  explicit ContainerdService(ContainerdSnapshots* snapshots) : s_(snapshots) {}

  using Ctx = grpc::ServerContext;
  grpc::Status Prepare(Ctx*, const containerd::services::snapshots::v1::PrepareSnapshotRequest*,
                       containerd::services::snapshots::v1::PrepareSnapshotResponse*) override;
  grpc::Status View(Ctx*, const containerd::services::snapshots::v1::ViewSnapshotRequest*,
                    containerd::services::snapshots::v1::ViewSnapshotResponse*) override;
  grpc::Status Mounts(Ctx*, const containerd::services::snapshots::v1::MountsRequest*,
                      containerd::services::snapshots::v1::MountsResponse*) override;
  grpc::Status Commit(Ctx*, const containerd::services::snapshots::v1::CommitSnapshotRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status Remove(Ctx*, const containerd::services::snapshots::v1::RemoveSnapshotRequest*,
                      google::protobuf::Empty*) override;
  grpc::Status Stat(Ctx*, const containerd::services::snapshots::v1::StatSnapshotRequest*,
                    containerd::services::snapshots::v1::StatSnapshotResponse*) override;
  grpc::Status Update(Ctx*, const containerd::services::snapshots::v1::UpdateSnapshotRequest*,
                      containerd::services::snapshots::v1::UpdateSnapshotResponse*) override;
  grpc::Status List(Ctx*, const containerd::services::snapshots::v1::ListSnapshotsRequest*,
                    grpc::ServerWriter<containerd::services::snapshots::v1::ListSnapshotsResponse>*) override;
  grpc::Status Usage(Ctx*, const containerd::services::snapshots::v1::UsageRequest*,
                     containerd::services::snapshots::v1::UsageResponse*) override;
  grpc::Status Cleanup(Ctx*, const containerd::services::snapshots::v1::CleanupRequest*,
                       google::protobuf::Empty*) override;

 private:
  ContainerdSnapshots* const s_;
};

}  // namespace ferry::snapshotter
