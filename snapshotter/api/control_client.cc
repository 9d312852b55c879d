#include "snapshotter/api/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "chunkstore/url_options.h"

namespace ferry::api {

std::string DefaultDaemonRoot() {
  if (const char* env = std::getenv("FERRY_DAEMON"); env != nullptr && *env != '\0') return env;
  if (geteuid() == 0) return "/var/lib/ferryd";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/tmp") + "/.local/share/ferryd";
}

std::string DaemonSocketPath(const std::string& root) { return root + "/ferryd.sock"; }
std::string ControlSocketPath(const std::string& root) { return root + "/ferryd.ctl"; }

Result<uint64_t> ParseByteSize(const std::string& text) {
  auto bytes = chunkstore::ParseScaled(text, 1024);
  if (!bytes.ok() || *bytes > 1.8e19) {
    return InvalidArgumentError("'" + text + "' is not a size (examples: 10G, 512M, 65536)");
  }
  return static_cast<uint64_t>(*bytes);
}

std::string FormatBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

uint64_t JsonU64(const nlohmann::json& message, const char* field) {
  auto it = message.find(field);
  if (it == message.end()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_string()) return std::strtoull(it->get<std::string>().c_str(), nullptr, 10);
  return 0;
}

namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Result<nlohmann::json> CallDaemon(const std::string& root, const std::string& method,
                                  const nlohmann::json& request, std::chrono::milliseconds deadline) {
  return CallDaemonStreaming(root, method, request, deadline, nullptr);
}

Result<nlohmann::json> CallDaemonStreaming(
    const std::string& root, const std::string& method, const nlohmann::json& request,
    std::chrono::milliseconds deadline,
    const std::function<void(const nlohmann::json&)>& on_progress) {
  const std::string path = ControlSocketPath(root);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgumentError("socket path " + path + " is too long for a unix socket");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return ErrnoError("socket");
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == ENOENT) {
      return Status(StatusCode::kUnavailable,
                    "no ferryd is running for " + root + " (no socket " + path +
                        "); start one with `ferryd --root " + root +
                        "`, or pass --start-daemon to ferry mount");
    }
    if (err == ECONNREFUSED) {
      return Status(StatusCode::kUnavailable,
                    "ferryd at " + path + " does not answer (connection refused); is it running?");
    }
    return ErrnoError("connect to ferryd at " + path, err);
  }

  auto until = std::chrono::steady_clock::now() + deadline;
  auto wait = [&](short events) -> Status {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return Status(StatusCode::kDeadlineExceeded,
                      "ferryd at " + path + " did not answer " + method + " within " +
                          std::to_string(deadline.count() / 1000) + " s");
      }
      pollfd p{fd.get(), events, 0};
      int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
      if (rc > 0) return Status::Ok();
      if (rc < 0 && errno != EINTR) return ErrnoError("poll ferryd socket");
    }
  };

  std::string out;
  try {
    out = nlohmann::json{{"method", method}, {"request", request}}.dump() + "\n";
  } catch (const nlohmann::json::exception&) {
    return InvalidArgumentError(method + ": a name or path in the request is not valid UTF-8");
  }
  for (size_t done = 0; done < out.size();) {
    RETURN_IF_ERROR(wait(POLLOUT));
    ssize_t n = send(fd.get(), out.data() + done, out.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoError("send to ferryd at " + path);
    done += static_cast<size_t>(n);
  }
  std::string in;
  char buf[65536];
  for (;;) {
    RETURN_IF_ERROR(wait(POLLIN));
    ssize_t n = recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return ErrnoError("read from ferryd at " + path);
    if (n == 0) break;
    in.append(buf, static_cast<size_t>(n));
    // Progress lines come before the reply, one JSON object each.
    for (size_t eol; on_progress && (eol = in.find('\n')) != std::string::npos;) {
      nlohmann::json line = nlohmann::json::parse(in.substr(0, eol), nullptr, false);
      if (!line.is_object() || !line.contains("progress")) break;  // the reply
      in.erase(0, eol + 1);
      until = std::chrono::steady_clock::now() + deadline;
      on_progress(line["progress"]);
    }
  }
  nlohmann::json reply = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!reply.is_object() || !reply.contains("code") || !reply["code"].is_number_integer()) {
    return Status(StatusCode::kUnavailable,
                  in.empty() ? "ferryd at " + path + " closed the connection without answering " + method
                             : "ferryd at " + path + " sent a malformed reply to " + method);
  }
  int code = reply["code"].get<int>();
  if (code != 0) {
    std::string message = reply.value("message", std::string("(no message)"));
    if (code < 0 || code > static_cast<int>(StatusCode::kInternal)) code = static_cast<int>(StatusCode::kInternal);
    return Status(static_cast<StatusCode>(code), message);
  }
  return reply.contains("reply") ? reply["reply"] : nlohmann::json::object();
}

}  // namespace ferry::api
