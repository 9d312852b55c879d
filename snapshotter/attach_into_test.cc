// Attachments into another process's mount namespace (`ferry mount --into
// PID`), with a fake mounter: no root, nothing really mounted.
// tests/mount_into_test.cc does the same against a real sandbox.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "snapshotter/attachments.h"
#include "snapshotter/fake_mounter.h"
#include "tests/support/fs_util.h"

namespace ferry::snapshotter {
namespace {

namespace stdfs = std::filesystem;

const std::string kImage(64, 'b');
const std::string kSource = "/ferry-root/mnt/" + kImage + ".1";
constexpr pid_t kPid = 4242;
constexpr uint64_t kNs = 4026532000;
const ProcessNamespace kSandbox{kPid, kNs};

struct Fixture {
  testing::ScopedTempDir tmp{"ferry-attach-into"};
  FakeMounter mounter;
  std::unique_ptr<Attachments> attachments = Open(&mounter);

  Fixture() { mounter.StartProcess(kPid, kNs); }
  std::unique_ptr<Attachments> Open(FakeMounter* m) {
    auto a = Attachments::Open(tmp.path(), m);
    REQUIRE(a.ok());
    return std::move(*a);
  }
  static TargetInfo What(const std::string& target, bool writable,
                         ProcessNamespace into = kSandbox) {
    return TargetInfo{target, kImage, "file:///store", writable, "", "", into};
  }
  nlohmann::json Table() {
    std::ifstream in(tmp.path() + "/mounts.json");
    return nlohmann::json::parse(in);
  }
  ptrdiff_t Sandboxes() {
    return std::distance(stdfs::directory_iterator(tmp.path() + "/sandboxes"),
                         stdfs::directory_iterator());
  }
};

TEST_CASE("attach into: a read-only target is a bind in the process's namespace only") {
  Fixture f;
  REQUIRE(f.attachments->Attach(Fixture::What("/data", false), kSource).ok());
  auto m = f.mounter.mounts();
  REQUIRE(m.size() == 1);
  const std::string key = FakeMounter::IntoKey(kNs, "/data");
  REQUIRE(m.count(key) == 1);  // in the namespace, not at /data on the host
  CHECK(m[key].kind == "bind-ro");
  CHECK(m[key].source == kSource);
  auto t = f.attachments->Find("/data", kSandbox);
  REQUIRE(t.has_value());
  CHECK(t->into.pid == kPid);
  CHECK(t->into.mnt_ns == kNs);
  CHECK_FALSE(f.attachments->Find("/data").has_value());  // no host target of that path
  CHECK(f.Table()["targets"][0] ==
        nlohmann::json({{"target", "/data"}, {"image", kImage}, {"store", "file:///store"},
                        {"writable", false}, {"upper", ""}, {"into_pid", kPid}, {"mnt_ns", kNs}}));

  TargetInfo removed;
  REQUIRE(f.attachments->Detach("/data", false, &removed, kSandbox).ok());
  CHECK(removed.into.pid == kPid);
  CHECK(f.mounter.mounts().empty());
  CHECK(f.mounter.unmounted() == std::vector<std::string>{key});
  CHECK(f.Table()["targets"].empty());
}

TEST_CASE("attach into: a writable target is an overlay there; detach removes its upper directory") {
  Fixture f;
  REQUIRE(f.attachments->Attach(Fixture::What("/work", true), kSource).ok());
  auto t = f.attachments->Find("/work", kSandbox);
  REQUIRE(t.has_value());
  CHECK(stdfs::is_directory(t->upper + "/upper"));
  auto m = f.mounter.mounts()[FakeMounter::IntoKey(kNs, "/work")];
  CHECK(m.kind == "overlay");
  CHECK(m.source == kSource);
  CHECK(m.upper == t->upper + "/upper");
  CHECK(m.work == t->upper + "/work");
  TargetInfo removed;
  REQUIRE(f.attachments->Detach("/work", false, &removed, kSandbox).ok());
  CHECK_FALSE(stdfs::exists(t->upper));
  CHECK(f.Sandboxes() == 0);
  CHECK(f.mounter.mounts().empty());
}

TEST_CASE("attach into: one path is a different target on the host, in another namespace, and twice") {
  Fixture f;
  f.mounter.StartProcess(7, 99);
  const std::string host = f.tmp.path() + "/d";
  stdfs::create_directories(host);
  REQUIRE(f.attachments->Attach(Fixture::What(host, false, {}), kSource).ok());
  REQUIRE(f.attachments->CheckFree(host, kSandbox).ok());
  REQUIRE(f.attachments->Attach(Fixture::What(host, false), kSource).ok());
  REQUIRE(f.attachments->Attach(Fixture::What(host, false, {7, 99}), kSource).ok());
  CHECK(f.mounter.mounts().size() == 3);
  CHECK(f.attachments->List().size() == 3);
  CHECK(f.attachments->CheckFree(host, kSandbox).code() == StatusCode::kAlreadyExists);
  Status again = f.attachments->Attach(Fixture::What(host, true), kSource);
  CHECK(again.code() == StatusCode::kAlreadyExists);
  CHECK(f.Sandboxes() == 0);
  // Detaching the one in the sandbox leaves the other two.
  TargetInfo removed;
  REQUIRE(f.attachments->Detach(host, false, &removed, kSandbox).ok());
  CHECK(f.mounter.mounts().count(host) == 1);
  CHECK(f.mounter.mounts().count(FakeMounter::IntoKey(99, host)) == 1);
  CHECK(f.attachments->List().size() == 2);
}

TEST_CASE("attach into: a refused mount leaves no mount, no table entry and no upper directory") {
  Fixture f;
  for (bool writable : {false, true}) {
    INFO("writable " << writable);
    f.mounter.FailNextMount(FakeMounter::IntoKey(kNs, "/etc/passwd"), ENOTDIR);
    Status st = f.attachments->Attach(Fixture::What("/etc/passwd", writable), kSource);
    CHECK(st.sys_errno() == ENOTDIR);
    CHECK(f.mounter.mounts().empty());
    CHECK(f.attachments->List().empty());
    CHECK(f.Table()["targets"].empty());
    CHECK(f.Sandboxes() == 0);
  }
  // A process that is gone: NotFound, and nothing left either.
  Status gone = f.attachments->Attach(Fixture::What("/data", true, {31337, 1}), kSource);
  CHECK(gone.code() == StatusCode::kNotFound);
  CHECK(gone.message() == "process 31337 does not exist");
  CHECK(f.Table()["targets"].empty());
  CHECK(f.Sandboxes() == 0);
}

TEST_CASE("attach into: a target whose process exited is found by pid and forgotten") {
  Fixture f;
  REQUIRE(f.attachments->Attach(Fixture::What("/w", true), kSource).ok());
  const std::string upper = f.attachments->Find("/w", kSandbox)->upper;
  f.mounter.EndProcess(kPid);  // its namespace, and the mount, went with it
  CHECK(f.mounter.mounts().empty());
  TargetInfo removed;
  Status st = f.attachments->Detach("/w", false, &removed, {kPid, 0});
  REQUIRE(st.ok());
  CHECK(removed.target == "/w");
  CHECK_FALSE(stdfs::exists(upper));
  CHECK(f.attachments->List().empty());
  CHECK(f.attachments->Detach("/w", false, &removed, {kPid, 0}).code() == StatusCode::kNotFound);
}

TEST_CASE("attach into: a restart detaches a stale target in its namespace, not in a reused pid's") {
  Fixture f;
  f.mounter.StartProcess(8, 800);
  REQUIRE(f.attachments->Attach(Fixture::What("/a", false), kSource).ok());
  REQUIRE(f.attachments->Attach(Fixture::What("/b", true, {8, 800}), kSource).ok());
  f.attachments.reset();  // the daemon dies; its mounts stay

  FakeMounter kernel;
  kernel.StartProcess(kPid, kNs);
  kernel.StartProcess(8, 801);  // pid 8 exited, and the pid now names another process
  REQUIRE(kernel.BindReadOnlyInto(kSource, kSandbox, "/a").ok());
  REQUIRE(kernel.BindReadOnlyInto(kSource, {8, 801}, "/b").ok());  // not ours
  auto again = f.Open(&kernel);
  CHECK(kernel.unmounted() == std::vector<std::string>{FakeMounter::IntoKey(kNs, "/a") + " (lazy)"});
  CHECK(kernel.mounts().count(FakeMounter::IntoKey(801, "/b")) == 1);
  // /b's namespace is gone: nothing could resume it, so nothing is kept.
  CHECK(f.Sandboxes() == 0);
  CHECK(f.Table()["targets"].empty());
}

TEST_CASE("attach into: a writable target in a namespace that is still there is kept across a restart") {
  Fixture f;
  REQUIRE(f.attachments->Attach(Fixture::What("/w", true), kSource).ok());
  const std::string upper = f.attachments->Find("/w", kSandbox)->upper;
  f.attachments.reset();  // the daemon dies

  FakeMounter kernel;
  kernel.StartProcess(kPid, kNs);
  REQUIRE(kernel.BindReadOnlyInto(kSource, kSandbox, "/w").ok());
  auto again = f.Open(&kernel);
  CHECK(kernel.unmounted() == std::vector<std::string>{FakeMounter::IntoKey(kNs, "/w") + " (lazy)"});
  CHECK(stdfs::is_directory(upper + "/upper"));
  REQUIRE(f.Table()["targets"].size() == 1);
  CHECK(f.Table()["targets"][0]["kept"] == true);
  CHECK(f.Table()["targets"][0]["mnt_ns"] == kNs);
  bool resumed = false;
  REQUIRE(again->Attach(Fixture::What("/w", true), kSource, &resumed).ok());
  CHECK(resumed);
  CHECK(again->Find("/w", kSandbox)->upper == upper);
}

TEST_CASE("attach into: Close detaches targets in namespaces too") {
  Fixture f;
  REQUIRE(f.attachments->Attach(Fixture::What("/a", true), kSource).ok());
  REQUIRE(f.attachments->Attach(Fixture::What("/r", false), kSource).ok());
  f.attachments->Close();
  CHECK(f.mounter.mounts().empty());
  CHECK(f.mounter.unmounted() == std::vector<std::string>{FakeMounter::IntoKey(kNs, "/a") + " (lazy)",
                                                          FakeMounter::IntoKey(kNs, "/r") + " (lazy)"});
  CHECK(f.Sandboxes() == 1);  // the writable one's changes, kept
  REQUIRE(f.Table()["targets"].size() == 1);
  CHECK(f.Table()["targets"][0]["target"] == "/a");
}

}  // namespace
}  // namespace ferry::snapshotter
