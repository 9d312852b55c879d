#include "snapshotter/mount_manager.h"

#include <sys/mount.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "chunkstore/store_factory.h"
#include "fs/image_store.h"
#include "fs/profile.h"

namespace ferry::snapshotter {

namespace stdfs = std::filesystem;

struct MountManager::Store {
  std::string url;  // canonical: the store's Url()
  std::unique_ptr<chunkstore::ObjectStore> store;
  std::unique_ptr<chunkstore::ChunkReader> reader;
};

struct MountManager::Image {
  std::string id, store_url, mountpoint;
  std::unique_ptr<fs::ImageFs> fs;  // declared before server: destroyed after it
  std::unique_ptr<fs::FuseServer> server;
  std::thread serve;
  bool done = false;  // the FUSE loop has returned (guarded by mu_)
  uint32_t refs = 0;
  chunkstore::ObjectStore* store = nullptr;
  Digest digest;
  fs::ProfileRecorder* recording = nullptr;  // owned by `recorders`
  // Reads may still hold a recorder they loaded just before it was
  // detached, so recorders live as long as the session.
  std::vector<std::unique_ptr<fs::ProfileRecorder>> recorders;
  ~Image() {
    if (serve.joinable()) serve.join();
    server.reset();
    std::error_code ec;
    stdfs::remove(mountpoint, ec);
  }
};

namespace {

Status SysError(const std::string& what, int err = errno) { return ErrnoError(what, err); }
Status IoError(const std::string& what) { return Status(StatusCode::kIoError, what); }

void Log(const std::string& line) { std::fprintf(stderr, "ferryd: %s\n", line.c_str()); }

// Store calls that failed for a reason that may pass (a throttled or flaky
// service, bytes damaged on the way) are tried again a few times, waiting
// longer each time; what arrives is verified every time.
template <typename Fn>
auto Retrying(Fn fn) -> decltype(fn()) {
  auto delay = std::chrono::milliseconds(50);
  for (int attempt = 1;; ++attempt, delay *= 2) {
    auto r = fn();
    bool again = r.status().IsRetryable() || r.status().code() == StatusCode::kCorruption;
    if (r.ok() || !again || attempt == 5) return r;
    std::this_thread::sleep_for(delay);
  }
}

// An image's start-up profile as Mount finds it: absent (status
// kNotFound), unreadable (another status), or decoded, with its start-up
// pack perhaps already being fetched.
struct EarlyProfile {
  Status status;
  std::optional<fs::Profile> profile;
  bool fetching = false;
};

// overlayfs shows the upper directory's own attributes for the root of the
// merged tree: give it the image root's mode, owner, times and xattrs.
void CopyRootAttributes(const std::string& from, const std::string& to) {
  struct stat st;
  if (stat(from.c_str(), &st) != 0) return;
  if (chown(to.c_str(), st.st_uid, st.st_gid) != 0 || chmod(to.c_str(), st.st_mode & 07777) != 0) {
    Log("cannot set the attributes of " + to + ": " + std::strerror(errno));
  }
  std::string names(65536, '\0');
  ssize_t n = llistxattr(from.c_str(), names.data(), names.size());
  for (ssize_t i = 0; n > 0 && i < n; i += static_cast<ssize_t>(std::strlen(&names[i])) + 1) {
    const char* name = &names[i];
    std::string value(65536, '\0');
    ssize_t v = lgetxattr(from.c_str(), name, value.data(), value.size());
    if (v >= 0) lsetxattr(to.c_str(), name, value.data(), static_cast<size_t>(v), 0);
  }
  const struct timespec times[2] = {st.st_atim, st.st_mtim};
  utimensat(AT_FDCWD, to.c_str(), times, AT_SYMLINK_NOFOLLOW);
}

}  // namespace

MountManager::MountManager(MountManagerOptions opt) : opt_(std::move(opt)) {}

Result<std::unique_ptr<MountManager>> MountManager::Create(MountManagerOptions opt) {
  if (opt.root.empty() || opt.root[0] != '/' || opt.root.find_first_of(",:") != std::string::npos) {
    return InvalidArgumentError("daemon root '" + opt.root +
                                "' must be an absolute path without ',' or ':'");
  }
  std::error_code ec;
  for (const char* sub : {"mnt", "sandboxes"}) {
    stdfs::create_directories(opt.root + "/" + sub, ec);
    if (ec) return IoError("create " + opt.root + "/" + sub + ": " + ec.message());
  }
  std::unique_ptr<MountManager> m(new MountManager(std::move(opt)));
  m->CleanStale();
  {
    std::lock_guard<std::mutex> lock(m->mu_);
    RETURN_IF_ERROR(m->SaveTable());
  }
  m->reaper_ = std::thread([raw = m.get()] { raw->ReapLoop(); });
  return m;
}

MountManager::~MountManager() { Shutdown(); }

// A daemon that died left its targets mounted (on a dead FUSE connection)
// and its upper directories behind: detach and remove them all.
void MountManager::CleanStale() {
  std::ifstream in(opt_.root + "/mounts.json");
  if (in) {
    try {
      auto table = nlohmann::json::parse(in);
      for (const auto& t : table.at("targets")) {
        std::string target = t.at("target").get<std::string>();
        if (umount2(target.c_str(), MNT_DETACH) == 0) Log("removed stale mount " + target);
      }
    } catch (const std::exception& e) {
      Log("ignoring unreadable " + opt_.root + "/mounts.json: " + e.what());
    }
  }
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(opt_.root + "/mnt", ec)) {
    umount2(e.path().c_str(), MNT_DETACH);
    stdfs::remove(e.path(), ec);
  }
  for (const auto& e : stdfs::directory_iterator(opt_.root + "/sandboxes", ec)) {
    stdfs::remove_all(e.path(), ec);
  }
}

