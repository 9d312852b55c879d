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

TEST_CASE("attachments: the table names every target; a restart detaches them and removes upper directories") {
  Fixture f;
  const std::string ro = f.Dir("ro"), rw = f.Dir("rw");
  REQUIRE(f.attachments->Attach(Fixture::What(ro, false), kSource).ok());
  REQUIRE(f.attachments->Attach(Fixture::What(rw, true), kSource).ok());
  const std::string upper = f.attachments->Find(rw)->upper;

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
  CHECK_FALSE(stdfs::exists(upper));
  CHECK(f.Sandboxes() == 0);
  CHECK(f.Table()["targets"].empty());
  CHECK((*again)->List().empty());
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

TEST_CASE("attachments: Close detaches everything lazily and refuses new targets") {
  Fixture f;
  const std::string ro = f.Dir("ro"), rw = f.Dir("rw");
  REQUIRE(f.attachments->Attach(Fixture::What(ro, false), kSource).ok());
  REQUIRE(f.attachments->Attach(Fixture::What(rw, true), kSource).ok());
  f.mounter.SetBusy(ro, true);  // lazy: busy does not matter
  f.attachments->Close();
  CHECK(f.mounter.mounts().empty());
  CHECK(f.Sandboxes() == 0);
  CHECK(f.Table()["targets"].empty());
  CHECK(f.attachments->List().empty());
  Status st = f.attachments->Attach(Fixture::What(ro, false), kSource);
  CHECK(st.code() == StatusCode::kFailedPrecondition);
  CHECK(st.message() == "ferryd is shutting down");
  f.attachments->Close();  // idempotent
}

}  // namespace
}  // namespace ferry::snapshotter
