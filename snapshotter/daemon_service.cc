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

grpc::Status DaemonService::Ping(grpc::ServerContext*, const daemon::PingRequest*,
                                 daemon::PingReply* reply) {
  reply->set_pid(getpid());
  reply->set_root(root_);
  reply->set_version(FERRY_VERSION);
  return grpc::Status::OK;
}

}  // namespace ferry::snapshotter