Status MountManager::SaveTable() {
  nlohmann::json table = {{"targets", nlohmann::json::array()}};
  for (const auto& [path, t] : targets_) {
    table["targets"].push_back({{"target", t.target}, {"image", t.image_id},
                                {"store", t.store_url}, {"writable", t.writable},
                                {"upper", t.upper}});
  }
  std::string path = opt_.root + "/mounts.json", tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << table.dump(1) << "\n";
    out.flush();
    if (!out) return IoError("write " + tmp);
  }
  int fd = open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) return SysError("rename " + tmp);
  return Status::Ok();
}

// Stores are kept by canonical URL, so that every spelling of one store
// (a trailing slash, options in another order) shares one reader and one
// memory cache; each spelling seen is remembered as an alias.
Result<MountManager::Store*> MountManager::GetStore(const std::string& url) {
  if (auto a = store_alias_.find(url); a != store_alias_.end()) return stores_.at(a->second).get();
  ASSIGN_OR_RETURN(auto opened, chunkstore::OpenObjectStore(url));
  std::string canonical = opened->Url();
  store_alias_[url] = canonical;
  auto it = stores_.find(canonical);
  if (it != stores_.end()) return it->second.get();
  auto s = std::make_unique<Store>();
  s->url = canonical;
  s->store = std::move(opened);
  chunkstore::ChunkReaderOptions ro;
  ro.memory_bytes = opt_.memory_cache_bytes;
  ro.node_cache = opt_.node_cache;
  ro.fetch_threads = opt_.fetch_threads;
  if (opt_.prefetch_threads != 0) ro.prefetch_threads = opt_.prefetch_threads;  // else the store's
  ro.deadline = opt_.fetch_deadline;
  s->reader = std::make_unique<chunkstore::ChunkReader>(s->store.get(), ro);
  Store* raw = s.get();
  stores_[canonical] = std::move(s);
  return raw;
}

