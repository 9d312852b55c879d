// Image sessions, through MountManager, with fakes for what needs root: a
// FakeMounter for the targets and a fake FUSE server. The stores are real
// file stores with real images; a gate holds a store's calls until the test
// lets them through, so tests wait for events, never for time.
#include "snapshotter/image_sessions.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <future>
#include <mutex>

#include "builder/image_builder.h"
#include "chunkstore/file_store.h"
#include "chunkstore/store_factory.h"
#include "snapshotter/fake_mounter.h"
#include "snapshotter/mount_manager.h"
#include "tests/support/fs_util.h"

namespace ferry::snapshotter {
namespace {

namespace stdfs = std::filesystem;

// How long a test waits for something that must happen before it calls
// the code broken (a hang guard only: it never decides a pass).
constexpr auto kHangGuard = std::chrono::seconds(60);

// Holds the calls that reach it until Open().
class Gate {
 public:
  void Pass() {
    std::unique_lock<std::mutex> l(mu_);
    ++arrived_;
    cv_.notify_all();
    cv_.wait(l, [&] { return open_; });
  }
  // Whether `n` calls have reached the gate (false only if the guard ran out).
  bool Arrived(int n) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, kHangGuard, [&] { return arrived_ >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool open_ = false;
};

// Opens the gate when the scope ends, also when a REQUIRE fails.
struct OpenOnExit {
  Gate& gate;
  ~OpenOnExit() { gate.Open(); }
};

// A store whose Get of keys starting with `prefix` waits at a gate.
class GatedStore final : public chunkstore::ObjectStore {
 public:
  GatedStore(std::unique_ptr<chunkstore::ObjectStore> base, Gate* gate, std::string prefix)
      : base_(std::move(base)), gate_(gate), prefix_(std::move(prefix)) {}
  std::string Url() const override { return base_->Url(); }
  Status Put(const std::string& k, std::span<const uint8_t> d) override { return base_->Put(k, d); }
  Status PutFile(const std::string& k, const std::string& p) override { return base_->PutFile(k, p); }
  Result<std::shared_ptr<const chunkstore::Blob>> Get(const std::string& key) override {
    if (key.rfind(prefix_, 0) == 0) gate_->Pass();
    return base_->Get(key);
  }
  Status GetRange(const std::string& k, uint64_t off, std::span<uint8_t> out) override {
    return base_->GetRange(k, off, out);
  }
  Result<uint64_t> Size(const std::string& k) override { return base_->Size(k); }
  Result<std::vector<std::string>> List(const std::string& p) override { return base_->List(p); }
  Status Delete(const std::string& k) override { return base_->Delete(k); }
  bool IsLocal() const override { return base_->IsLocal(); }

 private:
  std::unique_ptr<chunkstore::ObjectStore> base_;
  Gate* gate_;
  std::string prefix_;
};

// What the fake FUSE servers did, across all of them.
struct ServerLog {
  std::atomic<int> made{0}, served{0}, destroyed{0};
};

// Serves nothing: Serve() returns once Detach() is called, as FUSE's loop
// returns once its detached mount is no longer used.
class FakeImageServer final : public ImageServer {
 public:
  explicit FakeImageServer(ServerLog* log) : log_(log) { ++log_->made; }
  ~FakeImageServer() override { ++log_->destroyed; }
  Status Mount(const std::string&) override { return Status::Ok(); }
  Status Serve() override {
    ++log_->served;
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return detached_; });
    return Status::Ok();
  }
  void Detach() override {
    std::lock_guard<std::mutex> l(mu_);
    detached_ = true;
    cv_.notify_all();
  }

 private:
  ServerLog* log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool detached_ = false;
};

struct Fixture {
  testing::ScopedTempDir tmp{"ferry-sessions"};
  std::shared_ptr<FakeMounter> mounter = std::make_shared<FakeMounter>();
  ServerLog servers;
  Gate gate;                     // holds Get calls of `gated_prefix` to store A
  std::string gated_prefix = "images/";
  std::atomic<int> opened{0};    // stores opened
  std::string store_a = tmp.path() + "/store-a", store_b = tmp.path() + "/store-b";
  std::string image_a = Build(store_a, "a"), image_b = Build(store_b, "b");
  std::unique_ptr<MountManager> mounts = Start();

  static std::string Build(const std::string& dir, const std::string& content) {
    const std::string src = dir + "-src";
    stdfs::create_directories(src + "/etc");
    std::ofstream(src + "/etc/hello") << "hello from " << content << "\n";
    auto store = chunkstore::FileStore::Open(dir);
    REQUIRE(store.ok());
    builder::ImageBuilder b(store->get(), {});
    REQUIRE(b.AddDirectory(src).ok());
    auto sum = b.Finish("");
    REQUIRE(sum.ok());
    return sum->image.Hex();
  }

