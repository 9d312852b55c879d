#include "snapshotter/control_server.h"

#include <google/protobuf/util/json_util.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include "snapshotter/api/daemon_client.h"

namespace ferry::snapshotter {
namespace {

// A request larger than this is refused (real ones are a few hundred bytes).
constexpr size_t kMaxRequest = 1 << 20;
// A client that sends nothing for this long is dropped.
constexpr int kReadTimeoutSeconds = 10;

// Sends one line (a progress message) to the client before the reply.
using LineSender = std::function<void(const std::string&)>;
// Runs one method: JSON request in, JSON reply out.
using Handler =
    std::function<Status(DaemonService*, const std::string&, std::string*, const LineSender&)>;

template <class Req>
Status ParseRequest(const std::string& in, Req* req) {
  if (auto st = google::protobuf::util::JsonStringToMessage(in, req); !st.ok()) {
    return InvalidArgumentError("malformed " + Req::descriptor()->name() + ": " +
                                std::string(st.message()));
  }
  return Status::Ok();
}

Status PrintMessage(const google::protobuf::Message& m, std::string* out) {
  google::protobuf::util::JsonPrintOptions opt;
  opt.always_print_primitive_fields = true;
  opt.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(m, out, opt).ok()) {
    return InternalError("cannot print " + m.GetDescriptor()->name() + " as JSON");
  }
  return Status::Ok();
}

template <class Req, class Rep>
Handler Unary(grpc::Status (DaemonService::*method)(grpc::ServerContext*, const Req*, Rep*)) {
  return [method](DaemonService* service, const std::string& in, std::string* out,
                  const LineSender&) -> Status {
    Req req;
    RETURN_IF_ERROR(ParseRequest(in, &req));
    Rep rep;
    RETURN_IF_ERROR(api::FromGrpc((service->*method)(nullptr, &req, &rep)));
    return PrintMessage(rep, out);
  };
}

// Snapshot streams: each progress message is a line {"progress": {...}};
// the reply is the SnapshotResult.
Status SnapshotHandler(DaemonService* service, const std::string& in, std::string* out,
                       const LineSender& send) {
  daemon::SnapshotRequest req;
  RETURN_IF_ERROR(ParseRequest(in, &req));
  Status printed = Status::Ok();
  RETURN_IF_ERROR(service->RunSnapshot(req, [&](const daemon::SnapshotProgress& m) {
    if (m.has_result()) {
      printed = PrintMessage(m.result(), out);
      return;
    }
    std::string line;
    if (PrintMessage(m, &line).ok()) send("{\"progress\": " + line + "}\n");
  }));
  return printed;
}

const std::map<std::string, Handler>& Methods() {
  static const std::map<std::string, Handler> methods = {
      {"Mount", Unary(&DaemonService::Mount)},
      {"Unmount", Unary(&DaemonService::Unmount)},
      {"ListMounts", Unary(&DaemonService::ListMounts)},
      {"CacheStats", Unary(&DaemonService::CacheStats)},
      {"CachePrune", Unary(&DaemonService::CachePrune)},
      {"ProfileStart", Unary(&DaemonService::ProfileStart)},
      {"ProfileStop", Unary(&DaemonService::ProfileStop)},
      {"Ping", Unary(&DaemonService::Ping)},
      {"Snapshot", SnapshotHandler},
  };
  return methods;
}

void SendAll(int fd, const std::string& data) {
  for (size_t done = 0; done < data.size();) {
    ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away; nothing to tell it
    done += static_cast<size_t>(n);
  }
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& path,
                                                            DaemonService* service) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgumentError("socket path " + path + " is too long for a unix socket");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket");
  unlink(path.c_str());  // left by a daemon that died (ferryd_main checked none runs)
  // Not connectable before listen(): the mode is set before anyone can use it.
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      chmod(path.c_str(), 0600) != 0 || listen(fd, 64) != 0) {
    int err = errno;
    close(fd);
    return ErrnoError("listen on " + path, err);
  }
  std::unique_ptr<ControlServer> server(new ControlServer(path, fd, service));
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

void ControlServer::StopAccepting() {
  if (!stopping_.exchange(true)) shutdown(fd_, SHUT_RDWR);  // wakes accept()
}

ControlServer::~ControlServer() {
  StopAccepting();
  acceptor_.join();
  std::unique_lock<std::mutex> l(mu_);
  idle_cv_.wait(l, [this] { return active_ == 0; });
  close(fd_);
  unlink(path_.c_str());
}

void ControlServer::AcceptLoop() {
  while (!stopping_.load()) {
    int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (stopping_.load()) return;
      std::fprintf(stderr, "ferryd: control socket %s: accept: %s\n", path_.c_str(), std::strerror(err));
      // Out of descriptors or memory passes: wait a little and go on.
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      return;
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      ++active_;
    }
    // One thread per call: a mount may wait on a slow store for minutes.
    std::thread([this, conn] {
      Serve(conn);
      close(conn);
      std::lock_guard<std::mutex> l(mu_);
      if (--active_ == 0) idle_cv_.notify_all();
    }).detach();
  }
}

void ControlServer::Serve(int conn) {
  timeval tv{kReadTimeoutSeconds, 0};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  // A client that stops reading loses its progress lines (and its reply)
  // rather than holding up the call.
  setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  std::string in;
  char buf[4096];
  while (in.find('\n') == std::string::npos && in.size() <= kMaxRequest) {
    ssize_t n = recv(conn, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  Status st = Status::Ok();
  std::string reply;
  std::string method = "(none)";
  nlohmann::json req = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (in.size() > kMaxRequest) {
    st = InvalidArgumentError("request larger than " + std::to_string(kMaxRequest) + " bytes");
  } else if (!req.is_object() || !req.contains("method") || !req["method"].is_string()) {
    st = InvalidArgumentError(
        "malformed request: expected one line of JSON, {\"method\": NAME, \"request\": {...}}");
  } else {
    method = req["method"].get<std::string>();
    auto it = Methods().find(method);
    if (it == Methods().end()) {
      st = InvalidArgumentError("no method '" + method + "' (see snapshotter/api/ferryd.proto)");
    } else {
      st = it->second(service_, req.value("request", nlohmann::json::object()).dump(), &reply,
                      [conn](const std::string& line) { SendAll(conn, line); });
    }
  }
  nlohmann::json out = {{"code", static_cast<int>(st.code())}, {"message", st.message()}};
  if (st.ok()) out["reply"] = nlohmann::json::parse(reply, nullptr, false);
  SendAll(conn, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace ferry::snapshotter
