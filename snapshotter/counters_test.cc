// The counter tables against the API: every counter fills a field of its
// name, and every counter field is filled.
#include "snapshotter/counters.h"

#include <catch2/catch.hpp>
#include <google/protobuf/util/json_util.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "snapshotter/api/ferryd.pb.h"

namespace ferry::snapshotter {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

// The singular uint64 fields of `d`: the ones the tables must fill.
std::set<std::string> CounterFields(const Descriptor* d) {
  std::set<std::string> out;
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (!f->is_repeated() && f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64) {
      out.insert(std::string(f->name()));
    }
  }
  return out;
}

template <typename Table>
std::set<std::string> Names(const Table& table) {
  std::set<std::string> out;
  for (const auto& c : table) {
    INFO(c.name);
    CHECK(out.insert(std::string(c.name)).second);  // each name once
  }
  return out;
}

TEST_CASE("counters: the image counters are exactly the counter fields of ImageStats") {
  CHECK(Names(kImageCounters) == CounterFields(daemon::ImageStats::descriptor()));
  // In the order of the .proto's field numbers.
  int last = 0;
  for (const ImageCounter& c : kImageCounters) {
    const FieldDescriptor* f = daemon::ImageStats::descriptor()->FindFieldByName(std::string(c.name));
    REQUIRE(f != nullptr);
    CHECK(f->number() > last);
    last = f->number();
  }
}

TEST_CASE("counters: the node cache counters are exactly the counter fields of CacheStatsReply") {
  CHECK(Names(kNodeCacheCounters) == CounterFields(daemon::CacheStatsReply::descriptor()));
}

TEST_CASE("counters: filled by name, they read back from the generated accessors and the JSON") {
  daemon::ImageStats m;
  uint64_t v = 1000;
  for (const ImageCounter& c : kImageCounters) CHECK(SetCounterField(&m, c.name, ++v));
  CHECK(m.reads() == 1001);
  CHECK(m.read_bytes() == 1002);
  CHECK(m.memory_hits() == 1004);
  CHECK(m.locality_chunks() == 1014);
  // The control socket's JSON form: the same names, 64-bit values as strings.
  std::string json;
  google::protobuf::util::JsonPrintOptions opt;
  opt.preserve_proto_field_names = true;
  REQUIRE(google::protobuf::util::MessageToJsonString(m, &json, opt).ok());
  auto parsed = nlohmann::json::parse(json);
  v = 1000;
  for (const ImageCounter& c : kImageCounters) {
    INFO(c.name);
    CHECK(parsed.at(std::string(c.name)) == std::to_string(++v));
  }

  daemon::CacheStatsReply r;
  chunkstore::NodeCacheStats s;
  s.hits = 7;
  s.evicted_bytes = 9;
  for (const NodeCacheCounter& c : kNodeCacheCounters) CHECK(SetCounterField(&r, c.name, s.*c.member));
  CHECK(r.hits() == 7);
  CHECK(r.evicted_bytes() == 9);
}

TEST_CASE("counters: a name without a uint64 field of that name sets nothing") {
  daemon::ImageStats m;
  CHECK_FALSE(SetCounterField(&m, "no_such_counter", 1));
  CHECK_FALSE(SetCounterField(&m, "image_id", 1));    // a string
  CHECK_FALSE(SetCounterField(&m, "references", 1));  // a uint32
  CHECK(m.ByteSizeLong() == 0);
}

}  // namespace
}  // namespace ferry::snapshotter
