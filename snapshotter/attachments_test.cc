// Attachments with a fake mounter: no root, nothing really mounted.
#include "snapshotter/attachments.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <iterator>
#include <fstream>
#include <nlohmann/json.hpp>

#include "snapshotter/fake_mounter.h"
#include "tests/support/fs_util.h"

namespace ferry::snapshotter {
namespace {

namespace stdfs = std::filesystem;

const std::string kImage(64, 'a');

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
const std::string kSource = "/ferry-root/mnt/" + kImage + ".1";

struct Fixture {
  testing::ScopedTempDir tmp{"ferry-attachments"};
  FakeMounter mounter;
  std::unique_ptr<Attachments> attachments = Open();

  std::unique_ptr<Attachments> Open() {
    auto a = Attachments::Open(tmp.path(), &mounter);
    REQUIRE(a.ok());
    return std::move(*a);
  }
  static TargetInfo What(const std::string& target, bool writable) {
    return TargetInfo{target, kImage, "file:///store", writable, "", ""};
  }
  // A new directory to attach at.
  std::string Dir(const std::string& name) {
    stdfs::create_directories(tmp.path() + "/" + name);
    return tmp.path() + "/" + name;
  }
  nlohmann::json Table() {
    std::ifstream in(tmp.path() + "/mounts.json");
    return nlohmann::json::parse(in);
  }
  ptrdiff_t Sandboxes() {
    return std::distance(stdfs::directory_iterator(tmp.path() + "/sandboxes"), stdfs::directory_iterator());
  }
};

TEST_CASE("attachments: a read-only target is a read-only bind of the session's mount") {
  Fixture f;
  const std::string t = f.Dir("ro");
  REQUIRE(f.attachments->Attach(Fixture::What(t, false), kSource).ok());
  auto m = f.mounter.mounts();
  REQUIRE(m.count(t) == 1);
  CHECK(m[t].kind == "bind-ro");
  CHECK(m[t].source == kSource);
  auto listed = f.attachments->List();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].target == t);
  CHECK(listed[0].upper.empty());
  CHECK(f.Sandboxes() == 0);

  TargetInfo removed;
  REQUIRE(f.attachments->Detach(t, false, &removed).ok());
  CHECK(removed.image_id == kImage);
  CHECK(removed.source == kSource);
  CHECK(f.mounter.mounts().empty());
  CHECK(f.mounter.unmounted() == std::vector<std::string>{t});
  CHECK(f.attachments->List().empty());
  CHECK(f.Table()["targets"].empty());
}

TEST_CASE("attachments: a writable target is an overlay with a private upper directory, removed on detach") {
  Fixture f;
  const std::string t = f.Dir("rw");
  REQUIRE(f.attachments->Attach(Fixture::What(t, true), kSource).ok());
  auto info = f.attachments->Find(t);
  REQUIRE(info.has_value());
  CHECK(info->upper.rfind(f.tmp.path() + "/sandboxes/", 0) == 0);
  CHECK(stdfs::is_directory(info->upper + "/upper"));
  CHECK(stdfs::is_directory(info->upper + "/work"));
  auto m = f.mounter.mounts();
  REQUIRE(m.count(t) == 1);
  CHECK(m[t].kind == "overlay");
  CHECK(m[t].source == kSource);
  CHECK(m[t].upper == info->upper + "/upper");
  CHECK(m[t].work == info->upper + "/work");

  TargetInfo removed;
  REQUIRE(f.attachments->Detach(t, false, &removed).ok());
  CHECK(removed.upper == info->upper);
  CHECK_FALSE(stdfs::exists(info->upper));
  CHECK(f.Sandboxes() == 0);
  CHECK(f.mounter.mounts().empty());
}

TEST_CASE("attachments: a failing mount leaves no target, no table entry and no upper directory") {
  Fixture f;
  for (bool writable : {false, true}) {
    INFO("writable " << writable);
    const std::string t = f.Dir(writable ? "rw" : "ro");
    f.mounter.FailNextMount(t, EPERM);
    Status st = f.attachments->Attach(Fixture::What(t, writable), kSource);
    CHECK(st.code() == StatusCode::kIoError);
    CHECK(st.sys_errno() == EPERM);
    CHECK(st.message().find(writable ? "mount overlay at " + t : "bind " + kSource + " at " + t) !=
          std::string::npos);
    CHECK(f.mounter.mounts().empty());
    CHECK(f.attachments->List().empty());
    CHECK(f.Table()["targets"].empty());
    CHECK(f.Sandboxes() == 0);
    // The target is free again.
    CHECK(f.attachments->CheckFree(t).ok());
  }
}

