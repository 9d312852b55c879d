#include "snapshotter/mount_manager.h"

#include "fs/oci_index.h"

#include <sys/stat.h>

#include <filesystem>

namespace ferry::snapshotter {

namespace stdfs = std::filesystem;

Result<std::unique_ptr<MountManager>> MountManager::Create(MountManagerOptions opt) {
  if (opt.root.empty() || opt.root[0] != '/' || opt.root.find_first_of(",:") != std::string::npos) {
    return InvalidArgumentError("daemon root '" + opt.root +
                                "' must be an absolute path without ',' or ':'");
  }
  if (!opt.mounter) opt.mounter = NewSystemMounter();
  std::unique_ptr<MountManager> m(new MountManager(opt.root, opt.mounter));
  ASSIGN_OR_RETURN(m->attachments_, Attachments::Open(opt.root, m->mounter_.get()));
  ImageSessionsOptions so;
  so.root = opt.root;
  so.stores.node_cache = opt.node_cache;
  so.stores.memory_cache_bytes = opt.memory_cache_bytes;
  so.stores.fetch_threads = opt.fetch_threads;
  so.stores.prefetch_threads = opt.prefetch_threads;
  so.stores.fetch_deadline = opt.fetch_deadline;
  so.stores.open = opt.open_store;
  so.fuse_threads = opt.fuse_threads;
  so.mounter = m->mounter_.get();
  so.new_server = std::move(opt.new_server);
  ASSIGN_OR_RETURN(m->sessions_, ImageSessions::Create(std::move(so)));
  m->snapshots_ = std::make_unique<Snapshots>(m->attachments_.get(), std::move(opt.open_store));
  return m;
}

MountManager::~MountManager() { Shutdown(); }

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
  // Checked before the store is read (and again when attaching, since
  // another caller may take the target meanwhile).
  RETURN_IF_ERROR(attachments_->CheckFree(target));
  ASSIGN_OR_RETURN(SessionRef session, sessions_->Acquire(store_url, name));
  TargetInfo info{target, session.image_id, session.store_url, writable, "", ""};
  bool resumed = false;
  if (Status attached = attachments_->Attach(info, session.mountpoint, &resumed); !attached.ok()) {
    sessions_->Release(session);
    return attached;
  }
  return MountOutcome{session.image_id, session.shared, resumed};
}

Result<bool> MountManager::Unmount(const std::string& target_in, bool lazy,
                                   std::string* image_id) {
  const std::string target = stdfs::path(target_in).lexically_normal().string();
  return DetachAndRelease(target, lazy, ProcessNamespace{}, image_id);
}

namespace {

// An absolute, normalised path without a trailing '/', and not "/": the
// sandbox's root itself is not a mount point ferryd replaces.
Result<std::string> PathInProcess(const std::string& target_in, pid_t pid) {
  if (pid <= 0) return InvalidArgumentError("no process " + std::to_string(pid));
  if (target_in.empty() || target_in[0] != '/') {
    return InvalidArgumentError("mount point '" + target_in + "' must be an absolute path (as "
                                "process " + std::to_string(pid) + " sees it)");
  }
  std::string target = stdfs::path(target_in).lexically_normal().string();
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  if (target == "/") return InvalidArgumentError("cannot mount over the root of process " +
                                                 std::to_string(pid));
  return target;
}

}  // namespace

Result<MountOutcome> MountManager::MountInto(const std::string& store_url,
                                             const std::string& name, pid_t pid,
                                             const std::string& target_in, bool writable) {
  ASSIGN_OR_RETURN(std::string target, PathInProcess(target_in, pid));
  ASSIGN_OR_RETURN(uint64_t mnt_ns, mounter_->MountNamespace(pid));
  const ProcessNamespace into{pid, mnt_ns};
  RETURN_IF_ERROR(attachments_->CheckFree(target, into));
  ASSIGN_OR_RETURN(SessionRef session, sessions_->Acquire(store_url, name));
  TargetInfo info{target, session.image_id, session.store_url, writable, "", "", into};
  bool resumed = false;
  if (Status attached = attachments_->Attach(info, session.mountpoint, &resumed); !attached.ok()) {
    sessions_->Release(session);
    return attached;
  }
  return MountOutcome{session.image_id, session.shared, resumed};
}

