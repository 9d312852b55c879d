#include "snapshotter/api/daemon_client.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace ferry::api {

grpc::Status ToGrpc(const Status& st) {
  using G = grpc::StatusCode;
  G code = G::INTERNAL;
  switch (st.code()) {
    case StatusCode::kOk: return grpc::Status::OK;
    case StatusCode::kNotFound: code = G::NOT_FOUND; break;
    case StatusCode::kInvalidArgument: code = G::INVALID_ARGUMENT; break;
    case StatusCode::kCorruption: code = G::DATA_LOSS; break;
    case StatusCode::kUnavailable: code = G::UNAVAILABLE; break;
    case StatusCode::kDeadlineExceeded: code = G::DEADLINE_EXCEEDED; break;
    case StatusCode::kFailedPrecondition: code = G::FAILED_PRECONDITION; break;
    case StatusCode::kAlreadyExists: code = G::ALREADY_EXISTS; break;
    case StatusCode::kIoError: code = G::UNKNOWN; break;
    case StatusCode::kInternal: code = G::INTERNAL; break;
  }
  return grpc::Status(code, st.message());
}

Status FromGrpc(const grpc::Status& st) {
  using G = grpc::StatusCode;
  StatusCode code = StatusCode::kInternal;
  switch (st.error_code()) {
    case G::OK: return Status::Ok();
    case G::NOT_FOUND: code = StatusCode::kNotFound; break;
    case G::INVALID_ARGUMENT: code = StatusCode::kInvalidArgument; break;
    case G::DATA_LOSS: code = StatusCode::kCorruption; break;
    case G::UNAVAILABLE: code = StatusCode::kUnavailable; break;
    case G::DEADLINE_EXCEEDED: code = StatusCode::kDeadlineExceeded; break;
    case G::FAILED_PRECONDITION: code = StatusCode::kFailedPrecondition; break;
    case G::ALREADY_EXISTS: code = StatusCode::kAlreadyExists; break;
    case G::UNKNOWN: code = StatusCode::kIoError; break;
    default: break;
  }
  return Status(code, st.error_message());
}

DaemonClient::DaemonClient(const std::string& root) : root_(root) {
  grpc::ChannelArguments args;
  // A dead daemon should be reported at once, not retried for seconds.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  auto channel = grpc::CreateCustomChannel("unix:" + DaemonSocketPath(root),
                                           grpc::InsecureChannelCredentials(), args);
  stub_ = daemon::Ferryd::NewStub(channel);
}

Status DaemonClient::Check(const grpc::Status& st) const {
  if (st.ok()) return Status::Ok();
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE &&
      access(DaemonSocketPath(root_).c_str(), F_OK) != 0) {
    return Status(StatusCode::kUnavailable,
                  "no ferryd is running for " + root_ + " (no socket " + DaemonSocketPath(root_) +
                      "); start one with `ferryd --root " + root_ +
                      "`, or pass --start-daemon to ferry mount");
  }
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return Status(StatusCode::kUnavailable,
                  "ferryd at " + DaemonSocketPath(root_) + " does not answer (" +
                      st.error_message() + "); is it running?");
  }
  return FromGrpc(st);
}

namespace {
std::unique_ptr<grpc::ClientContext> Context(std::chrono::milliseconds deadline) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + deadline);
  return ctx;
}
// Mounting may load an image from a slow store; everything else is local.
constexpr std::chrono::milliseconds kMountDeadline = std::chrono::minutes(5);
constexpr std::chrono::milliseconds kLocalDeadline = std::chrono::seconds(60);
}  // namespace

Result<daemon::PingReply> DaemonClient::Ping(std::chrono::milliseconds deadline) {
  daemon::PingReply reply;
  auto ctx = Context(deadline);
  RETURN_IF_ERROR(Check(stub_->Ping(ctx.get(), daemon::PingRequest(), &reply)));
  return reply;
}

Result<daemon::MountReply> DaemonClient::Mount(const daemon::MountRequest& req) {
  daemon::MountReply reply;
  auto ctx = Context(kMountDeadline);
  RETURN_IF_ERROR(Check(stub_->Mount(ctx.get(), req, &reply)));
  return reply;
}

Result<daemon::UnmountReply> DaemonClient::Unmount(const daemon::UnmountRequest& req) {
  daemon::UnmountReply reply;
  auto ctx = Context(kLocalDeadline);
  RETURN_IF_ERROR(Check(stub_->Unmount(ctx.get(), req, &reply)));
  return reply;
}

Result<daemon::ListMountsReply> DaemonClient::ListMounts() {
  daemon::ListMountsReply reply;
  auto ctx = Context(kLocalDeadline);
  RETURN_IF_ERROR(Check(stub_->ListMounts(ctx.get(), daemon::ListMountsRequest(), &reply)));
  return reply;
}

Result<daemon::CacheStatsReply> DaemonClient::CacheStats() {
  daemon::CacheStatsReply reply;
  auto ctx = Context(kLocalDeadline);
  RETURN_IF_ERROR(Check(stub_->CacheStats(ctx.get(), daemon::CacheStatsRequest(), &reply)));
  return reply;
}

Result<daemon::CachePruneReply> DaemonClient::CachePrune(uint64_t to_bytes) {
  daemon::CachePruneRequest req;
  req.set_to_bytes(to_bytes);
  daemon::CachePruneReply reply;
  auto ctx = Context(std::chrono::minutes(10));
  RETURN_IF_ERROR(Check(stub_->CachePrune(ctx.get(), req, &reply)));
  return reply;
}

Result<daemon::ProfileReply> DaemonClient::Profile(const std::string& target, bool start) {
  daemon::ProfileRequest req;
  req.set_target(target);
  daemon::ProfileReply reply;
  auto ctx = Context(kMountDeadline);
  RETURN_IF_ERROR(Check(start ? stub_->ProfileStart(ctx.get(), req, &reply)
                              : stub_->ProfileStop(ctx.get(), req, &reply)));
  return reply;
}

}  // namespace ferry::api
