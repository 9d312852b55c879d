#include "snapshotter/attachments.h"
#include "snapshotter/state_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <set>
#include <fstream>
#include <nlohmann/json.hpp>

#include "snapshotter/daemon_log.h"

namespace ferry::snapshotter {

namespace stdfs = std::filesystem;

Result<std::unique_ptr<Attachments>> Attachments::Open(const std::string& root, Mounter* mounter) {
  std::error_code ec;
  stdfs::create_directories(root + "/sandboxes", ec);
  if (ec) return Status(StatusCode::kIoError, "create " + root + "/sandboxes: " + ec.message());
  std::unique_ptr<Attachments> a(new Attachments(root, mounter));
  a->CleanStale();
  std::lock_guard<std::mutex> lock(a->mu_);
  RETURN_IF_ERROR(a->SaveTable());
  return a;
}

// A daemon that died left its targets mounted (on a dead FUSE connection):
// detach them all. What a writable one wrote is kept; every other sandbox
// directory (one whose target was never recorded as made) is removed.
void Attachments::CleanStale() {
  std::set<std::string> keep;
  std::ifstream in(root_ + "/mounts.json");
  if (in) {
    try {
      auto table = nlohmann::json::parse(in);
      for (const auto& t : table.at("targets")) {
        TargetInfo info;
        info.target = t.at("target").get<std::string>();
        info.image_id = t.value("image", std::string());
        info.store_url = t.value("store", std::string());
        info.writable = t.value("writable", false);
        info.upper = t.value("upper", std::string());
        info.into.pid = t.value("into_pid", 0);
        info.into.mnt_ns = t.value("mnt_ns", uint64_t{0});
        // One in a namespace that is gone (its process exited) went with it.
        if (!t.value("kept", false) && UnmountTarget(info, /*lazy=*/true).ok()) {
          Log("removed stale mount " + info.target +
              (info.into.pid != 0 ? " in process " + std::to_string(info.into.pid) : ""));
        }
        std::error_code ec;
        if (!info.writable || info.upper.empty() || info.image_id.empty() || !NamespaceAlive(info) ||
            stdfs::path(info.upper).parent_path() != stdfs::path(root_ + "/sandboxes") ||
            !stdfs::is_directory(info.upper + "/upper", ec)) {
          continue;
        }
        info.kept = true;
        keep.insert(stdfs::path(info.upper).filename().string());
        targets_[KeyOf(info.target, info.into)] = Entry{info, false};
        Log("kept the changes of " + info.target + " (image " + info.image_id.substr(0, 12) +
            ") in " + info.upper + ": mount the image there --writable to resume them, or "
            "unmount it to discard them");
      }
    } catch (const std::exception& e) {
      Log("ignoring unreadable " + root_ + "/mounts.json: " + e.what());
    }
  }
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(root_ + "/sandboxes", ec)) {
    if (!keep.contains(e.path().filename().string())) stdfs::remove_all(e.path(), ec);
  }
}

Status Attachments::SaveTable() {
  nlohmann::json table = {{"targets", nlohmann::json::array()}};
  for (const auto& [path, e] : targets_) {
    const TargetInfo& t = e.info;
    nlohmann::json entry = {{"target", t.target}, {"image", t.image_id}, {"store", t.store_url},
                            {"writable", t.writable}, {"upper", t.upper}};
    if (t.kept) entry["kept"] = true;
    if (t.into.pid != 0) {
      entry["into_pid"] = t.into.pid;
      entry["mnt_ns"] = t.into.mnt_ns;
    }
    table["targets"].push_back(std::move(entry));
  }
  return SaveStateFile(root_ + "/mounts.json", table.dump(1) + "\n");
}

std::string Attachments::KeyOf(const std::string& target, const ProcessNamespace& into) {
  if (into.pid == 0) return target;
  return "mntns " + std::to_string(into.mnt_ns) + ":" + target;
}

std::string Attachments::LookupKey(const std::string& target,
                                   const ProcessNamespace& into) const {
  if (into.pid == 0 || into.mnt_ns != 0) return KeyOf(target, into);
  // The process is gone, so its namespace is unknown: find it by pid.
  for (const auto& [key, e] : targets_) {
    if (e.info.target == target && e.info.into.pid == into.pid) return key;
  }
  return "";
}

Status Attachments::CheckFree(const std::string& target, const ProcessNamespace& into) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return FailedPreconditionError("ferryd is shutting down");
  if (auto t = targets_.find(KeyOf(target, into)); t != targets_.end() && !t->second.info.kept) {
    return AlreadyExistsError(target + " is already a ferry mount (image " + t->second.info.image_id +
                              ")");
  }
  return Status::Ok();
}

