// FakeMounter: a Mounter for tests that mounts nothing. It remembers what
// is mounted where, fails the calls a test asks it to, and answers like the
// kernel would (EBUSY, EINVAL), so attachments are tested without root.
// Thread-safe.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstdint>
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
  // Processes for the *Into calls: `pid` lives in mount namespace `mnt_ns`.
  // Ending it ends its namespace, and with it the mounts made there.
  void StartProcess(pid_t pid, uint64_t mnt_ns) {
    std::lock_guard<std::mutex> l(mu_);
    processes_[pid] = mnt_ns;
  }
  void EndProcess(pid_t pid) {
    std::lock_guard<std::mutex> l(mu_);
    auto p = processes_.find(pid);
    if (p == processes_.end()) return;
    const std::string prefix = IntoKey(p->second, "");
    processes_.erase(p);
    for (auto m = mounts_.lower_bound(prefix); m != mounts_.end() && m->first.starts_with(prefix);) {
      m = mounts_.erase(m);
    }
  }
  // How mounts() names `path` in mount namespace `mnt_ns`.
  static std::string IntoKey(uint64_t mnt_ns, const std::string& path) {
    return "mntns " + std::to_string(mnt_ns) + ":" + path;
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
  void CopyRootAttributes(const std::string&, const std::string&) override {
    std::lock_guard<std::mutex> l(mu_);
    ++copied_roots_;
  }
  // How many times CopyRootAttributes was called (once per fresh upper).
  int copied_roots() const {
    std::lock_guard<std::mutex> l(mu_);
    return copied_roots_;
  }

  Result<uint64_t> MountNamespace(pid_t pid) override {
    std::lock_guard<std::mutex> l(mu_);
    auto p = processes_.find(pid);
    if (p == processes_.end()) return Gone(pid);
    return p->second;
  }
  Status BindReadOnlyInto(const std::string& source, const ProcessNamespace& in,
                          const std::string& path) override {
    if (Status st = Check(in); !st.ok()) return st;
    return Add(IntoKey(in.mnt_ns, path), Mount{"bind-ro", source, "", ""}, "bind at " + path);
  }
  Status OverlayInto(const std::string& lower, const std::string& upper, const std::string& work,
                     const ProcessNamespace& in, const std::string& path) override {
    if (Status st = Check(in); !st.ok()) return st;
    return Add(IntoKey(in.mnt_ns, path), Mount{"overlay", lower, upper, work},
               "mount overlay at " + path);
  }
  Status UnmountIn(const ProcessNamespace& in, const std::string& path, bool lazy) override {
    if (Status st = Check(in); !st.ok()) return st;
    return Unmount(IntoKey(in.mnt_ns, path), lazy);
  }

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

  static Status Gone(pid_t pid) {
    return Status(StatusCode::kNotFound, "process " + std::to_string(pid) + " does not exist",
                  ESRCH);
  }
  Status Check(const ProcessNamespace& in) {
    std::lock_guard<std::mutex> l(mu_);
    auto p = processes_.find(in.pid);
    if (p == processes_.end() || (in.mnt_ns != 0 && p->second != in.mnt_ns)) return Gone(in.pid);
    return Status::Ok();
  }

  mutable std::mutex mu_;
  std::map<pid_t, uint64_t> processes_;   // pid -> mount namespace
  std::map<std::string, Mount> mounts_;  // by target (IntoKey in a process's namespace)
  std::map<std::string, int> fail_;
  std::set<std::string> busy_;
  std::vector<std::string> unmounted_;
  int copied_roots_ = 0;
};

}  // namespace ferry::snapshotter