TEST_CASE("attachments: the table names every target; a restart detaches them and keeps what the writable ones wrote") {
  Fixture f;
  const std::string ro = f.Dir("ro"), rw = f.Dir("rw");
  REQUIRE(f.attachments->Attach(Fixture::What(ro, false), kSource).ok());
  REQUIRE(f.attachments->Attach(Fixture::What(rw, true), kSource).ok());
  const std::string upper = f.attachments->Find(rw)->upper;
  { std::ofstream(upper + "/upper/written") << "by the sandbox"; }
  // A sandbox directory no table entry names (a crash while one was made).
  stdfs::create_directories(f.tmp.path() + "/sandboxes/orphan/upper");

  nlohmann::json table = f.Table();
  REQUIRE(table.size() == 1);
  REQUIRE(table["targets"].size() == 2);
  // Sorted by target path: "ro" < "rw".
  CHECK(table["targets"][0] == nlohmann::json({{"target", ro}, {"image", kImage},
                                               {"store", "file:///store"}, {"writable", false},
                                               {"upper", ""}}));
  CHECK(table["targets"][1] == nlohmann::json({{"target", rw}, {"image", kImage},
                                               {"store", "file:///store"}, {"writable", true},
                                               {"upper", upper}}));

  // The daemon dies (its mounts stay in the kernel); a new one starts.
  f.attachments.reset();
  FakeMounter kernel;
  kernel.Preload(ro);
  kernel.Preload(rw);
  auto again = Attachments::Open(f.tmp.path(), &kernel);
  REQUIRE(again.ok());
  CHECK(kernel.unmounted() == std::vector<std::string>{ro + " (lazy)", rw + " (lazy)"});
  CHECK(kernel.mounts().empty());
  CHECK(ReadFile(upper + "/upper/written") == "by the sandbox");
  CHECK_FALSE(stdfs::exists(f.tmp.path() + "/sandboxes/orphan"));
  CHECK(f.Sandboxes() == 1);
  table = f.Table();
  REQUIRE(table["targets"].size() == 1);
  CHECK(table["targets"][0] == nlohmann::json({{"target", rw}, {"image", kImage},
                                               {"store", "file:///store"}, {"writable", true},
                                               {"upper", upper}, {"kept", true}}));
  auto listed = (*again)->List();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].target == rw);
  CHECK(listed[0].kept);
  CHECK(listed[0].upper == upper);
  CHECK_FALSE((*again)->Find(rw).has_value());  // kept, not attached

  // A third start keeps it again (it was not mounted: nothing to unmount).
  again->reset();
  FakeMounter kernel2;
  auto third = Attachments::Open(f.tmp.path(), &kernel2);
  REQUIRE(third.ok());
  CHECK(kernel2.unmounted().empty());
  REQUIRE((*third)->List().size() == 1);
  CHECK(ReadFile(upper + "/upper/written") == "by the sandbox");
}

TEST_CASE("attachments: a kept target resumes on a writable attach of its image, over the same upper directory") {
  Fixture f;
  const std::string rw = f.Dir("rw");
  REQUIRE(f.attachments->Attach(Fixture::What(rw, true), kSource).ok());
  const std::string upper = f.attachments->Find(rw)->upper;
  CHECK(f.mounter.copied_roots() == 1);
  f.attachments->Close();  // ferryd stops
  CHECK(f.mounter.mounts().empty());
  REQUIRE(f.Table()["targets"].size() == 1);
  CHECK(f.Table()["targets"][0]["kept"] == true);
  CHECK(stdfs::is_directory(upper + "/upper"));

  f.attachments = f.Open();
  // Another image, or read-only: refused, saying what to do; nothing changes.
  for (bool writable : {false, true}) {
    TargetInfo other = Fixture::What(rw, writable);
    if (writable) other.image_id = std::string(64, 'b');
    Status st = f.attachments->Attach(other, kSource);
    CHECK(st.code() == StatusCode::kAlreadyExists);
    CHECK(st.message().find(rw + " holds the changes of a writable mount of image aaaaaaaaaaaa") == 0);
    CHECK(st.message().find("ferry umount " + rw) != std::string::npos);
  }
  CHECK(f.mounter.mounts().empty());
  CHECK(f.attachments->CheckFree(rw).ok());

  bool resumed = false;
  REQUIRE(f.attachments->Attach(Fixture::What(rw, true), kSource, &resumed).ok());
  CHECK(resumed);
  auto info = f.attachments->Find(rw);
  REQUIRE(info.has_value());
  CHECK(info->upper == upper);
  CHECK_FALSE(info->kept);
  auto m = f.mounter.mounts();
  REQUIRE(m.count(rw) == 1);
  CHECK(m[rw].upper == upper + "/upper");
  CHECK(f.mounter.copied_roots() == 1);  // its root keeps what the sandbox made of it
  CHECK_FALSE(f.Table()["targets"][0].contains("kept"));
  CHECK(f.Sandboxes() == 1);
}

