#include "snapshotter/image_sessions.h"

#include <chrono>
#include <filesystem>

#include "fs/profile.h"
#include "snapshotter/daemon_log.h"
#include "snapshotter/image_loading.h"

namespace ferry::snapshotter {

namespace stdfs = std::filesystem;

struct ImageSessions::Session {
  std::string id, store_url, mountpoint;
  OpenStore* store = nullptr;
  Digest digest;
  std::unique_ptr<fs::ImageFs> fs;  // declared before server: destroyed after it
  std::unique_ptr<ImageServer> server;
  std::thread serve;
  bool done = false;  // the FUSE loop has returned (under mu_)
  uint32_t refs = 0;  // under mu_
  fs::ProfileRecorder* recording = nullptr;  // owned by `recorders`, under mu_
  // Reads may still hold a recorder they loaded just before it was
  // detached, so recorders live as long as the session.
  std::vector<std::unique_ptr<fs::ProfileRecorder>> recorders;
  ~Session() {
    if (serve.joinable()) serve.join();
    server.reset();
    std::error_code ec;
    stdfs::remove(mountpoint, ec);
  }
};

namespace {

class FuseImageServer final : public ImageServer {
 public:
  FuseImageServer(fs::ImageFs* fs, const fs::FuseOptions& opt) : server_(fs, opt) {}
  Status Mount(const std::string& mountpoint) override { return server_.Mount(mountpoint); }
  Status Serve() override { return server_.Serve(); }
  void Detach() override { server_.Detach(); }

 private:
  fs::FuseServer server_;
};

}  // namespace

uint64_t ImageInfo::Counter(std::string_view name) const {
  for (const CounterValue& c : counters) {
    if (c.name == name) return c.value;
  }
  return 0;
}

ImageSessions::ImageSessions(ImageSessionsOptions opt) : opt_(std::move(opt)), stores_(opt_.stores) {
  if (!opt_.new_server) {
    opt_.new_server = [](fs::ImageFs* fs, const fs::FuseOptions& fo) -> std::unique_ptr<ImageServer> {
      return std::make_unique<FuseImageServer>(fs, fo);
    };
  }
}

Result<std::unique_ptr<ImageSessions>> ImageSessions::Create(ImageSessionsOptions opt) {
  std::error_code ec;
  stdfs::create_directories(opt.root + "/mnt", ec);
  if (ec) return Status(StatusCode::kIoError, "create " + opt.root + "/mnt: " + ec.message());
  std::unique_ptr<ImageSessions> s(new ImageSessions(std::move(opt)));
  s->CleanStale();
  s->reaper_ = std::thread([raw = s.get()] { raw->ReapLoop(); });
  return s;
}

ImageSessions::~ImageSessions() { Shutdown(); }

// A daemon that died left its sessions' mounts behind, on dead FUSE
// connections: detach and remove them.
void ImageSessions::CleanStale() {
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(opt_.root + "/mnt", ec)) {
    opt_.mounter->Unmount(e.path().string(), /*lazy=*/true).IgnoreError();
    stdfs::remove(e.path(), ec);
  }
}

std::optional<SessionRef> ImageSessions::Share(const std::string& hex) {
  auto it = sessions_.find(hex);
  if (it == sessions_.end()) return std::nullopt;
  if (it->second->done) {
    // Its session ended underneath us (someone unmounted it by hand).
    EndSession(std::move(it->second));
    sessions_.erase(it);
    return std::nullopt;
  }
  Session& s = *it->second;
  ++s.refs;
  return SessionRef{s.id, s.store_url, s.mountpoint, true};
}

Result<SessionRef> ImageSessions::Acquire(const std::string& store_url, const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return FailedPreconditionError("ferryd is shutting down");
  }
  ASSIGN_OR_RETURN(OpenStore * store, stores_.Get(store_url));
  auto id = ResolveImageName(*store->store, name);
  if (!id.ok()) return id.status().Annotate("cannot mount '" + name + "'");
  const std::string hex = id->Hex();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto shared = Share(hex)) return *shared;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Session> mine, StartSession(store, *id, name));
  std::unique_lock<std::mutex> lock(mu_);
  std::optional<SessionRef> shared;
  if (!closed_) shared = Share(hex);
  if (closed_ || shared.has_value()) {
    // Shut down, or another caller made a session for the image meanwhile:
    // ours was never served, and destroying it unmounts it.
    lock.unlock();
    mine.reset();
    if (shared.has_value()) return *shared;
    return FailedPreconditionError("ferryd is shutting down");
  }
  Session* raw = mine.get();
  raw->refs = 1;
  raw->serve = std::thread([this, raw] {
    Status s = raw->server->Serve();
    if (!s.ok()) Log(raw->id.substr(0, 12) + ": " + s.ToString());
    std::lock_guard<std::mutex> l(mu_);
    raw->done = true;
    reap_cv_.notify_all();
  });
  sessions_[hex] = std::move(mine);
  Log("serving image " + hex + " from " + store->url);
  return SessionRef{hex, store->url, raw->mountpoint, false};
}

