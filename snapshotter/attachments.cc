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
        std::string target = t.at("target").get<std::string>();
        if (mounter_->Unmount(target, /*lazy=*/true).ok()) Log("removed stale mount " + target);
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
    table["targets"].push_back({{"target", t.target}, {"image", t.image_id},
                                {"store", t.store_url}, {"writable", t.writable},
                                {"upper", t.upper}});
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

Status Attachments::CheckFree(const std::string& target) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return FailedPreconditionError("ferryd is shutting down");
  if (auto t = targets_.find(target); t != targets_.end()) {
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
    if (auto t = targets_.find(info.target); t != targets_.end()) {
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
    targets_[info.target] = Entry{info, false};
    if (Status st = SaveTable(); !st.ok()) {
      targets_.erase(info.target);
      SaveTable().IgnoreError();
      RemoveUpper(info.upper);
      return st;
    }
  }
  Status mounted = MountTarget(info);
  std::unique_lock<std::mutex> lock(mu_);
  auto t = targets_.find(info.target);
  if (mounted.ok() && t != targets_.end() && !closed_) {
    t->second.attached = true;
    return Status::Ok();
  }
  // Close() ran meanwhile (and dropped the entry): undo the mount it missed.
  if (mounted.ok()) {
    mounter_->Unmount(info.target, /*lazy=*/true).IgnoreError();
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
  if (!info.writable) return mounter_->BindReadOnly(info.source, info.target);
  std::error_code ec;
  stdfs::create_directory(info.upper + "/upper", ec);
  stdfs::create_directory(info.upper + "/work", ec);
  mounter_->CopyRootAttributes(info.source, info.upper + "/upper");
  return mounter_->Overlay(info.source, info.upper + "/upper", info.upper + "/work", info.target);
}

Status Attachments::Detach(const std::string& target, bool lazy, TargetInfo* removed) {
  std::unique_lock<std::mutex> lock(mu_);
  auto t = targets_.find(target);
  if (t == targets_.end() || !t->second.attached) {
    return NotFoundError(target + " is not mounted by ferryd (" + root_ + ")");
  }
  // Unmounting a bind or an overlay does not wait on the FUSE server below
  // it, so this is done with the lock held: no two callers detach one target.
  if (Status st = mounter_->Unmount(target, lazy); !st.ok()) {
    int err = st.sys_errno();
    if (err == EBUSY) {
      return FailedPreconditionError(target + " is busy (in use); stop what uses it, or unmount "
                                     "with --lazy");
    }
    // EINVAL: no longer a mount point (unmounted by hand); clean up the rest.
    if (err != EINVAL && err != ENOENT) return st;
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

std::optional<TargetInfo> Attachments::Find(const std::string& target) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto t = targets_.find(target);
  if (t == targets_.end() || !t->second.attached) return std::nullopt;
  return t->second.info;
}

void Attachments::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  closed_ = true;
  for (const auto& [path, e] : targets_) {
    mounter_->Unmount(path, /*lazy=*/true).IgnoreError();
    if (!e.info.upper.empty()) {
      std::error_code ec;
      stdfs::remove_all(e.info.upper, ec);
    }
  }
  targets_.clear();
  SaveTable().IgnoreError();
}

}  // namespace ferry::snapshotter