TEST_CASE("attachments: a kept target that fails to resume stays kept; unmounting it discards it") {
  Fixture f;
  const std::string rw = f.Dir("rw");
  REQUIRE(f.attachments->Attach(Fixture::What(rw, true), kSource).ok());
  const std::string upper = f.attachments->Find(rw)->upper;
  f.attachments->Close();
  f.attachments = f.Open();

  f.mounter.FailNextMount(rw, EPERM);
  bool resumed = true;
  CHECK(f.attachments->Attach(Fixture::What(rw, true), kSource, &resumed).code() ==
        StatusCode::kIoError);
  REQUIRE(f.attachments->List().size() == 1);
  CHECK(f.attachments->List()[0].kept);
  CHECK(f.Table()["targets"][0]["kept"] == true);
  CHECK(stdfs::is_directory(upper + "/upper"));

  // Pinned (a snapshot reads it): not discarded.
  auto pinned = f.attachments->PinContaining(rw + "/some/dir");
  REQUIRE(pinned.ok());
  CHECK(pinned->target == rw);
  TargetInfo removed;
  Status st = f.attachments->Detach(rw, false, &removed);
  CHECK(st.code() == StatusCode::kFailedPrecondition);
  CHECK(st.message().find("a snapshot of " + rw + " is being taken") == 0);
  CHECK(stdfs::is_directory(upper + "/upper"));
  f.attachments->Unpin(*pinned);

  const size_t unmounts = f.mounter.unmounted().size();  // Close's
  REQUIRE(f.attachments->Detach(rw, false, &removed).ok());
  CHECK(removed.kept);
  CHECK(removed.upper == upper);
  CHECK(f.mounter.unmounted().size() == unmounts);  // it was not mounted
  CHECK_FALSE(stdfs::exists(upper));
  CHECK(f.attachments->List().empty());
  CHECK(f.Table()["targets"].empty());
}

TEST_CASE("attachments: PinContaining picks the innermost target holding a path") {
  Fixture f;
  const std::string outer = f.Dir("o"), inner = f.Dir("o/i");
  REQUIRE(f.attachments->Attach(Fixture::What(outer, false), kSource).ok());
  REQUIRE(f.attachments->Attach(Fixture::What(inner, true), kSource).ok());
  auto p = f.attachments->PinContaining(inner + "/x/y");
  REQUIRE(p.ok());
  CHECK(p->target == inner);
  auto q = f.attachments->PinContaining(outer + "/file");
  REQUIRE(q.ok());
  CHECK(q->target == outer);
  // A sibling with a common prefix is not inside.
  auto r = f.attachments->PinContaining(outer + "x");
  CHECK(r.status().code() == StatusCode::kNotFound);
  CHECK(r.status().message() == outer + "x is not in a mount of ferryd (" + f.tmp.path() + ")");
  TargetInfo removed;
  CHECK(f.attachments->Detach(inner, false, &removed).code() == StatusCode::kFailedPrecondition);
  f.attachments->Unpin(*p);
  f.attachments->Unpin(*q);
  CHECK(f.attachments->Detach(inner, false, &removed).ok());
  CHECK(f.attachments->Detach(outer, false, &removed).ok());
}

TEST_CASE("attachments: an unreadable table is ignored at start-up") {
  testing::ScopedTempDir tmp{"ferry-attachments"};
  { std::ofstream(tmp.path() + "/mounts.json") << "{not json"; }
  FakeMounter mounter;
  auto a = Attachments::Open(tmp.path(), &mounter);
  REQUIRE(a.ok());
  CHECK(mounter.unmounted().empty());
  std::ifstream in(tmp.path() + "/mounts.json");
  CHECK(nlohmann::json::parse(in)["targets"].empty());
}

