// FakeMounter: a Mounter for tests that mounts nothing. It remembers what
// is mounted where, fails the calls a test asks it to, and answers like the
// kernel would (EBUSY, EINVAL), so attachments are tested without root.
// Thread-safe.
#pragma once

#include <cerrno>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "snapshotter/mounter.h"

namespace ferry::snapshotter {

class FakeMounter final : public Mounter {
 public:
  struct Mount {
    std::string kind;    // "bind-ro" or "overlay"
    std::string source;  // bind: the source; overlay: lowerdir
    std::string upper, work;
  };

  // The next mount at `target` fails with `err`.
  void FailNextMount(const std::string& target, int err) {
    std::lock_guard<std::mutex> l(mu_);
    fail_[target] = err;
  }
  // While set, a non-lazy unmount of `target` fails with EBUSY.
  void SetBusy(const std::string& target, bool busy) {
    std::lock_guard<std::mutex> l(mu_);
    if (busy) {
      busy_.insert(target);
    } else {
      busy_.erase(target);
    }
  }
  // Pretends `target` is mounted (left by an earlier daemon).
  void Preload(const std::string& target) {
    std::lock_guard<std::mutex> l(mu_);
    mounts_[target] = Mount{"stale", "", "", ""};
  }
  std::map<std::string, Mount> mounts() const {
    std::lock_guard<std::mutex> l(mu_);
    return mounts_;
  }
  // Targets unmounted so far, in order, with "(lazy)" appended if lazily.
  std::vector<std::string> unmounted() const {
    std::lock_guard<std::mutex> l(mu_);
    return unmounted_;
  }

  Status BindReadOnly(const std::string& source, const std::string& target) override {
    return Add(target, Mount{"bind-ro", source, "", ""}, "bind " + source + " at " + target);
  }
  Status Overlay(const std::string& lower, const std::string& upper, const std::string& work,
                 const std::string& target) override {
    return Add(target, Mount{"overlay", lower, upper, work}, "mount overlay at " + target);
  }
  Status Unmount(const std::string& target, bool lazy) override {
    std::lock_guard<std::mutex> l(mu_);
    if (!mounts_.count(target)) return ErrnoError("unmount " + target, EINVAL);
    if (!lazy && busy_.count(target)) return ErrnoError("unmount " + target, EBUSY);
    mounts_.erase(target);
    unmounted_.push_back(target + (lazy ? " (lazy)" : ""));
    return Status::Ok();
  }
  void CopyRootAttributes(const std::string&, const std::string&) override {}

 private:
  Status Add(const std::string& target, Mount m, const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    if (auto f = fail_.find(target); f != fail_.end()) {
      int err = f->second;
      fail_.erase(f);
      return ErrnoError(what, err);
    }
    if (mounts_.count(target)) return ErrnoError(what, EBUSY);
    mounts_[target] = std::move(m);
    return Status::Ok();
  }

  mutable std::mutex mu_;
  std::map<std::string, Mount> mounts_;  // by target
  std::map<std::string, int> fail_;
  std::set<std::string> busy_;
  std::vector<std::string> unmounted_;
};

}  // namespace ferry::snapshotter
