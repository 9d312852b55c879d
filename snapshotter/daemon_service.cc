#include "snapshotter/daemon_service.h"

#include <unistd.h>

#include <limits>

#include "snapshotter/api/daemon_client.h"
#include "snapshotter/counters.h"

namespace ferry::snapshotter {
namespace {

// into_pid travels as int64; a value that is no pid must not be cut down
// to one that is.
Status CheckPid(int64_t pid) {
  if (pid < 0 || pid > std::numeric_limits<pid_t>::max()) {
    return InvalidArgumentError("into_pid " + std::to_string(pid) + " is not a process id");
  }
  return Status::Ok();
}

}  // namespace

grpc::Status DaemonService::Mount(grpc::ServerContext*, const daemon::MountRequest* req,
                                  daemon::MountReply* reply) {
  if (Status st = CheckPid(req->into_pid()); !st.ok()) return api::ToGrpc(st);
  auto out = req->into_pid() != 0
                 ? mounts_->MountInto(req->store_url(), req->image(),
                                      static_cast<pid_t>(req->into_pid()), req->target(),
                                      req->writable())
                 : mounts_->Mount(req->store_url(), req->image(), req->target(), req->writable());
  if (!out.ok()) return api::ToGrpc(out.status());
  reply->set_image_id(out->image_id);
  reply->set_shared(out->shared);
  reply->set_resumed(out->resumed);
  return grpc::Status::OK;
}

grpc::Status DaemonService::Unmount(grpc::ServerContext*, const daemon::UnmountRequest* req,
                                    daemon::UnmountReply* reply) {
  if (Status st = CheckPid(req->into_pid()); !st.ok()) return api::ToGrpc(st);
  std::string id;
  auto ended = req->into_pid() != 0
                   ? mounts_->UnmountInto(static_cast<pid_t>(req->into_pid()), req->target(),
                                          req->lazy(), &id)
                   : mounts_->Unmount(req->target(), req->lazy(), &id);
  if (!ended.ok()) return api::ToGrpc(ended.status());
  reply->set_image_id(id);
  reply->set_session_ended(*ended);
  return grpc::Status::OK;
}

grpc::Status DaemonService::ListMounts(grpc::ServerContext*, const daemon::ListMountsRequest*,
                                       daemon::ListMountsReply* reply) {
  for (const TargetInfo& t : mounts_->Targets()) {
    auto* m = reply->add_mounts();
    m->set_target(t.target);
    m->set_image_id(t.image_id);
    m->set_store_url(t.store_url);
    m->set_writable(t.writable);
    m->set_into_pid(t.into.pid);
    m->set_mount_namespace(t.into.mnt_ns);
    m->set_upper_dir(OverlayUpperDir(t));
    m->set_kept(t.kept);
  }
  return grpc::Status::OK;
}

grpc::Status DaemonService::CacheStats(grpc::ServerContext*, const daemon::CacheStatsRequest* req,
                                       daemon::CacheStatsReply* reply) {
  if (req->flush()) cache_->Flush().IgnoreError();  // a failed write is counted as dropped
  chunkstore::NodeCacheStats s = cache_->Stats();
  reply->set_cache_dir(cache_dir_);
  for (const NodeCacheCounter& c : kNodeCacheCounters) SetCounterField(reply, c.name, s.*c.member);
  for (const ImageInfo& i : mounts_->Images()) {
    auto* m = reply->add_images();
    m->set_image_id(i.image_id);
    m->set_store_url(i.store_url);
    m->set_references(i.references);
    for (const CounterValue& c : i.counters) SetCounterField(m, c.name, c.value);
  }
  return grpc::Status::OK;
}

grpc::Status DaemonService::CachePrune(grpc::ServerContext*, const daemon::CachePruneRequest* req,
                                       daemon::CachePruneReply* reply) {
  uint64_t before = cache_->Stats().evicted;
  if (Status st = cache_->Prune(req->to_bytes()); !st.ok()) return api::ToGrpc(st);
  chunkstore::NodeCacheStats s = cache_->Stats();
  reply->set_used_bytes(s.used_bytes);
  reply->set_evicted(s.evicted - before);
  return grpc::Status::OK;
}

grpc::Status DaemonService::ProfileStart(grpc::ServerContext*, const daemon::ProfileRequest* req,
                                         daemon::ProfileReply* reply) {
  auto id = mounts_->StartProfile(req->target());
  if (!id.ok()) return api::ToGrpc(id.status());
  reply->set_image_id(*id);
  return grpc::Status::OK;
}

grpc::Status DaemonService::ProfileStop(grpc::ServerContext*, const daemon::ProfileRequest* req,
                                        daemon::ProfileReply* reply) {
  auto r = mounts_->StopProfile(req->target());
  if (!r.ok()) return api::ToGrpc(r.status());
  reply->set_image_id(std::get<0>(*r));
  reply->set_chunks(std::get<1>(*r));
  reply->set_bytes(std::get<2>(*r));
  return grpc::Status::OK;
}

Status DaemonService::RunSnapshot(
    const daemon::SnapshotRequest& req,
    const std::function<void(const daemon::SnapshotProgress&)>& send) {
  RETURN_IF_ERROR(CheckPid(req.into_pid()));
  SnapshotSpec spec;
  spec.path = req.path();
  spec.tag = req.tag();
  spec.store_url = req.store_url();
  spec.freeze_cgroup = req.freeze_cgroup();
  if (req.zstd_level() < 0 || req.zstd_level() > 19) {
    return InvalidArgumentError("zstd level " + std::to_string(req.zstd_level()) +
                                " is not between 1 and 19");
  }
  if (req.zstd_level() != 0) spec.zstd_level = req.zstd_level();
  spec.into.pid = static_cast<pid_t>(req.into_pid());
  auto out = mounts_->Snapshot(spec, [&](const builder::ProgressReport& p) {
    daemon::SnapshotProgress m;
    m.set_phase(p.phase);
    m.set_files(p.files);
    m.set_bytes(p.bytes);
    m.set_seconds(p.seconds);
    send(m);
  });
  if (!out.ok()) return out.status();
  const builder::BuildSummary& sum = out->summary;
  daemon::SnapshotProgress last;
  last.set_phase("done");
  last.set_files(sum.files_read);
  last.set_bytes(sum.ingest.bytes_in);
  last.set_seconds(sum.seconds);
  daemon::SnapshotResult* r = last.mutable_result();
  r->set_image_id(sum.image.Hex());
  r->set_tag(req.tag());
  r->set_kind(out->kind);
  r->set_base_image_id(out->base_image_id);
  r->set_store_url(out->store_url);
  r->set_target(out->target);
  r->set_subdir(out->subdir);
  r->set_files_read(sum.files_read);
  r->set_bytes_read(sum.ingest.bytes_in);
  r->set_chunks(sum.ingest.chunks);
  r->set_new_chunks(sum.ingest.new_chunks);
  r->set_new_bytes(sum.ingest.new_bytes);
  r->set_written_bytes(sum.ingest.written_bytes);
  r->set_packs(sum.ingest.packs);
  r->set_files(sum.files);
  r->set_logical_bytes(sum.logical_bytes);
  r->set_metadata_bytes(sum.metadata_bytes);
  r->set_object_bytes(sum.object_bytes);
  if (sum.delta_of) r->set_delta_of(sum.delta_of->Hex());
  r->set_seconds(sum.seconds);
  r->set_frozen_ms(out->frozen_ms);
  r->set_profile_chunks(out->profile_chunks);
  r->set_profile_pack(out->profile_pack);
  send(last);
  return Status::Ok();
}

grpc::Status DaemonService::Snapshot(grpc::ServerContext*, const daemon::SnapshotRequest* req,
                                     grpc::ServerWriter<daemon::SnapshotProgress>* writer) {
  // A client that went away stops receiving progress; the snapshot goes on
  // (and is published), as it would if the client had not asked to watch.
  return api::ToGrpc(RunSnapshot(*req, [writer](const daemon::SnapshotProgress& m) {
    writer->Write(m);
  }));
}

grpc::Status DaemonService::Ping(grpc::ServerContext*, const daemon::PingRequest*,
                                 daemon::PingReply* reply) {
  reply->set_pid(getpid());
  reply->set_root(root_);
  reply->set_version(FERRY_VERSION);
  return grpc::Status::OK;
}

}  // namespace ferry::snapshotter