Result<MountOutcome> MountManager::Mount(const std::string& store_url, const std::string& name,
                                         const std::string& target_in, bool writable) {
  if (target_in.empty() || target_in[0] != '/') {
    return InvalidArgumentError("mount point '" + target_in + "' must be an absolute path");
  }
  const std::string target = stdfs::path(target_in).lexically_normal().string();
  struct stat st;
  if (stat(target.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return NotFoundError("mount point " + target + " is not a directory");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return FailedPreconditionError("ferryd is shutting down");
  if (targets_.count(target)) {
    return AlreadyExistsError(target + " is already a ferry mount (image " +
                              targets_[target].image_id + ")");
  }
  ASSIGN_OR_RETURN(Store * store, GetStore(store_url));
  auto id = Retrying([&] { return fs::ResolveImage(*store->store, name); });
  if (!id.ok()) return id.status().Annotate("cannot mount '" + name + "'");
  const std::string hex = id->Hex();

  MountOutcome out{hex, false};
  auto it = images_.find(hex);
  if (it != images_.end() && it->second->done) {
    // Its session ended underneath us (someone unmounted it by hand).
    EndSession(std::move(it->second));
    images_.erase(it);
    it = images_.end();
  }
  Image* img;
  if (it != images_.end()) {
    img = it->second.get();
    out.shared = true;
  } else {
    // The profile (if any) is fetched while the image loads: on a remote
    // store each request is a round trip. A version 3 profile's start-up
    // pack is fetched as soon as the profile is in, before the image is:
    // its chunks are verified against the profile's digests, and the node
    // cache is looked up first, so a warm host fetches nothing.
    // bench/coldstart.sh (c) at 20 ms / 100 MB/s: the profile is in 13-16 ms
    // before the image metadata is in and checked; 0.384 -> 0.368 s, medians
    // of 8 interleaved runs.
    auto fetch = std::make_shared<chunkstore::FetchCounters>();
    auto early = std::async(std::launch::async, [&store, &id, &fetch] {
      auto blob = Retrying([&] { return store->store->Get(fs::ProfileKey(*id)); });
      EarlyProfile out{blob.status(), std::nullopt, false};
      if (!blob.ok()) return out;
      auto profile = fs::DecodeProfile((*blob)->bytes(), UINT32_MAX);
      if (!profile.ok()) {
        out.status = profile.status();
        return out;
      }
      out.fetching = fs::PrefetchStartupPack(*store->reader, *profile, fetch);
      out.profile = std::move(*profile);
      return out;
    });
    auto reader = Retrying([&] { return fs::LoadImage(*store->store, *id); });
    EarlyProfile profile = early.get();
    if (!reader.ok()) return reader.status().Annotate("cannot mount '" + name + "'");
    static std::atomic<uint64_t> seq{0};
    auto im = std::make_unique<Image>();
    im->id = hex;
    im->store_url = store->url;
    im->store = store->store.get();
    im->digest = *id;
    im->mountpoint = opt_.root + "/mnt/" + hex + "." + std::to_string(++seq);
    std::error_code ec;
    stdfs::create_directories(im->mountpoint, ec);
    if (ec) return IoError("create " + im->mountpoint + ": " + ec.message());
    std::string tag = hex.substr(0, 12);
    im->fs = std::make_unique<fs::ImageFs>(std::move(*reader), store->reader.get(),
                                           [tag](const std::string& l) { Log(tag + ": " + l); }, fetch);
    // A start-up profile, if the image has one, becomes prefetch at once
    // (if it is not already being fetched), while the kernel mount is still
    // being made.
    if (profile.profile.has_value()) {
      if (im->fs->ReplayProfile(*profile.profile, profile.fetching)) {
        const fs::Profile& p = *profile.profile;
        Log("image " + tag + ": prefetching its start-up profile (" + std::to_string(p.chunks.size()) +
            " chunks" + (p.pack ? ", start-up pack " + p.pack->Short() : std::string()) +
            (profile.fetching ? ", sent for before the image metadata was in" : "") + ")");
      }
    } else if (profile.status.code() != StatusCode::kNotFound) {
      Log("image " + tag + ": ignoring its profile: " + profile.status.ToString());
    }
    fs::FuseOptions fo;
    fo.allow_other = true;
    fo.handle_signals = false;
    fo.max_threads = opt_.fuse_threads;
    fo.idle_threads = 4;  // fewer makes libfuse create and end a thread per burst
    fo.fsname = "ferry:" + tag;
    im->server = std::make_unique<fs::FuseServer>(im->fs.get(), fo);
    RETURN_IF_ERROR(im->server->Mount(im->mountpoint));
    Image* raw = im.get();
    im->serve = std::thread([this, raw] {
      Status s = raw->server->Serve();
      if (!s.ok()) Log(raw->id.substr(0, 12) + ": " + s.ToString());
      std::lock_guard<std::mutex> l(mu_);
      raw->done = true;
      reap_cv_.notify_all();
    });
    img = raw;
    images_[hex] = std::move(im);
    Log("serving image " + hex + " from " + store->url);
  }

  // Record the target before mounting it, so a crash in between still
  // leaves a trace the next daemon cleans up.
  TargetInfo info{target, hex, store->url, writable, ""};
  Status attached;
  if (writable) {
    std::string tmpl = opt_.root + "/sandboxes/XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      attached = SysError("create a sandbox directory in " + opt_.root + "/sandboxes");
    } else {
      info.upper = tmpl;
    }
  }
  if (attached.ok()) {
    targets_[target] = info;
    attached = SaveTable();
  }
  if (attached.ok() && writable) {
    std::error_code ec;
    stdfs::create_directory(info.upper + "/upper", ec);
    stdfs::create_directory(info.upper + "/work", ec);
    CopyRootAttributes(img->mountpoint, info.upper + "/upper");
    std::string opts = "lowerdir=" + img->mountpoint + ",upperdir=" + info.upper +
                       "/upper,workdir=" + info.upper + "/work";
    if (mount("overlay", target.c_str(), "overlay", 0, opts.c_str()) != 0) {
      attached = SysError("mount overlay at " + target);
    }
  } else if (attached.ok()) {
    if (mount(img->mountpoint.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      attached = SysError("bind " + img->mountpoint + " at " + target);
    } else if (mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY,
                     nullptr) != 0) {
      attached = SysError("make " + target + " read-only");
      umount2(target.c_str(), MNT_DETACH);
    }
  }
  if (!attached.ok()) {
    targets_.erase(target);
    SaveTable().IgnoreError();
    if (!info.upper.empty()) {
      std::error_code ec;
      stdfs::remove_all(info.upper, ec);
    }
    if (img->refs == 0) {
      EndSession(std::move(images_[hex]));
      images_.erase(hex);
    }
    return attached;
  }
  ++img->refs;
  return out;
}

Result<bool> MountManager::Unmount(const std::string& target_in, bool lazy,
                                   std::string* image_id) {
  const std::string target = stdfs::path(target_in).lexically_normal().string();
  std::lock_guard<std::mutex> lock(mu_);
  auto t = targets_.find(target);
  if (t == targets_.end()) {
    return NotFoundError(target + " is not mounted by ferryd (" + opt_.root + ")");
  }
  if (umount2(target.c_str(), lazy ? MNT_DETACH : 0) != 0) {
    int err = errno;
    if (err == EBUSY) {
      return FailedPreconditionError(target + " is busy (in use); stop what uses it, or unmount "
                                     "with --lazy");
    }
    // EINVAL: no longer a mount point (unmounted by hand); clean up the rest.
    if (err != EINVAL && err != ENOENT) return SysError("unmount " + target, err);
  }
  if (!t->second.upper.empty()) {
    std::error_code ec;
    stdfs::remove_all(t->second.upper, ec);
    if (ec) Log("cannot remove " + t->second.upper + ": " + ec.message());
  }
  std::string hex = t->second.image_id;
  if (image_id != nullptr) *image_id = hex;
  targets_.erase(t);
  bool ended = false;
  auto it = images_.find(hex);
  if (it != images_.end() && --it->second->refs == 0) {
    EndSession(std::move(it->second));
    images_.erase(it);
    ended = true;
  }
  RETURN_IF_ERROR(SaveTable());
  return ended;
}

void MountManager::EndSession(std::unique_ptr<Image> image) {
  image->server->Detach();
  draining_.push_back(std::move(image));
  reap_cv_.notify_all();
}

// Destroys sessions whose loop has ended (outside the lock: joining and
// tearing down a session may take a moment).
void MountManager::ReapLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    reap_cv_.wait(lock, [&] {
      if (stopping_) return true;
      for (auto& d : draining_) {
        if (d->done) return true;
      }
      return false;
    });
    std::vector<std::unique_ptr<Image>> finished;
    for (auto& d : draining_) {
      if (d->done) finished.push_back(std::move(d));
    }
    std::erase(draining_, nullptr);
    if (stopping_ && finished.empty()) return;
    lock.unlock();
    finished.clear();
    lock.lock();
  }
}