namespace {

Status KeptError(const TargetInfo& kept) {
  return AlreadyExistsError(
      kept.target + " holds the changes of a writable mount of image " +
      kept.image_id.substr(0, 12) + " kept from before ferryd stopped: mount that image there "
      "--writable to resume them, snapshot them (`ferry snapshot " + kept.target +
      " --tag NAME`), or discard them (`ferry umount " + kept.target + "`)");
}

}  // namespace

Status Attachments::Attach(TargetInfo info, const std::string& source, bool* resumed) {
  info.source = source;
  info.upper.clear();
  info.kept = false;
  bool resuming = false;
  {
    // Record the target before mounting it, so a crash in between still
    // leaves a trace the next daemon cleans up.
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return FailedPreconditionError("ferryd is shutting down");
    const std::string key = KeyOf(info.target, info.into);
    if (auto t = targets_.find(key); t != targets_.end()) {
      const TargetInfo& old = t->second.info;
      if (!old.kept) {
        return AlreadyExistsError(info.target + " is already a ferry mount (image " +
                                  old.image_id + ")");
      }
      if (!info.writable || old.image_id != info.image_id || t->second.pins > 0) {
        return KeptError(old);
      }
      // Resume: the same upper directory under a new overlay.
      resuming = true;
      info.upper = old.upper;
      t->second = Entry{info, false};
      if (Status st = SaveTable(); !st.ok()) {
        t->second.info = old;
        return st;
      }
    } else {
      if (info.writable) {
        std::string tmpl = root_ + "/sandboxes/XXXXXX";
        if (mkdtemp(tmpl.data()) == nullptr) {
          return ErrnoError("create a sandbox directory in " + root_ + "/sandboxes");
        }
        info.upper = tmpl;
      }
      targets_[key] = Entry{info, false};
      if (Status st = SaveTable(); !st.ok()) {
        targets_.erase(key);
        SaveTable().IgnoreError();
        RemoveUpper(info.upper);
        return st;
      }
    }
  }
  Status mounted = MountTarget(info, /*fresh=*/!resuming);
  std::unique_lock<std::mutex> lock(mu_);
  auto t = targets_.find(KeyOf(info.target, info.into));
  if (mounted.ok() && t != targets_.end() && !closed_) {
    t->second.attached = true;
    if (resumed != nullptr) *resumed = resuming;
    return Status::Ok();
  }
  // Close() ran meanwhile (and dropped the entry): undo the mount it missed.
  if (mounted.ok()) {
    UnmountTarget(info, /*lazy=*/true).IgnoreError();
    mounted = FailedPreconditionError("ferryd is shutting down");
  }
  if (resuming) {
    // What the sandbox wrote stays: kept again, as it was.
    info.kept = true;
    info.source.clear();
    targets_[KeyOf(info.target, info.into)] = Entry{info, false};
    SaveTable().IgnoreError();
    return mounted;
  }
  if (t != targets_.end()) {
    targets_.erase(t);
    SaveTable().IgnoreError();
  }
  lock.unlock();
  RemoveUpper(info.upper);
  return mounted;
}

Status Attachments::MountTarget(const TargetInfo& info, bool fresh) {
  const bool into = info.into.pid != 0;
  if (!info.writable) {
    return into ? mounter_->BindReadOnlyInto(info.source, info.into, info.target)
                : mounter_->BindReadOnly(info.source, info.target);
  }
  std::error_code ec;
  stdfs::create_directory(info.upper + "/upper", ec);
  stdfs::create_directory(info.upper + "/work", ec);
  if (fresh) mounter_->CopyRootAttributes(info.source, info.upper + "/upper");
  const std::string upper = info.upper + "/upper", work = info.upper + "/work";
  return into ? mounter_->OverlayInto(info.source, upper, work, info.into, info.target)
              : mounter_->Overlay(info.source, upper, work, info.target);
}

bool Attachments::NamespaceAlive(const TargetInfo& info) const {
  if (info.into.pid == 0) return true;
  auto ns = mounter_->MountNamespace(info.into.pid);
  return ns.ok() && *ns == info.into.mnt_ns;
}

Status Attachments::UnmountTarget(const TargetInfo& info, bool lazy) {
  if (info.into.pid == 0) return mounter_->Unmount(info.target, lazy);
  return mounter_->UnmountIn(info.into, info.target, lazy);
}

