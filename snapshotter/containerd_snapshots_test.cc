// ContainerdSnapshots with a fake RemoteLayers (no root, no containerd):
// remote layers by chain ID, what a store that cannot be reached does, what
// a reopened state keeps, and containerd's filter syntax. containerd's own
// suite runs against the real service in tests/containerd/.
#include "snapshotter/containerd_snapshots.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include "tests/support/fs_util.h"

namespace ferry::snapshotter {
namespace {

namespace stdfs = std::filesystem;

const std::string kChain1 = "sha256:" + std::string(64, '1');
const std::string kChain2 = "sha256:" + std::string(64, '2');

// Images by chain ID; Acquire hands out ROOT-like mount points and counts
// the references held.
class FakeRemote final : public RemoteLayers {
 public:
  std::map<std::string, Found> images;
  Status lookup_error = Status::Ok();
  Status acquire_error = Status::Ok();
  std::map<std::string, int> held;  // mount point -> references

  Result<std::optional<Found>> Lookup(const std::string& chain) override {
    if (!lookup_error.ok()) return lookup_error;
    auto it = images.find(chain);
    if (it == images.end()) return std::optional<Found>();
    return std::optional<Found>(it->second);
  }
  Result<std::string> Acquire(const Found& image) override {
    if (!acquire_error.ok()) return acquire_error;
    std::string m = "/fake/mnt/" + image.image_id;
    ++held[m];
    return m;
  }
  void Release(const Found&, const std::string& mountpoint) override {
    if (--held[mountpoint] == 0) held.erase(mountpoint);
  }
};

std::string Option(const std::vector<MountSpec>& m, const std::string& prefix) {
  REQUIRE(m.size() == 1);
  for (const auto& o : m[0].options) {
    if (o.rfind(prefix, 0) == 0) return o.substr(prefix.size());
  }
  return "";
}

TEST_CASE("containerd snapshots: a layer ferry indexed is a remote committed snapshot, stacked on as one lower") {
  testing::ScopedTempDir tmp("ferry-csnap");
  FakeRemote remote;
  remote.images[kChain1] = {"file:///store", std::string(64, 'a')};
  remote.images[kChain2] = {"file:///store", std::string(64, 'b')};
  auto s = ContainerdSnapshots::Open(tmp.path(), &remote);
  REQUIRE(s.ok());
  // containerd's unpacker: Prepare with the target label; AlreadyExists.
  auto p1 = (*s)->Prepare("ns/1/extract-1 " + kChain1, "", {{"containerd.io/snapshot.ref", kChain1}});
  CHECK(p1.status().code() == StatusCode::kAlreadyExists);
  auto info = (*s)->Stat(kChain1);
  REQUIRE(info.ok());
  CHECK(info->kind == SnapshotKind::kCommitted);
  CHECK(info->labels.at("containerd.io/snapshot.ref") == kChain1);
  auto p2 = (*s)->Prepare("ns/2/extract-2 " + kChain2, kChain1, {{"containerd.io/snapshot.ref", kChain2}});
  CHECK(p2.status().code() == StatusCode::kAlreadyExists);
  CHECK((*s)->Stat(kChain2)->parent == kChain1);
  // containerd then finds it by the filter it uses.
  auto found = (*s)->List({"labels.\"containerd.io/snapshot.ref\"==" + kChain2 + ",parent==\"" + kChain1 + "\""});
  REQUIRE(found.ok());
  REQUIRE(found->size() == 1);
  CHECK((*found)[0].name == kChain2);
  // A container over layer 2: one lower directory, the flattened image.
  auto c = (*s)->Prepare("ns/3/c1", kChain2, {});
  REQUIRE(c.ok());
  CHECK((*c)[0].type == "overlay");
  CHECK(Option(*c, "lowerdir=") == "/fake/mnt/" + std::string(64, 'b'));
  CHECK(remote.held.size() == 2);
  // Removing in order releases the images.
  REQUIRE((*s)->Remove("ns/3/c1").ok());
  CHECK((*s)->Remove(kChain1).code() == StatusCode::kFailedPrecondition);  // has a child
  REQUIRE((*s)->Remove(kChain2).ok());
  REQUIRE((*s)->Remove(kChain1).ok());
  CHECK(remote.held.empty());
}

TEST_CASE("containerd snapshots: a layer ferry does not know, or a store that cannot be asked") {
  testing::ScopedTempDir tmp("ferry-csnap-plain");
  FakeRemote remote;
  auto s = ContainerdSnapshots::Open(tmp.path(), &remote);
  REQUIRE(s.ok());
  SECTION("not indexed: an ordinary active snapshot to unpack into") {
    auto p = (*s)->Prepare("ns/1/extract " + kChain1, "", {{"containerd.io/snapshot.ref", kChain1}});
    REQUIRE(p.ok());
    CHECK((*p)[0].type == "bind");
    CHECK((*s)->Stat("ns/1/extract " + kChain1)->kind == SnapshotKind::kActive);
  }
  SECTION("the store cannot be reached: the store's error, nothing made") {
    remote.lookup_error = UnavailableError("s3://bucket: connection refused");
    auto p = (*s)->Prepare("ns/1/extract " + kChain1, "", {{"containerd.io/snapshot.ref", kChain1}});
    CHECK(p.status().code() == StatusCode::kUnavailable);
    CHECK(p.status().message().find("connection refused") != std::string::npos);
    CHECK((*s)->List({})->empty());
  }
}

TEST_CASE("containerd snapshots: reopened, every snapshot is there and remote layers are acquired again") {
  testing::ScopedTempDir tmp("ferry-csnap-reopen");
  FakeRemote remote;
  remote.images[kChain1] = {"file:///store", std::string(64, 'a')};
  {
    auto s = ContainerdSnapshots::Open(tmp.path(), &remote);
    REQUIRE(s.ok());
    CHECK((*s)->Prepare("x " + kChain1, "", {{"containerd.io/snapshot.ref", kChain1}}).status().code() ==
          StatusCode::kAlreadyExists);
    REQUIRE((*s)->Prepare("ns/1/active", kChain1, {{"l", "v"}}).ok());
    REQUIRE((*s)->Prepare("ns/2/base", "", {}).ok());
    REQUIRE((*s)->Commit("ns/3/committed", "ns/2/base", {{"c", "1"}}).ok());
    REQUIRE((*s)->View("ns/4/view", "ns/3/committed", {}).ok());
  }
  CHECK(remote.held.empty());  // released when closed
  // The store cannot be reached at start-up: the state opens all the same,
  // the remote layer is not mounted, and it is mounted when next used.
  remote.acquire_error = UnavailableError("store unreachable");
  {
    auto s = ContainerdSnapshots::Open(tmp.path(), &remote);
    REQUIRE(s.ok());
    CHECK(remote.held.empty());
    CHECK((*s)->Mounts("ns/1/active").status().code() == StatusCode::kUnavailable);
    remote.acquire_error = Status::Ok();
    CHECK((*s)->Mounts("ns/1/active").ok());
    CHECK(remote.held.size() == 1);
  }
  CHECK(remote.held.empty());
  auto s = ContainerdSnapshots::Open(tmp.path(), &remote);
  REQUIRE(s.ok());
  CHECK(remote.held.size() == 1);
  auto all = (*s)->List({});
  REQUIRE(all.ok());
  CHECK(all->size() == 4);
  CHECK((*s)->Stat("ns/1/active")->labels.at("l") == "v");
  CHECK((*s)->Stat("ns/3/committed")->kind == SnapshotKind::kCommitted);
  auto m = (*s)->Mounts("ns/1/active");
  REQUIRE(m.ok());
  CHECK(Option(*m, "lowerdir=") == "/fake/mnt/" + std::string(64, 'a'));
  auto v = (*s)->Mounts("ns/4/view");
  REQUIRE(v.ok());
  CHECK((*v)[0].type == "bind");
  CHECK((*v)[0].options[0] == "ro");
  // A new snapshot does not take an id an old one has.
  REQUIRE((*s)->Prepare("ns/5/new", "", {}).ok());
  const std::string old_upper = Option(*m, "upperdir=");
  const std::string new_dir = (*(*s)->Mounts("ns/5/new"))[0].source;  // no parent: a bind of its directory
  CHECK(!old_upper.empty());
  CHECK(new_dir != old_upper);
  CHECK(stdfs::is_directory(new_dir));
  CHECK(stdfs::is_directory(old_upper));
}

TEST_CASE("containerd filters: fields, labels, quoting, negation, presence, regular expressions, errors") {
  SnapshotInfo a;
  a.name = "a-wl";
  a.parent = "p";
  a.kind = SnapshotKind::kActive;
  a.labels = {{"l", "1"}, {"containerd.io/gc.root", "check"}};
  SnapshotInfo c;
  c.name = "p";
  c.kind = SnapshotKind::kCommitted;
  auto match = [](const std::string& f, const SnapshotInfo& i) {
    auto p = ParseSnapshotFilter(f);
    INFO(f << ": " << p.status().ToString());
    REQUIRE(p.ok());
    return (*p)(i);
  };
  CHECK(match("kind==active", a));
  CHECK(!match("kind==active", c));
  CHECK(match("labels.\"containerd.io/gc.root\"==check", a));
  CHECK(match("kind==active,labels.l", a));
  CHECK(!match("kind==active,labels.missing", a));
  CHECK(match("labels.l==1", a));
  CHECK(!match("labels.l==2", a));
  CHECK(match("parent!=\"\"", a));
  CHECK(!match("parent!=\"\"", c));
  CHECK(match("parent", a));
  CHECK(match("parent", c));  // name, parent, kind are always present (containerd's adaptor)
  CHECK(match("parent==\"\"", c));
  CHECK(!match("labels.missing==\"\"", c));  // == needs the label set
  CHECK(match("labels.missing!=x", c));
  CHECK(match("name~=^a-", a));
  CHECK(!match("name~=^a-", c));
  CHECK(match("name==\"a-wl\"", a));
  CHECK(match("", c));
  for (const char* bad : {"name==\"open", "name~=(", ",", "name==a,,kind==view"}) {
    INFO(bad);
    CHECK(ParseSnapshotFilter(bad).status().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("containerd snapshots: a state file that cannot be read is an error, never an empty table") {
  testing::ScopedTempDir tmp("ferry-csnap-bad");
  stdfs::create_directories(tmp.path() + "/containerd/snapshots.json");  // a directory: unreadable as a file
  auto s = ContainerdSnapshots::Open(tmp.path(), nullptr);
  CHECK(!s.ok());
  stdfs::remove(tmp.path() + "/containerd/snapshots.json");
  std::ofstream(tmp.path() + "/containerd/snapshots.json") << R"({"snapshots": [{"key": "k", "id": 1, "kind": "active", "parent": 7}]})";
  auto typed = ContainerdSnapshots::Open(tmp.path(), nullptr);
  CHECK(typed.status().code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace ferry::snapshotter
