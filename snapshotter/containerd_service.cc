#include "snapshotter/containerd_service.h"

#include "snapshotter/api/daemon_client.h"

namespace ferry::snapshotter {

namespace v1 = containerd::services::snapshots::v1;

namespace {

std::map<std::string, std::string> Labels(const google::protobuf::Map<std::string, std::string>& m) {
  return {m.begin(), m.end()};
}

template <typename Reply>
grpc::Status FillMounts(const Result<std::vector<MountSpec>>& mounts, Reply* reply) {
  if (!mounts.ok()) return api::ToGrpc(mounts.status());
  for (const MountSpec& m : *mounts) {
    auto* out = reply->add_mounts();
    out->set_type(m.type);
    out->set_source(m.source);
    for (const auto& o : m.options) out->add_options(o);
  }
  return grpc::Status::OK;
}

void SetTime(google::protobuf::Timestamp* t, int64_t ns) {
  t->set_seconds(ns / 1000000000);
  t->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

void ToProto(const SnapshotInfo& info, v1::Info* out) {
  out->set_name(info.name);
  out->set_parent(info.parent);
  out->set_kind(static_cast<v1::Kind>(static_cast<int>(info.kind)));
  SetTime(out->mutable_created_at(), info.created_ns);
  SetTime(out->mutable_updated_at(), info.updated_ns);
  for (const auto& [k, v] : info.labels) (*out->mutable_labels())[k] = v;
}

}  // namespace

// ----------------------------------------------------------- remote ---

Result<std::optional<RemoteLayers::Found>> ManagerRemoteLayers::Lookup(const std::string& chain_id) {
  ASSIGN_OR_RETURN(std::optional<std::string> image, mounts_->FindChain(store_url_, chain_id));
  if (!image) return std::optional<Found>();
  return std::optional<Found>(Found{store_url_, *image});
}

Result<std::string> ManagerRemoteLayers::Acquire(const Found& image) {
  ASSIGN_OR_RETURN(SessionRef ref, mounts_->AcquireImage(image.store_url, image.image_id));
  std::lock_guard<std::mutex> lock(mu_);
  refs_.emplace(ref.mountpoint, ref);
  return ref.mountpoint;
}

void ManagerRemoteLayers::Release(const Found&, const std::string& mountpoint) {
  std::optional<SessionRef> ref;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = refs_.find(mountpoint);
    if (it == refs_.end()) return;
    ref = it->second;
    refs_.erase(it);
  }
  mounts_->ReleaseImage(*ref);
}

// ---------------------------------------------------------- service ---

grpc::Status ContainerdService::Prepare(Ctx*, const v1::PrepareSnapshotRequest* req,
                                        v1::PrepareSnapshotResponse* reply) {
  return FillMounts(s_->Prepare(req->key(), req->parent(), Labels(req->labels())), reply);
}

grpc::Status ContainerdService::View(Ctx*, const v1::ViewSnapshotRequest* req, v1::ViewSnapshotResponse* reply) {
  return FillMounts(s_->View(req->key(), req->parent(), Labels(req->labels())), reply);
}

grpc::Status ContainerdService::Mounts(Ctx*, const v1::MountsRequest* req, v1::MountsResponse* reply) {
  return FillMounts(s_->Mounts(req->key()), reply);
}

grpc::Status ContainerdService::Commit(Ctx*, const v1::CommitSnapshotRequest* req, google::protobuf::Empty*) {
  return api::ToGrpc(s_->Commit(req->name(), req->key(), Labels(req->labels())));
}

grpc::Status ContainerdService::Remove(Ctx*, const v1::RemoveSnapshotRequest* req, google::protobuf::Empty*) {
  return api::ToGrpc(s_->Remove(req->key()));
}

grpc::Status ContainerdService::Stat(Ctx*, const v1::StatSnapshotRequest* req, v1::StatSnapshotResponse* reply) {
  auto info = s_->Stat(req->key());
  if (!info.ok()) return api::ToGrpc(info.status());
  ToProto(*info, reply->mutable_info());
  return grpc::Status::OK;
}

grpc::Status ContainerdService::Update(Ctx*, const v1::UpdateSnapshotRequest* req,
                                       v1::UpdateSnapshotResponse* reply) {
  SnapshotInfo in;
  in.name = req->info().name();
  in.labels = Labels(req->info().labels());
  std::vector<std::string> paths(req->update_mask().paths().begin(), req->update_mask().paths().end());
  auto info = s_->Update(in, paths);
  if (!info.ok()) return api::ToGrpc(info.status());
  ToProto(*info, reply->mutable_info());
  return grpc::Status::OK;
}

grpc::Status ContainerdService::List(Ctx*, const v1::ListSnapshotsRequest* req,
                                     grpc::ServerWriter<v1::ListSnapshotsResponse>* writer) {
  std::vector<std::string> filters(req->filters().begin(), req->filters().end());
  auto list = s_->List(filters);
  if (!list.ok()) return api::ToGrpc(list.status());
  // In batches, as containerd's own server sends them.
  constexpr size_t kBatch = 100;
  for (size_t i = 0; i < list->size(); i += kBatch) {
    v1::ListSnapshotsResponse batch;
    for (size_t j = i; j < std::min(list->size(), i + kBatch); ++j) ToProto((*list)[j], batch.add_info());
    if (!writer->Write(batch)) break;
  }
  return grpc::Status::OK;
}

grpc::Status ContainerdService::Usage(Ctx*, const v1::UsageRequest* req, v1::UsageResponse* reply) {
  auto u = s_->Usage(req->key());
  if (!u.ok()) return api::ToGrpc(u.status());
  reply->set_size(u->size);
  reply->set_inodes(u->inodes);
  return grpc::Status::OK;
}

grpc::Status ContainerdService::Cleanup(Ctx*, const v1::CleanupRequest*, google::protobuf::Empty*) {
  return api::ToGrpc(s_->Cleanup());
}

}  // namespace ferry::snapshotter
