// Counters: every counter ferryd reports, listed once, by the name of the
// field it fills in the API (snapshotter/api/ferryd.proto). The gRPC replies are
// filled from these tables by field name (SetCounterField), and the control
// socket's JSON is protobuf's JSON form of those replies, so one name is
// the struct's member, the proto field and the JSON key alike. Adding a
// counter takes a line here and a field in ferryd.proto; counters_test
// checks that the two lists agree.
#pragma once

#include <cstdint>
#include <string_view>

#include "chunkstore/node_cache.h"
#include "fs/image_fs.h"

namespace google::protobuf {
class Message;
}

namespace ferry::snapshotter {

struct CounterValue {
  std::string_view name;  // a name from one of the tables below
  uint64_t value = 0;
};

// One image's counters since its session started: the fields of
// daemon.ImageStats, in its order, read from the session's ImageFs.
struct ImageCounter {
  std::string_view name;
  uint64_t (*read)(fs::ImageFs& fs);
};
inline constexpr ImageCounter kImageCounters[] = {
    {"reads", [](fs::ImageFs& f) -> uint64_t { return f.counters().reads; }},
    {"read_bytes", [](fs::ImageFs& f) -> uint64_t { return f.counters().read_bytes; }},
    {"read_errors", [](fs::ImageFs& f) -> uint64_t { return f.counters().read_errors; }},
    {"memory_hits", [](fs::ImageFs& f) -> uint64_t { return f.fetch_counters().memory_hits; }},
    {"cache_hits", [](fs::ImageFs& f) -> uint64_t { return f.fetch_counters().cache_hits; }},
    {"cache_hit_bytes", [](fs::ImageFs& f) -> uint64_t { return f.fetch_counters().cache_hit_bytes; }},
    {"cache_misses", [](fs::ImageFs& f) -> uint64_t { return f.fetch_counters().cache_misses; }},
    {"store_fetches", [](fs::ImageFs& f) -> uint64_t { return f.fetch_counters().store_fetches; }},
    {"store_bytes", [](fs::ImageFs& f) -> uint64_t { return f.fetch_counters().store_bytes; }},
    {"corrupt", [](fs::ImageFs& f) -> uint64_t { return f.fetch_counters().corrupt; }},
    {"demand_misses", [](fs::ImageFs& f) -> uint64_t { return f.fetch_counters().demand_misses; }},
    {"profile_chunks", [](fs::ImageFs& f) -> uint64_t { return f.profile_chunks(); }},
    {"retries", [](fs::ImageFs& f) -> uint64_t { return f.fetch_counters().retries; }},
    {"locality_chunks", [](fs::ImageFs& f) -> uint64_t { return f.locality_chunks(); }},
};

// The node cache's figures: the counter fields of daemon.CacheStatsReply.
struct NodeCacheCounter {
  std::string_view name;
  uint64_t chunkstore::NodeCacheStats::*member;
};
inline constexpr NodeCacheCounter kNodeCacheCounters[] = {
    {"capacity_bytes", &chunkstore::NodeCacheStats::capacity_bytes},
    {"used_bytes", &chunkstore::NodeCacheStats::used_bytes},
    {"chunks", &chunkstore::NodeCacheStats::chunks},
    {"hits", &chunkstore::NodeCacheStats::hits},
    {"misses", &chunkstore::NodeCacheStats::misses},
    {"hit_bytes", &chunkstore::NodeCacheStats::hit_bytes},
    {"admitted", &chunkstore::NodeCacheStats::admitted},
    {"admitted_bytes", &chunkstore::NodeCacheStats::admitted_bytes},
    {"dropped", &chunkstore::NodeCacheStats::dropped},
    {"evicted", &chunkstore::NodeCacheStats::evicted},
    {"evicted_bytes", &chunkstore::NodeCacheStats::evicted_bytes},
    {"kept", &chunkstore::NodeCacheStats::kept},
    {"corrupt", &chunkstore::NodeCacheStats::corrupt},
};

// Sets the singular uint64 field `name` of `msg` to `value`, through
// protobuf reflection. False, and `msg` unchanged, if it has no such field
// (which counters_test rules out for the names above).
bool SetCounterField(google::protobuf::Message* msg, std::string_view name, uint64_t value);

}  // namespace ferry::snapshotter