Status Attachments::Detach(const std::string& target, bool lazy, TargetInfo* removed,
                           const ProcessNamespace& into) {
  std::unique_lock<std::mutex> lock(mu_);
  auto t = targets_.find(LookupKey(target, into));
  if (t == targets_.end() || (!t->second.attached && !t->second.info.kept)) {
    if (into.pid != 0) {
      return NotFoundError(target + " in process " + std::to_string(into.pid) +
                           " is not mounted by ferryd (" + root_ + ")");
    }
    return NotFoundError(target + " is not mounted by ferryd (" + root_ + ")");
  }
  if (t->second.pins > 0) {
    return FailedPreconditionError("a snapshot of " + target + " is being taken; unmount it "
                                   "when the snapshot is done");
  }
  // Unmounting a bind or an overlay does not wait on the FUSE server below
  // it, so this is done with the lock held: no two callers detach one target.
  // A kept target is not mounted.
  if (Status st = t->second.info.kept ? Status::Ok() : UnmountTarget(t->second.info, lazy);
      !st.ok()) {
    int err = st.sys_errno();
    if (err == EBUSY) {
      return FailedPreconditionError(target + " is busy (in use); stop what uses it, or unmount "
                                     "with --lazy");
    }
    // EINVAL: no longer a mount point (unmounted by hand); ESRCH: its
    // process and namespace are gone, and the mount with them. Clean up the
    // rest.
    if (err != EINVAL && err != ENOENT && err != ESRCH) return st;
  }
  *removed = t->second.info;
  targets_.erase(t);
  Status saved = SaveTable();
  lock.unlock();
  // The upper directory may be large: it goes without the lock. A crash
  // before it is gone leaves it to the next daemon's clean-up.
  RemoveUpper(removed->upper);
  return saved;
}

void Attachments::RemoveUpper(const std::string& upper) {
  if (upper.empty()) return;
  std::error_code ec;
  stdfs::remove_all(upper, ec);
  if (ec) Log("cannot remove " + upper + ": " + ec.message());
}

std::vector<TargetInfo> Attachments::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<TargetInfo> out;
  for (const auto& [path, e] : targets_) {
    if (e.attached || e.info.kept) out.push_back(e.info);
  }
  return out;
}

Result<TargetInfo> Attachments::PinContaining(const std::string& path,
                                              const ProcessNamespace& into) {
  std::lock_guard<std::mutex> lock(mu_);
  Entry* best = nullptr;
  for (auto& [key, e] : targets_) {
    const std::string& t = e.info.target;
    if ((e.info.into.pid == 0) != (into.pid == 0) || e.info.into.mnt_ns != into.mnt_ns ||
        (!e.attached && !e.info.kept)) {
      continue;
    }
    const bool holds = path == t || (path.size() > t.size() && path.compare(0, t.size(), t) == 0 &&
                                     (t == "/" || path[t.size()] == '/'));
    if (holds && (best == nullptr || t.size() > best->info.target.size())) best = &e;
  }
  if (best == nullptr) {
    return NotFoundError(path + (into.pid != 0 ? " in process " + std::to_string(into.pid) : "") +
                         " is not in a mount of ferryd (" + root_ + ")");
  }
  ++best->pins;
  return best->info;
}

void Attachments::Unpin(const TargetInfo& pinned) {
  std::lock_guard<std::mutex> lock(mu_);
  auto t = targets_.find(KeyOf(pinned.target, pinned.into));
  if (t != targets_.end() && t->second.pins > 0) --t->second.pins;
}

std::optional<TargetInfo> Attachments::Find(const std::string& target,
                                            const ProcessNamespace& into) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto t = targets_.find(LookupKey(target, into));
  if (t == targets_.end() || !t->second.attached) return std::nullopt;
  return t->second.info;
}

void Attachments::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  closed_ = true;
  for (auto it = targets_.begin(); it != targets_.end();) {
    Entry& e = it->second;
    if (e.attached) UnmountTarget(e.info, /*lazy=*/true).IgnoreError();
    // Kept, as after a crash: what the sandbox wrote outlives the daemon.
    if (e.info.writable && !e.info.upper.empty() && (e.attached || e.info.kept) &&
        NamespaceAlive(e.info)) {
      e.info.kept = true;
      e.info.source.clear();
      e.attached = false;
      ++it;
    } else {
      it = targets_.erase(it);
    }
  }
  SaveTable().IgnoreError();
}

}  // namespace ferry::snapshotter