Result<std::string> MountManager::StartProfile(const std::string& target_in) {
  const std::string target = stdfs::path(target_in).lexically_normal().string();
  std::lock_guard<std::mutex> lock(mu_);
  auto t = targets_.find(target);
  if (t == targets_.end()) return NotFoundError(target + " is not mounted by ferryd (" + opt_.root + ")");
  Image* img = images_.at(t->second.image_id).get();
  if (img->recording != nullptr) {
    return FailedPreconditionError("image " + img->id.substr(0, 12) + " is already recording a profile");
  }
  img->recorders.push_back(
      std::make_unique<fs::ProfileRecorder>(static_cast<uint32_t>(img->fs->image().chunks().size())));
  img->recording = img->recorders.back().get();
  img->fs->SetRecorder(img->recording);
  return img->id;
}

Result<std::tuple<std::string, uint64_t, uint64_t>> MountManager::StopProfile(
    const std::string& target_in) {
  const std::string target = stdfs::path(target_in).lexically_normal().string();
  std::unique_lock<std::mutex> lock(mu_);
  auto t = targets_.find(target);
  if (t == targets_.end()) return NotFoundError(target + " is not mounted by ferryd (" + opt_.root + ")");
  Image* img = images_.at(t->second.image_id).get();
  if (img->recording == nullptr) {
    return FailedPreconditionError("image " + img->id.substr(0, 12) + " is not recording a profile");
  }
  img->fs->SetRecorder(nullptr);
  std::vector<uint32_t> order = img->recording->Take();
  img->recording = nullptr;
  uint64_t bytes = 0;
  std::vector<chunkstore::ChunkLocation> locs;
  for (uint32_t i : order) {
    bytes += img->fs->image().chunks()[i].ulen;
    locs.push_back(img->fs->image().Chunk(i));
  }
  // The start-up pack is written without the lock (it compresses every
  // chunk): the image may be unmounted meanwhile, its store and reader not.
  const std::string id = img->id;
  const Digest digest = img->digest;
  const uint32_t chunk_count = static_cast<uint32_t>(img->fs->image().chunks().size());
  Store* store = stores_.at(img->store_url).get();
  lock.unlock();
  auto profile = fs::MakeStartupPack(*store->store, *store->reader, order, locs);
  if (!profile.ok()) return profile.status().Annotate("no profile stored");
  RETURN_IF_ERROR(fs::StoreProfile(*store->store, digest, chunk_count, *profile));
  Log("image " + id.substr(0, 12) + ": stored a start-up profile of " +
      std::to_string(order.size()) + " chunks" +
      (profile->pack ? ", start-up pack " + profile->pack->Short() : std::string()));
  return std::make_tuple(id, uint64_t{order.size()}, bytes);
}