Result<bool> MountManager::UnmountInto(pid_t pid, const std::string& target_in, bool lazy,
                                       std::string* image_id) {
  ASSIGN_OR_RETURN(std::string target, PathInProcess(target_in, pid));
  ProcessNamespace into{pid, 0};  // mnt_ns 0: the process is gone, find it by pid
  if (auto ns = mounter_->MountNamespace(pid); ns.ok()) into.mnt_ns = *ns;
  auto ended = DetachAndRelease(target, lazy, into, image_id);
  if (!ended.ok() && ended.status().code() == StatusCode::kNotFound && into.mnt_ns != 0) {
    // A target attached into an earlier process whose pid was reused.
    return DetachAndRelease(target, lazy, ProcessNamespace{pid, 0}, image_id);
  }
  return ended;
}

Result<bool> MountManager::DetachAndRelease(const std::string& target, bool lazy,
                                            const ProcessNamespace& into,
                                            std::string* image_id) {
  TargetInfo removed;
  Status st = attachments_->Detach(target, lazy, &removed, into);
  if (removed.target.empty()) return st;  // nothing was detached
  if (image_id != nullptr) *image_id = removed.image_id;
  if (removed.kept) {  // it held no session
    RETURN_IF_ERROR(st);
    return false;
  }
  bool ended = sessions_->Release(
      SessionRef{removed.image_id, removed.store_url, removed.source, /*shared=*/true});
  RETURN_IF_ERROR(st);  // the table could not be saved
  return ended;
}

Result<TargetInfo> MountManager::FindTarget(const std::string& target_in) const {
  const std::string target = stdfs::path(target_in).lexically_normal().string();
  auto t = attachments_->Find(target);
  if (!t.has_value()) return NotFoundError(target + " is not mounted by ferryd (" + root_ + ")");
  return *t;
}

Result<std::string> MountManager::StartProfile(const std::string& target) {
  ASSIGN_OR_RETURN(TargetInfo t, FindTarget(target));
  return sessions_->StartProfile(t.image_id);
}

Result<std::tuple<std::string, uint64_t, uint64_t>> MountManager::StopProfile(
    const std::string& target) {
  ASSIGN_OR_RETURN(TargetInfo t, FindTarget(target));
  return sessions_->StopProfile(t.image_id);
}

Result<SnapshotOutcome> MountManager::Snapshot(SnapshotSpec spec,
                                               const builder::ProgressSink& progress) {
  if (spec.into.pid != 0) {
    ASSIGN_OR_RETURN(std::string path, PathInProcess(spec.path, spec.into.pid));
    spec.path = path;
    ASSIGN_OR_RETURN(spec.into.mnt_ns, mounter_->MountNamespace(spec.into.pid));
  }
  return snapshots_->Take(spec, progress);
}

std::vector<TargetInfo> MountManager::Targets() const { return attachments_->List(); }

std::vector<ImageInfo> MountManager::Images() const { return sessions_->Images(); }

void MountManager::Shutdown() {
  // Targets first: a session ends once nothing is attached to it.
  if (attachments_ != nullptr) attachments_->Close();
  if (sessions_ != nullptr) sessions_->Shutdown();
}

Result<std::optional<std::string>> MountManager::FindChain(const std::string& store_url,
                                                          const std::string& chain_id) {
  auto chain = fs::ParseOciDigest(chain_id);
  if (!chain) return std::optional<std::string>();  // not a chain ID ferry could have indexed
  ASSIGN_OR_RETURN(chunkstore::ObjectStore * store, sessions_->Store(store_url));
  auto image = fs::LookupChain(*store, *chain);
  if (!image.ok()) {
    if (image.status().code() == StatusCode::kNotFound) return std::optional<std::string>();
    return image.status();
  }
  return std::optional<std::string>(image->Hex());
}

Result<SessionRef> MountManager::AcquireImage(const std::string& store_url, const std::string& image_id) {
  return sessions_->Acquire(store_url, image_id);
}

void MountManager::ReleaseImage(const SessionRef& ref) { sessions_->Release(ref); }

}  // namespace ferry::snapshotter
