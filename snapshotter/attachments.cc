#include "snapshotter/attachments.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
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

// A daemon that died left its targets mounted (on a dead FUSE connection)
// and its upper directories behind: detach and remove them all.
void Attachments::CleanStale() {
  std::ifstream in(root_ + "/mounts.json");
  if (in) {
    try {
      auto table = nlohmann::json::parse(in);
      for (const auto& t : table.at("targets")) {
        TargetInfo info;
        info.target = t.at("target").get<std::string>();
        info.into.pid = t.value("into_pid", 0);
        info.into.mnt_ns = t.value("mnt_ns", uint64_t{0});
        // One in a namespace that is gone (its process exited) went with it.
        if (UnmountTarget(info, /*lazy=*/true).ok()) {
          Log("removed stale mount " + info.target +
              (info.into.pid != 0 ? " in process " + std::to_string(info.into.pid) : ""));
        }
      }
    } catch (const std::exception& e) {
      Log("ignoring unreadable " + root_ + "/mounts.json: " + e.what());
    }
  }
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(root_ + "/sandboxes", ec)) {
    stdfs::remove_all(e.path(), ec);
  }
}

Status Attachments::SaveTable() {
  nlohmann::json table = {{"targets", nlohmann::json::array()}};
  for (const auto& [path, e] : targets_) {
    const TargetInfo& t = e.info;
    nlohmann::json entry = {{"target", t.target}, {"image", t.image_id}, {"store", t.store_url},
                            {"writable", t.writable}, {"upper", t.upper}};
    if (t.into.pid != 0) {
      entry["into_pid"] = t.into.pid;
      entry["mnt_ns"] = t.into.mnt_ns;
    }
    table["targets"].push_back(std::move(entry));
  }
  std::string path = root_ + "/mounts.json", tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << table.dump(1) << "\n";
    out.flush();
    if (!out) return Status(StatusCode::kIoError, "write " + tmp);
  }
  int fd = open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename " + tmp);
  return Status::Ok();
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
  if (auto t = targets_.find(KeyOf(target, into)); t != targets_.end()) {
    return AlreadyExistsError(target + " is already a ferry mount (image " + t->second.info.image_id +
                              ")");
  }
  return Status::Ok();
}

Status Attachments::Attach(TargetInfo info, const std::string& source) {
  info.source = source;
  info.upper.clear();
  {
    // Record the target before mounting it, so a crash in between still
    // leaves a trace the next daemon cleans up.
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return FailedPreconditionError("ferryd is shutting down");
    if (auto t = targets_.find(KeyOf(info.target, info.into)); t != targets_.end()) {
      return AlreadyExistsError(info.target + " is already a ferry mount (image " +
                                t->second.info.image_id + ")");
    }
    if (info.writable) {
      std::string tmpl = root_ + "/sandboxes/XXXXXX";
      if (mkdtemp(tmpl.data()) == nullptr) {
        return ErrnoError("create a sandbox directory in " + root_ + "/sandboxes");
      }
      info.upper = tmpl;
    }
    targets_[KeyOf(info.target, info.into)] = Entry{info, false};
    if (Status st = SaveTable(); !st.ok()) {
      targets_.erase(KeyOf(info.target, info.into));
      SaveTable().IgnoreError();
      RemoveUpper(info.upper);
      return st;
    }
  }
  Status mounted = MountTarget(info);
  std::unique_lock<std::mutex> lock(mu_);
  auto t = targets_.find(KeyOf(info.target, info.into));
  if (mounted.ok() && t != targets_.end() && !closed_) {
    t->second.attached = true;
    return Status::Ok();
  }
  // Close() ran meanwhile (and dropped the entry): undo the mount it missed.
  if (mounted.ok()) {
    UnmountTarget(info, /*lazy=*/true).IgnoreError();
    mounted = FailedPreconditionError("ferryd is shutting down");
  }
  if (t != targets_.end()) {
    targets_.erase(t);
    SaveTable().IgnoreError();
  }
  lock.unlock();
  RemoveUpper(info.upper);
  return mounted;
}

Status Attachments::MountTarget(const TargetInfo& info) {
  const bool into = info.into.pid != 0;
  if (!info.writable) {
    return into ? mounter_->BindReadOnlyInto(info.source, info.into, info.target)
                : mounter_->BindReadOnly(info.source, info.target);
  }
  std::error_code ec;
  stdfs::create_directory(info.upper + "/upper", ec);
  stdfs::create_directory(info.upper + "/work", ec);
  mounter_->CopyRootAttributes(info.source, info.upper + "/upper");
  const std::string upper = info.upper + "/upper", work = info.upper + "/work";
  return into ? mounter_->OverlayInto(info.source, upper, work, info.into, info.target)
              : mounter_->Overlay(info.source, upper, work, info.target);
}

Status Attachments::UnmountTarget(const TargetInfo& info, bool lazy) {
  if (info.into.pid == 0) return mounter_->Unmount(info.target, lazy);
  return mounter_->UnmountIn(info.into, info.target, lazy);
}

Status Attachments::Detach(const std::string& target, bool lazy, TargetInfo* removed,
                           const ProcessNamespace& into) {
  std::unique_lock<std::mutex> lock(mu_);
  auto t = targets_.find(LookupKey(target, into));
  if (t == targets_.end() || !t->second.attached) {
    if (into.pid != 0) {
      return NotFoundError(target + " in process " + std::to_string(into.pid) +
                           " is not mounted by ferryd (" + root_ + ")");
    }
    return NotFoundError(target + " is not mounted by ferryd (" + root_ + ")");
  }
  // Unmounting a bind or an overlay does not wait on the FUSE server below
  // it, so this is done with the lock held: no two callers detach one target.
  if (Status st = UnmountTarget(t->second.info, lazy); !st.ok()) {
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
    if (e.attached) out.push_back(e.info);
  }
  return out;
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
  for (const auto& [key, e] : targets_) {
    UnmountTarget(e.info, /*lazy=*/true).IgnoreError();
    if (!e.info.upper.empty()) {
      std::error_code ec;
      stdfs::remove_all(e.info.upper, ec);
    }
  }
  targets_.clear();
  SaveTable().IgnoreError();
}

}  // namespace ferry::snapshotter