std::vector<TargetInfo> MountManager::Targets() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<TargetInfo> out;
  for (const auto& [path, t] : targets_) out.push_back(t);
  return out;
}

std::vector<ImageInfo> MountManager::Images() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ImageInfo> out;
  for (const auto& [hex, img] : images_) {
    ImageInfo i;
    i.image_id = hex;
    i.store_url = img->store_url;
    i.references = img->refs;
    const fs::FsCounters& c = img->fs->counters();
    const chunkstore::FetchCounters& f = img->fs->fetch_counters();
    i.reads = c.reads;
    i.read_bytes = c.read_bytes;
    i.read_errors = c.read_errors;
    i.memory_hits = f.memory_hits;
    i.cache_hits = f.cache_hits;
    i.cache_hit_bytes = f.cache_hit_bytes;
    i.cache_misses = f.cache_misses;
    i.store_fetches = f.store_fetches;
    i.store_bytes = f.store_bytes;
    i.corrupt = f.corrupt;
    i.demand_misses = f.demand_misses;
    i.profile_chunks = img->fs->profile_chunks();
    i.retries = f.retries;
    i.locality_chunks = img->fs->locality_chunks();
    out.push_back(i);
  }
  return out;
}

void MountManager::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !reaper_.joinable()) return;
    for (const auto& [path, t] : targets_) {
      umount2(path.c_str(), MNT_DETACH);
      if (!t.upper.empty()) {
        std::error_code ec;
        stdfs::remove_all(t.upper, ec);
      }
    }
    targets_.clear();
    for (auto& [hex, img] : images_) EndSession(std::move(img));
    images_.clear();
    SaveTable().IgnoreError();
  }
  // Give the sessions a moment to end; one still held by a lazily detached
  // mount in use is left to the kernel when the process exits.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  {
    std::unique_lock<std::mutex> lock(mu_);
    reap_cv_.wait_until(lock, deadline, [&] {
      for (auto& d : draining_) {
        if (!d->done) return false;
      }
      return true;
    });
    stopping_ = true;
  }
  reap_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& d : draining_) {
    if (!d->done) {
      d->serve.detach();
      (void)d.release();  // its loop still runs; the process exit ends it
    }
  }
  draining_.clear();
}

}  // namespace ferry::snapshotter