  std::unique_ptr<MountManager> Start() {
    MountManagerOptions opt;
    opt.root = tmp.path() + "/root";
    opt.mounter = mounter;
    opt.new_server = [this](fs::ImageFs*, const fs::FuseOptions&) -> std::unique_ptr<ImageServer> {
      return std::make_unique<FakeImageServer>(&servers);
    };
    opt.open_store = [this](const std::string& url) -> Result<std::unique_ptr<chunkstore::ObjectStore>> {
      ++opened;
      ASSIGN_OR_RETURN(auto store, chunkstore::OpenObjectStore(url));
      if (url != store_a) return store;
      return std::unique_ptr<chunkstore::ObjectStore>(
          std::make_unique<GatedStore>(std::move(store), &gate, gated_prefix));
    };
    auto m = MountManager::Create(std::move(opt));
    REQUIRE(m.ok());
    return std::move(*m);
  }
  std::string Dir(const std::string& name) {
    std::string p = tmp.path() + "/" + name;
    stdfs::create_directories(p);
    return p;
  }
  ptrdiff_t SessionMounts() {
    return std::distance(stdfs::directory_iterator(tmp.path() + "/root/mnt"), stdfs::directory_iterator());
  }
};

TEST_CASE("sessions: a slow store for one image blocks neither Targets(), Images() nor a mount of another") {
  Fixture f;
  f.gated_prefix = "";  // every Get of store A waits
  const std::string ta = f.Dir("a"), tb = f.Dir("b");
  auto slow = std::async(std::launch::async, [&] { return f.mounts->Mount(f.store_a, f.image_a, ta, false); });
  OpenOnExit open_gate{f.gate};
  REQUIRE(f.gate.Arrived(1));  // A's mount is waiting for its store

  // What another caller sees meanwhile (checked here: Catch2 asserts on
  // one thread only).
  struct Seen {
    size_t targets_before = 99, images_before = 99;
    Result<MountOutcome> mount_b = Status(StatusCode::kInternal, "not run");
    std::vector<TargetInfo> targets;
    std::vector<ImageInfo> images;
    Result<bool> unmount_b = Status(StatusCode::kInternal, "not run");
  };
  auto meanwhile = std::async(std::launch::async, [&] {
    Seen seen;
    seen.targets_before = f.mounts->Targets().size();
    seen.images_before = f.mounts->Images().size();
    seen.mount_b = f.mounts->Mount(f.store_b, f.image_b, tb, true);
    seen.targets = f.mounts->Targets();
    seen.images = f.mounts->Images();
    std::string id;
    seen.unmount_b = f.mounts->Unmount(tb, false, &id);
    return seen;
  });
  OpenOnExit unblock_meanwhile{f.gate};  // before `meanwhile` waits for its task
  REQUIRE(meanwhile.wait_for(kHangGuard) == std::future_status::ready);
  Seen seen = meanwhile.get();
  CHECK(seen.targets_before == 0);
  CHECK(seen.images_before == 0);
  REQUIRE(seen.mount_b.ok());
  CHECK(seen.mount_b->image_id == f.image_b);
  CHECK_FALSE(seen.mount_b->shared);
  REQUIRE(seen.targets.size() == 1);
  CHECK(seen.targets[0].target == tb);
  CHECK(seen.targets[0].writable);
  REQUIRE(seen.images.size() == 1);
  CHECK(seen.images[0].image_id == f.image_b);
  CHECK(seen.images[0].references == 1);
  CHECK(seen.images[0].counters.size() == std::size(kImageCounters));
  REQUIRE(seen.unmount_b.ok());
  CHECK(*seen.unmount_b);  // that ended B's session
  CHECK(f.servers.made == 1);  // A's has not been made yet

  f.gate.Open();
  auto a = slow.get();
  REQUIRE(a.ok());
  CHECK(a->image_id == f.image_a);
  CHECK(f.mounts->Targets().size() == 1);
  CHECK(f.mounter->mounts()[ta].kind == "bind-ro");
}

TEST_CASE("sessions: two concurrent first mounts of one image end with one session") {
  Fixture f;
  const std::string t1 = f.Dir("one"), t2 = f.Dir("two");
  auto m1 = std::async(std::launch::async, [&] { return f.mounts->Mount(f.store_a, f.image_a, t1, false); });
  auto m2 = std::async(std::launch::async, [&] { return f.mounts->Mount(f.store_a, f.image_a, t2, true); });
  OpenOnExit open_gate{f.gate};
  // Both are loading the image's metadata: neither has found a session.
  REQUIRE(f.gate.Arrived(2));
  f.gate.Open();
  auto r1 = m1.get(), r2 = m2.get();
  REQUIRE(r1.ok());
  REQUIRE(r2.ok());
  CHECK(r1->image_id == f.image_a);
  CHECK(r2->image_id == f.image_a);
  CHECK(r1->shared != r2->shared);  // one made the session, the other used it

  auto images = f.mounts->Images();
  REQUIRE(images.size() == 1);
  CHECK(images[0].references == 2);
  auto mounts = f.mounter->mounts();
  CHECK(mounts[t1].source == mounts[t2].source);  // both show the one session
  CHECK(f.servers.made == 2);
  CHECK(f.servers.destroyed == 1);  // the loser's, never served
  CHECK(f.SessionMounts() == 1);    // and its mount point removed

  std::string id;
  CHECK_FALSE(f.mounts->Unmount(t1, false, &id).value());
  CHECK(f.mounts->Unmount(t2, false, &id).value());
  CHECK(f.mounts->Images().empty());
}

TEST_CASE("sessions: a second mount shares the session; the last unmount ends it") {
  Fixture f;
  f.gate.Open();
  const std::string t1 = f.Dir("one"), t2 = f.Dir("two");
  auto r1 = f.mounts->Mount(f.store_b, f.image_b, t1, false);
  auto r2 = f.mounts->Mount(f.store_b + "/", f.image_b.substr(0, 12), t2, false);
  REQUIRE(r1.ok());
  REQUIRE(r2.ok());
  CHECK_FALSE(r1->shared);
  CHECK(r2->shared);
  CHECK(f.opened == 2);  // each spelling of the store is opened once
  auto images = f.mounts->Images();
  REQUIRE(images.size() == 1);
  CHECK(images[0].references == 2);
  CHECK(images[0].store_url == "file://" + f.store_b);
  std::string id;
  CHECK_FALSE(f.mounts->Unmount(t1, false, &id).value());
  CHECK(f.mounts->Unmount(t2, false, &id).value());
  CHECK(f.mounts->Images().empty());
  CHECK(f.servers.made == 1);
}

TEST_CASE("sessions: a failed attachment releases the session it started") {
  Fixture f;
  f.gate.Open();
  const std::string t = f.Dir("t");
  f.mounter->FailNextMount(t, EPERM);
  auto r = f.mounts->Mount(f.store_b, f.image_b, t, true);
  CHECK(r.status().code() == StatusCode::kIoError);
  CHECK(r.status().message().find("mount overlay at " + t) != std::string::npos);
  CHECK(f.mounts->Images().empty());
  CHECK(f.mounts->Targets().empty());
  CHECK(f.servers.made == 1);
  // The target and the image can be mounted afterwards.
  auto again = f.mounts->Mount(f.store_b, f.image_b, t, true);
  REQUIRE(again.ok());
  CHECK_FALSE(again->shared);
}

TEST_CASE("sessions: Mount's errors, in the order it checks") {
  Fixture f;
  f.gate.Open();
  const std::string t = f.Dir("t");
  CHECK(f.mounts->Mount(f.store_b, f.image_b, "rel/dir", false).status().code() ==
        StatusCode::kInvalidArgument);
  auto nodir = f.mounts->Mount(f.store_b, f.image_b, t + "/missing", false);
  CHECK(nodir.status().code() == StatusCode::kNotFound);
  CHECK(nodir.status().message() == "mount point " + t + "/missing is not a directory");
  auto unknown = f.mounts->Mount(f.store_b, "no-such-image", t, false);
  CHECK(unknown.status().code() == StatusCode::kNotFound);
  CHECK(unknown.status().message().find("cannot mount 'no-such-image'") != std::string::npos);
  REQUIRE(f.mounts->Mount(f.store_b, f.image_b, t, false).ok());
  // A taken target is refused before any store is read.
  const int opened = f.opened;
  auto taken = f.mounts->Mount("file://" + f.tmp.path() + "/elsewhere", f.image_a, t, false);
  CHECK(taken.status().code() == StatusCode::kAlreadyExists);
  CHECK(f.opened == opened);

  std::string id;
  CHECK(f.mounts->Unmount(t + "/x", false, &id).status().code() == StatusCode::kNotFound);
  f.mounter->SetBusy(t, true);
  CHECK(f.mounts->Unmount(t, false, &id).status().code() == StatusCode::kFailedPrecondition);
  CHECK(f.mounts->Targets().size() == 1);
  CHECK(f.mounts->Unmount(t, true, &id).value());
}

TEST_CASE("sessions: a mount into a process shares the session; a gone process is refused first") {
  Fixture f;
  f.gate.Open();
  const int opened = f.opened;
  auto gone = f.mounts->MountInto(f.store_b, f.image_b, 4242, "/data", false);
  CHECK(gone.status().code() == StatusCode::kNotFound);
  CHECK(gone.status().message() == "process 4242 does not exist");
  CHECK(f.opened == opened);  // before any store is read
  f.mounter->StartProcess(4242, 77);
  CHECK(f.mounts->MountInto(f.store_b, f.image_b, 4242, "data", false).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(f.mounts->MountInto(f.store_b, f.image_b, 4242, "/", false).status().code() ==
        StatusCode::kInvalidArgument);

  const std::string t = f.Dir("t");
  REQUIRE(f.mounts->Mount(f.store_b, f.image_b, t, false).ok());
  auto into = f.mounts->MountInto(f.store_b, f.image_b, 4242, "/data/", true);
  REQUIRE(into.ok());
  CHECK(into->shared);
  CHECK(f.mounter->mounts().count(FakeMounter::IntoKey(77, "/data")) == 1);
  auto targets = f.mounts->Targets();
  REQUIRE(targets.size() == 2);
  CHECK(targets[1].target == "/data");
  CHECK(targets[1].into.pid == 4242);
  CHECK(targets[1].into.mnt_ns == 77);

  std::string id;
  CHECK(f.mounts->Unmount("/data", false, &id).status().code() == StatusCode::kNotFound);
  auto ended = f.mounts->UnmountInto(4242, "/data", false, &id);
  REQUIRE(ended.ok());
  CHECK_FALSE(*ended);  // the host target still uses the session
  CHECK(id == f.image_b);
  CHECK(f.mounts->Unmount(t, false, &id).value());
}

TEST_CASE("sessions: unmounting into a process that exited forgets its target and releases it") {
  Fixture f;
  f.gate.Open();
  f.mounter->StartProcess(4242, 77);
  REQUIRE(f.mounts->MountInto(f.store_b, f.image_b, 4242, "/data", false).ok());
  f.mounter->EndProcess(4242);
  std::string id;
  auto ended = f.mounts->UnmountInto(4242, "/data", false, &id);
  REQUIRE(ended.ok());
  CHECK(*ended);
  CHECK(f.mounts->Targets().empty());
  CHECK(f.mounts->Images().empty());
}

TEST_CASE("sessions: recording a profile on a target's image") {
  Fixture f;
  f.gate.Open();
  const std::string t = f.Dir("t");
  CHECK(f.mounts->StartProfile(t).status().code() == StatusCode::kNotFound);
  REQUIRE(f.mounts->Mount(f.store_b, f.image_b, t, false).ok());
  CHECK(f.mounts->StopProfile(t).status().code() == StatusCode::kFailedPrecondition);
  CHECK(f.mounts->StartProfile(t).value() == f.image_b);
  CHECK(f.mounts->StartProfile(t).status().code() == StatusCode::kFailedPrecondition);
  auto stopped = f.mounts->StopProfile(t);
  REQUIRE(stopped.ok());
  CHECK(std::get<0>(*stopped) == f.image_b);
  CHECK(std::get<1>(*stopped) == 0);  // nothing was read
  auto store = chunkstore::FileStore::Open(f.store_b);
  REQUIRE(store.ok());
  CHECK((*store)->Get("profiles/" + f.image_b).ok());
}

TEST_CASE("sessions: Shutdown detaches every target, ends every session, and refuses new mounts") {
  Fixture f;
  f.gate.Open();
  const std::string t1 = f.Dir("one"), t2 = f.Dir("two");
  REQUIRE(f.mounts->Mount(f.store_a, f.image_a, t1, true).ok());
  REQUIRE(f.mounts->Mount(f.store_b, f.image_b, t2, false).ok());
  f.mounts->Shutdown();
  CHECK(f.mounter->mounts().empty());
  // The writable one's changes are kept (not mounted, holding no session).
  auto left = f.mounts->Targets();
  REQUIRE(left.size() == 1);
  CHECK(left[0].target == t1);
  CHECK(left[0].kept);
  CHECK(f.mounts->Images().empty());
  CHECK(f.servers.destroyed == 2);  // both loops returned, so both were reaped
  auto r = f.mounts->Mount(f.store_b, f.image_b, t2, false);
  CHECK(r.status().code() == StatusCode::kFailedPrecondition);
  CHECK(r.status().message() == "ferryd is shutting down");
  f.mounts->Shutdown();  // idempotent
}

}  // namespace
}  // namespace ferry::snapshotter
