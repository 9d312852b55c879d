// How the `ferry` CLI talks to ferryd: its control socket, ROOT/ferryd.ctl.
//
// ferryd serves one API (snapshotter/api/ferryd.proto) on two unix sockets:
// gRPC on ROOT/ferryd.sock for programs, and on ROOT/ferryd.ctl the same
// methods as one line of JSON each way, which is what the CLI uses: a
// client that links no gRPC starts in a few milliseconds on a cold host,
// where loading gRPC's libraries takes ~0.1 s (docs/daemon.md has the
// wire format). This library links nothing but libc and nlohmann-json.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "chunkstore/status.h"

namespace ferry::api {

// $FERRY_DAEMON if set; else /var/lib/ferryd for root and
// $HOME/.local/share/ferryd for other users.
std::string DefaultDaemonRoot();
std::string DaemonSocketPath(const std::string& root);   // gRPC
std::string ControlSocketPath(const std::string& root);  // JSON lines

// "10G", "512M", "64k", "1.5T" or plain bytes (K/M/G/T are powers of 1024).
Result<uint64_t> ParseByteSize(const std::string& text);
std::string FormatBytes(uint64_t bytes);  // "1.5 GiB"

// Calls `method` (a method of service Ferryd, e.g. "Mount") with `request`
// (the request message in protobuf's JSON form) and returns the reply
// message in that form, field names as in the .proto, every field present
// (64-bit integers are strings, as protobuf prints them). A daemon that is
// not running is kUnavailable with a message that says how to start one;
// one that does not answer within `deadline` is kDeadlineExceeded; a
// daemon error comes back with its code and message.
Result<nlohmann::json> CallDaemon(const std::string& root, const std::string& method,
                                  const nlohmann::json& request, std::chrono::milliseconds deadline);

// The same for a method that streams progress (Snapshot): each progress
// message goes to `on_progress` as it arrives, and `deadline` is how long
// the daemon may stay silent (it restarts with every message).
Result<nlohmann::json> CallDaemonStreaming(
    const std::string& root, const std::string& method, const nlohmann::json& request,
    std::chrono::milliseconds deadline,
    const std::function<void(const nlohmann::json&)>& on_progress);

// A 64-bit field of a reply (a string, or a number), 0 if absent.
uint64_t JsonU64(const nlohmann::json& message, const char* field);

}  // namespace ferry::api