Result<std::unique_ptr<ImageSessions::Session>> ImageSessions::StartSession(
    OpenStore* store, const Digest& id, const std::string& name) {
  auto loaded = LoadImageAndProfile(*store, id);
  if (!loaded.ok()) return loaded.status().Annotate("cannot mount '" + name + "'");
  const std::string hex = id.Hex();
  auto s = std::make_unique<Session>();
  s->id = hex;
  s->store_url = store->url;
  s->store = store;
  s->digest = id;
  s->mountpoint = opt_.root + "/mnt/" + hex + "." + std::to_string(++next_seq_);
  std::error_code ec;
  stdfs::create_directories(s->mountpoint, ec);
  if (ec) return Status(StatusCode::kIoError, "create " + s->mountpoint + ": " + ec.message());
  std::string tag = hex.substr(0, 12);
  s->fs = std::make_unique<fs::ImageFs>(std::move(loaded->reader), store->reader.get(),
                                        [tag](const std::string& l) { Log(tag + ": " + l); },
                                        loaded->fetch);
  // A start-up profile, if the image has one, becomes prefetch at once
  // (if it is not already being fetched), while the kernel mount is still
  // being made.
  const EarlyProfile& profile = loaded->profile;
  if (profile.profile.has_value()) {
    if (s->fs->ReplayProfile(*profile.profile, profile.fetching)) {
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
  s->server = opt_.new_server(s->fs.get(), fo);
  RETURN_IF_ERROR(s->server->Mount(s->mountpoint));
  return s;
}

bool ImageSessions::Release(const SessionRef& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(ref.image_id);
  // A session replaced after it ended underneath is not the one referred to.
  if (it == sessions_.end() || it->second->mountpoint != ref.mountpoint) return false;
  if (--it->second->refs != 0) return false;
  EndSession(std::move(it->second));
  sessions_.erase(it);
  return true;
}

void ImageSessions::EndSession(std::unique_ptr<Session> s) {
  s->server->Detach();
  draining_.push_back(std::move(s));
  reap_cv_.notify_all();
}

// Destroys sessions whose loop has ended (outside the lock: joining and
// tearing down a session may take a moment).
void ImageSessions::ReapLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    reap_cv_.wait(lock, [&] {
      if (stopping_) return true;
      for (auto& d : draining_) {
        if (d->done) return true;
      }
      return false;
    });
    std::vector<std::unique_ptr<Session>> finished;
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

Result<std::string> ImageSessions::StartProfile(const std::string& image_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(image_id);
  if (it == sessions_.end()) return NotFoundError("image " + image_id.substr(0, 12) + " has no session");
  Session* s = it->second.get();
  if (s->recording != nullptr) {
    return FailedPreconditionError("image " + s->id.substr(0, 12) + " is already recording a profile");
  }
  s->recorders.push_back(
      std::make_unique<fs::ProfileRecorder>(static_cast<uint32_t>(s->fs->image().chunks().size())));
  s->recording = s->recorders.back().get();
  s->fs->SetRecorder(s->recording);
  return s->id;
}

Result<std::tuple<std::string, uint64_t, uint64_t>> ImageSessions::StopProfile(
    const std::string& image_id) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = sessions_.find(image_id);
  if (it == sessions_.end()) return NotFoundError("image " + image_id.substr(0, 12) + " has no session");
  Session* s = it->second.get();
  if (s->recording == nullptr) {
    return FailedPreconditionError("image " + s->id.substr(0, 12) + " is not recording a profile");
  }
  s->fs->SetRecorder(nullptr);
  std::vector<uint32_t> order = s->recording->Take();
  s->recording = nullptr;
  uint64_t bytes = 0;
  std::vector<chunkstore::ChunkLocation> locs;
  for (uint32_t i : order) {
    bytes += s->fs->image().chunks()[i].ulen;
    locs.push_back(s->fs->image().Chunk(i));
  }
  // The start-up pack is written without the lock (it compresses every
  // chunk): the image may be unmounted meanwhile, its store and reader not.
  const std::string id = s->id;
  const Digest digest = s->digest;
  const uint32_t chunk_count = static_cast<uint32_t>(s->fs->image().chunks().size());
  OpenStore* store = s->store;
  lock.unlock();
  auto profile = fs::MakeStartupPack(*store->store, *store->reader, order, locs);
  if (!profile.ok()) return profile.status().Annotate("no profile stored");
  RETURN_IF_ERROR(fs::StoreProfile(*store->store, digest, chunk_count, *profile));
  Log("image " + id.substr(0, 12) + ": stored a start-up profile of " +
      std::to_string(order.size()) + " chunks" +
      (profile->pack ? ", start-up pack " + profile->pack->Short() : std::string()));
  return std::make_tuple(id, uint64_t{order.size()}, bytes);
}

std::vector<ImageInfo> ImageSessions::Images() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ImageInfo> out;
  for (const auto& [hex, s] : sessions_) {
    ImageInfo i{hex, s->store_url, s->refs, {}};
    for (const ImageCounter& c : kImageCounters) i.counters.push_back({c.name, c.read(*s->fs)});
    out.push_back(std::move(i));
  }
  return out;
}

void ImageSessions::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ && !reaper_.joinable()) return;
    closed_ = true;
    for (auto& [hex, s] : sessions_) EndSession(std::move(s));
    sessions_.clear();
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

Result<chunkstore::ObjectStore*> ImageSessions::Store(const std::string& store_url) {
  ASSIGN_OR_RETURN(OpenStore* open, stores_.Get(store_url));
  return open->store.get();
}

}  // namespace ferry::snapshotter