TEST_CASE("attachments: a busy target is FailedPrecondition unless lazy") {
  Fixture f;
  const std::string t = f.Dir("ro");
  REQUIRE(f.attachments->Attach(Fixture::What(t, false), kSource).ok());
  f.mounter.SetBusy(t, true);
  TargetInfo removed;
  Status st = f.attachments->Detach(t, false, &removed);
  CHECK(st.code() == StatusCode::kFailedPrecondition);
  CHECK(st.message() == t + " is busy (in use); stop what uses it, or unmount with --lazy");
  CHECK(removed.target.empty());
  CHECK(f.attachments->List().size() == 1);
  CHECK(f.Table()["targets"].size() == 1);
  REQUIRE(f.attachments->Detach(t, true, &removed).ok());
  CHECK(removed.target == t);
  CHECK(f.mounter.unmounted() == std::vector<std::string>{t + " (lazy)"});
}

TEST_CASE("attachments: an unknown target is NotFound; one unmounted by hand is cleaned up") {
  Fixture f;
  TargetInfo removed;
  Status st = f.attachments->Detach("/nowhere", false, &removed);
  CHECK(st.code() == StatusCode::kNotFound);
  CHECK(st.message() == "/nowhere is not mounted by ferryd (" + f.tmp.path() + ")");

  const std::string t = f.Dir("rw");
  REQUIRE(f.attachments->Attach(Fixture::What(t, true), kSource).ok());
  const std::string upper = f.attachments->Find(t)->upper;
  REQUIRE(f.mounter.Unmount(t, false).ok());  // by hand: the next unmount says EINVAL
  REQUIRE(f.attachments->Detach(t, false, &removed).ok());
  CHECK(removed.target == t);
  CHECK_FALSE(stdfs::exists(upper));
  CHECK(f.attachments->List().empty());
}

TEST_CASE("attachments: a second attach of one target is AlreadyExists and changes nothing") {
  Fixture f;
  const std::string t = f.Dir("ro");
  REQUIRE(f.attachments->Attach(Fixture::What(t, false), kSource).ok());
  const std::string expected = t + " is already a ferry mount (image " + kImage + ")";
  CHECK(f.attachments->CheckFree(t).code() == StatusCode::kAlreadyExists);
  for (bool writable : {false, true}) {
    Status st = f.attachments->Attach(Fixture::What(t, writable), "/elsewhere");
    CHECK(st.code() == StatusCode::kAlreadyExists);
    CHECK(st.message() == expected);
  }
  CHECK(f.mounter.mounts().size() == 1);
  CHECK(f.mounter.mounts()[t].source == kSource);
  CHECK(f.Sandboxes() == 0);
  CHECK(f.Table()["targets"].size() == 1);
}

TEST_CASE("attachments: Close detaches everything lazily, keeps what writable targets wrote, and refuses new targets") {
  Fixture f;
  const std::string ro = f.Dir("ro"), rw = f.Dir("rw");
  REQUIRE(f.attachments->Attach(Fixture::What(ro, false), kSource).ok());
  REQUIRE(f.attachments->Attach(Fixture::What(rw, true), kSource).ok());
  const std::string upper = f.attachments->Find(rw)->upper;
  f.mounter.SetBusy(ro, true);  // lazy: busy does not matter
  f.attachments->Close();
  CHECK(f.mounter.mounts().empty());
  CHECK(f.Sandboxes() == 1);
  CHECK(stdfs::is_directory(upper + "/upper"));
  REQUIRE(f.Table()["targets"].size() == 1);
  CHECK(f.Table()["targets"][0]["target"] == rw);
  CHECK(f.Table()["targets"][0]["kept"] == true);
  REQUIRE(f.attachments->List().size() == 1);
  CHECK(f.attachments->List()[0].kept);
  Status st = f.attachments->Attach(Fixture::What(ro, false), kSource);
  CHECK(st.code() == StatusCode::kFailedPrecondition);
  CHECK(st.message() == "ferryd is shutting down");
  f.attachments->Close();  // idempotent
}

}  // namespace
}  // namespace ferry::snapshotter
