#include "snapshotter/containerd_snapshots.h"

#include <sys/stat.h>

#include <cerrno>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <unordered_set>

#include "snapshotter/daemon_log.h"
#include "snapshotter/state_file.h"

namespace ferry::snapshotter {

namespace stdfs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kSnapshotRefLabel = "containerd.io/snapshot.ref";

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* KindName(SnapshotKind k) {
  switch (k) {
    case SnapshotKind::kView: return "view";
    case SnapshotKind::kActive: return "active";
    case SnapshotKind::kCommitted: return "committed";
  }
  return "unknown";
}

std::optional<SnapshotKind> KindFromName(const std::string& s) {
  if (s == "view") return SnapshotKind::kView;
  if (s == "active") return SnapshotKind::kActive;
  if (s == "committed") return SnapshotKind::kCommitted;
  return std::nullopt;
}

// Bytes and inodes below `dir` (each inode once), as containerd counts
// usage: allocated blocks.
SnapshotUsage DiskUsage(const std::string& dir) {
  SnapshotUsage u;
  std::set<std::pair<dev_t, ino_t>> seen;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(dir, stdfs::directory_options::skip_permission_denied, ec);
       it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    struct stat st;
    if (lstat(it->path().c_str(), &st) != 0) continue;
    if (!seen.insert({st.st_dev, st.st_ino}).second) continue;
    u.inodes += 1;
    u.size += static_cast<int64_t>(st.st_blocks) * 512;
  }
  return u;
}

// ------------------------------------------------------------ filters ---

// One selector of a filter: FIELD [OP VALUE].
struct Selector {
  std::vector<std::string> field;  // "name" | "parent" | "kind" | "labels", KEY
  std::string op;                  // "", "==", "!=", "~="
  std::string value;
  std::optional<std::regex> re;
};

class FilterParser {
 public:
  explicit FilterParser(const std::string& s) : s_(s) {}

  Result<std::vector<Selector>> Parse() {
    std::vector<Selector> out;
    if (s_.empty()) return out;
    for (;;) {
      Selector sel;
      ASSIGN_OR_RETURN(std::string f, Token(/*field=*/true));
      sel.field.push_back(f);
      while (Peek('.')) {
        ++i_;
        ASSIGN_OR_RETURN(std::string part, Token(true));
        sel.field.push_back(part);
      }
      SkipSpace();
      if (s_.compare(i_, 2, "==") == 0 || s_.compare(i_, 2, "!=") == 0 || s_.compare(i_, 2, "~=") == 0) {
        sel.op = s_.substr(i_, 2);
        i_ += 2;
        ASSIGN_OR_RETURN(sel.value, Token(false));
        if (sel.op == "~=") {
          try {
            sel.re.emplace(sel.value);
          } catch (const std::regex_error&) {
            return Bad("bad regular expression '" + sel.value + "'");
          }
        }
      }
      out.push_back(std::move(sel));
      SkipSpace();
      if (i_ == s_.size()) return out;
      if (!Peek(',')) return Bad("expected ',' at " + std::to_string(i_));
      ++i_;
    }
  }

 private:
  Status Bad(const std::string& why) const { return InvalidArgumentError("filter '" + s_ + "': " + why); }
  void SkipSpace() {
    while (i_ < s_.size() && s_[i_] == ' ') ++i_;
  }
  bool Peek(char c) {
    SkipSpace();
    return i_ < s_.size() && s_[i_] == c;
  }
  // A quoted string ("..." with \ escapes, or `...`) or a bare word; a
  // field word stops at . , = ! ~ and space, a value word at , only.
  Result<std::string> Token(bool field) {
    SkipSpace();
    if (i_ >= s_.size()) return Bad("unexpected end");
    std::string out;
    char q = s_[i_];
    if (q == '"' || q == '`') {
      ++i_;
      while (i_ < s_.size() && s_[i_] != q) {
        if (q == '"' && s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
        out += s_[i_++];
      }
      if (i_ >= s_.size()) return Bad("unterminated quote");
      ++i_;
      return out;
    }
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == ',' || (field && (c == '.' || c == '=' || c == '!' || c == '~' || c == ' '))) break;
      out += c;
      ++i_;
    }
    if (out.empty() && field) return Bad("empty field name at " + std::to_string(i_));
    return out;
  }

  const std::string& s_;
  size_t i_ = 0;
};

std::optional<std::string> FieldValue(const SnapshotInfo& info, const std::vector<std::string>& field) {
  if (field.size() == 1) {
    if (field[0] == "name") return info.name;
    if (field[0] == "parent") return info.parent;
    if (field[0] == "kind") return std::string(KindName(info.kind));
    return std::nullopt;
  }
  if (field[0] == "labels") {
    std::string key = field[1];
    for (size_t i = 2; i < field.size(); ++i) key += "." + field[i];
    auto it = info.labels.find(key);
    if (it == info.labels.end()) return std::nullopt;
    return it->second;
  }
  return std::nullopt;
}

}  // namespace

Result<std::function<bool(const SnapshotInfo&)>> ParseSnapshotFilter(const std::string& filter) {
  ASSIGN_OR_RETURN(std::vector<Selector> sels, FilterParser(filter).Parse());
  return std::function<bool(const SnapshotInfo&)>([sels](const SnapshotInfo& info) {
    // As containerd's filters match (filters/filter.go with the snapshot
    // adaptor): name, parent and kind are always present (a parent may be
    // ""), a label only if set; == needs the field present, != and ~=
    // compare what is there ("" if nothing).
    for (const Selector& s : sels) {
      auto v = FieldValue(info, s.field);
      const bool present = v.has_value();
      const std::string value = v.value_or("");
      if (s.op.empty()) {
        if (!present) return false;
      } else if (s.op == "==") {
        if (!present || value != s.value) return false;
      } else if (s.op == "!=") {
        if (value == s.value) return false;
      } else if (!std::regex_search(value, *s.re)) {
        return false;
      }
    }
    return true;
  });
}

// ------------------------------------------------------------- state ---

Result<std::unique_ptr<ContainerdSnapshots>> ContainerdSnapshots::Open(const std::string& root,
                                                                       RemoteLayers* remote) {
  std::unique_ptr<ContainerdSnapshots> s(new ContainerdSnapshots(root + "/containerd", remote));
  std::error_code ec;
  stdfs::create_directories(s->dir_ + "/snapshots", ec);
  if (ec) return Status(StatusCode::kIoError, "create " + s->dir_ + "/snapshots: " + ec.message());
  RETURN_IF_ERROR(s->Load());
  // Remote layers are mounted again (their sessions ended with the old
  // daemon); one that cannot be is kept, and tried again when used.
  if (remote) {
    for (auto& [key, e] : s->snapshots_) {
      if (!e.remote) continue;
      auto m = remote->Acquire(*e.remote);
      if (m.ok()) {
        e.remote_mount = *m;
      } else {
        Log("containerd: snapshot " + key + ": image " + e.remote->image_id.substr(0, 12) +
            " not mounted again (tried again when used): " + m.status().ToString());
      }
    }
  }
  return s;
}

ContainerdSnapshots::~ContainerdSnapshots() {
  if (!remote_) return;
  for (auto& [key, e] : snapshots_) {
    if (e.remote && !e.remote_mount.empty()) remote_->Release(*e.remote, e.remote_mount);
  }
}

std::string ContainerdSnapshots::FsDir(uint64_t id) const {
  return dir_ + "/snapshots/" + std::to_string(id) + "/fs";
}
std::string ContainerdSnapshots::WorkDir(uint64_t id) const {
  return dir_ + "/snapshots/" + std::to_string(id) + "/work";
}

Status ContainerdSnapshots::Load() {
  const std::string path = dir_ + "/snapshots.json";
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();  // a new root
    return ErrnoError("stat " + path);        // never taken for an empty table
  }
  if (!S_ISREG(st.st_mode)) return CorruptionError(path + " is not a regular file");
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status(StatusCode::kIoError, "cannot open " + path);
    text.assign(std::istreambuf_iterator<char>(in), {});
    if (in.bad()) return Status(StatusCode::kIoError, "cannot read " + path);
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  try {
    return LoadTable(j, path);
  } catch (const json::exception& e) {
    return CorruptionError(path + ": " + e.what());
  }
}

Status ContainerdSnapshots::LoadTable(const nlohmann::json& j, const std::string& path) {
  auto bad = [&](const std::string& why) { return CorruptionError(path + ": " + why); };
  if (j.is_discarded() || !j.is_object() || !j.contains("snapshots") || !j["snapshots"].is_array()) {
    return bad("not a snapshots table");
  }
  if (j.contains("next_id") && j["next_id"].is_number_unsigned()) next_id_ = j["next_id"];
  for (const json& s : j["snapshots"]) {
    Entry e;
    if (!s.is_object() || !s.contains("key") || !s["key"].is_string() || !s.contains("id") ||
        !s["id"].is_number_unsigned() || !s.contains("kind") || !s["kind"].is_string()) {
      return bad("a snapshot without key, id or kind");
    }
    auto kind = KindFromName(s["kind"]);
    if (!kind) return bad("unknown kind " + s["kind"].get<std::string>());
    e.id = s["id"];
    e.info.name = s["key"];
    e.info.kind = *kind;
    e.info.parent = s.value("parent", "");
    e.info.created_ns = s.value("created_ns", int64_t{0});
    e.info.updated_ns = s.value("updated_ns", int64_t{0});
    if (s.contains("labels") && s["labels"].is_object()) {
      for (auto& [k, v] : s["labels"].items()) {
        if (v.is_string()) e.info.labels[k] = v;
      }
    }
    if (s.contains("remote_image") && s["remote_image"].is_string()) {
      e.remote = RemoteLayers::Found{s.value("remote_store", ""), s["remote_image"]};
    }
    if (s.contains("usage_size")) e.usage = SnapshotUsage{s.value("usage_size", int64_t{0}), s.value("usage_inodes", int64_t{0})};
    next_id_ = std::max(next_id_, e.id + 1);
    snapshots_.emplace(e.info.name, std::move(e));
  }
  return Status::Ok();
}

Status ContainerdSnapshots::SaveLocked() {
  json list = json::array();
  for (const auto& [key, e] : snapshots_) {
    json s = {{"key", key},
              {"id", e.id},
              {"kind", KindName(e.info.kind)},
              {"parent", e.info.parent},
              {"labels", e.info.labels},
              {"created_ns", e.info.created_ns},
              {"updated_ns", e.info.updated_ns}};
    if (e.remote) {
      s["remote_store"] = e.remote->store_url;
      s["remote_image"] = e.remote->image_id;
    }
    if (e.usage) {
      s["usage_size"] = e.usage->size;
      s["usage_inodes"] = e.usage->inodes;
    }
    list.push_back(std::move(s));
  }
  json j = {{"version", 1}, {"next_id", next_id_}, {"snapshots", std::move(list)}};
  return SaveStateFile(dir_ + "/snapshots.json", j.dump(1) + "\n");
}

// -------------------------------------------------------------- mounts ---

Result<std::vector<std::string>> ContainerdSnapshots::LowerDirsLocked(const std::string& parent) const {
  std::vector<std::string> out;
  std::string p = parent;
  while (!p.empty()) {
    auto it = snapshots_.find(p);
    if (it == snapshots_.end()) return NotFoundError("missing parent " + p);
    const Entry& e = it->second;
    if (e.remote) {
      if (e.remote_mount.empty()) {
        return UnavailableError("snapshot " + p + ": ferry image " + e.remote->image_id.substr(0, 12) +
                                " is not mounted (its store was not reachable)");
      }
      out.push_back(e.remote_mount);  // holds every layer below it too
      break;
    }
    out.push_back(FsDir(e.id));
    p = e.info.parent;
  }
  return out;
}

Result<std::vector<MountSpec>> ContainerdSnapshots::MountsLocked(const Entry& e) const {
  ASSIGN_OR_RETURN(std::vector<std::string> lower, LowerDirsLocked(e.info.parent));
  const bool ro = e.info.kind == SnapshotKind::kView;
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& d : v) s += (s.empty() ? "" : ":") + d;
    return s;
  };
  if (lower.empty()) {
    return std::vector<MountSpec>{{"bind", FsDir(e.id), {ro ? "ro" : "rw", "rbind"}}};
  }
  if (ro) {
    if (lower.size() == 1) return std::vector<MountSpec>{{"bind", lower[0], {"ro", "rbind"}}};
    return std::vector<MountSpec>{{"overlay", "overlay", {"lowerdir=" + join(lower)}}};
  }
  return std::vector<MountSpec>{{"overlay", "overlay",
                                 {"index=off", "workdir=" + WorkDir(e.id), "upperdir=" + FsDir(e.id),
                                  "lowerdir=" + join(lower)}}};
}

// ---------------------------------------------------------------- calls ---

Result<bool> ContainerdSnapshots::TryRemote(const std::string& key, const std::string& parent,
                                            const std::map<std::string, std::string>& labels) {
  auto ref = labels.find(kSnapshotRefLabel);
  if (!remote_ || ref == labels.end() || ref->second.empty()) return false;
  const std::string& chain = ref->second;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (snapshots_.count(chain)) return true;  // made already: AlreadyExists
  }
  ASSIGN_OR_RETURN(std::optional<RemoteLayers::Found> found, remote_->Lookup(chain));
  if (!found) return false;
  ASSIGN_OR_RETURN(std::string mountpoint, remote_->Acquire(*found));
  std::lock_guard<std::mutex> lock(mu_);
  if (snapshots_.count(chain)) {
    remote_->Release(*found, mountpoint);
    return true;
  }
  if (!parent.empty()) {
    auto p = snapshots_.find(parent);
    if (p == snapshots_.end() || p->second.info.kind != SnapshotKind::kCommitted) {
      remote_->Release(*found, mountpoint);
      return false;  // let the ordinary path report it
    }
  }
  Entry e;
  e.id = next_id_++;
  e.info.name = chain;
  e.info.parent = parent;
  e.info.kind = SnapshotKind::kCommitted;
  e.info.labels = labels;
  e.info.created_ns = e.info.updated_ns = NowNs();
  e.remote = *found;
  e.remote_mount = mountpoint;
  e.usage = SnapshotUsage{};
  snapshots_.emplace(chain, std::move(e));
  if (Status st = SaveLocked(); !st.ok()) {
    snapshots_.erase(chain);
    remote_->Release(*found, mountpoint);
    return st;
  }
  Log("containerd: layer " + chain + " (for " + key + ") is ferry image " + found->image_id.substr(0, 12) +
      ", mounted lazily");
  return true;
}

Result<std::vector<MountSpec>> ContainerdSnapshots::CreateLocked(const std::string& key, const std::string& parent,
                                                                 SnapshotKind kind,
                                                                 const std::map<std::string, std::string>& labels) {
  if (key.empty()) return InvalidArgumentError("a snapshot key must not be empty");
  if (snapshots_.count(key)) return AlreadyExistsError("snapshot " + key + " already exists");
  if (!parent.empty()) {
    auto p = snapshots_.find(parent);
    if (p == snapshots_.end()) return NotFoundError("parent " + parent + " does not exist");
    if (p->second.info.kind != SnapshotKind::kCommitted) {
      return InvalidArgumentError("parent " + parent + " is not a committed snapshot");
    }
  }
  Entry e;
  e.id = next_id_++;
  e.info.name = key;
  e.info.parent = parent;
  e.info.kind = kind;
  e.info.labels = labels;
  e.info.created_ns = e.info.updated_ns = NowNs();
  std::error_code ec;
  stdfs::remove_all(dir_ + "/snapshots/" + std::to_string(e.id), ec);
  stdfs::create_directories(FsDir(e.id), ec);
  if (!ec && kind == SnapshotKind::kActive) stdfs::create_directories(WorkDir(e.id), ec);
  if (ec) return Status(StatusCode::kIoError, "create " + FsDir(e.id) + ": " + ec.message());
  chmod(FsDir(e.id).c_str(), 0755);
  auto mounts = MountsLocked(e);
  if (!mounts.ok()) {
    stdfs::remove_all(dir_ + "/snapshots/" + std::to_string(e.id), ec);
    return mounts.status();
  }
  snapshots_.emplace(key, std::move(e));
  if (Status st = SaveLocked(); !st.ok()) {
    snapshots_.erase(key);
    return st;
  }
  return mounts;
}

void ContainerdSnapshots::RemountRemotes() {
  if (!remote_) return;
  std::vector<std::pair<std::string, RemoteLayers::Found>> missing;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, e] : snapshots_) {
      if (e.remote && e.remote_mount.empty()) missing.emplace_back(key, *e.remote);
    }
  }
  for (const auto& [key, found] : missing) {
    auto m = remote_->Acquire(found);  // without the lock: reads the store
    if (!m.ok()) continue;             // MountsLocked reports it
    std::lock_guard<std::mutex> lock(mu_);
    auto it = snapshots_.find(key);
    if (it != snapshots_.end() && it->second.remote && it->second.remote_mount.empty()) {
      it->second.remote_mount = *m;
    } else {
      remote_->Release(found, *m);  // removed or mounted meanwhile
    }
  }
}

Result<std::vector<MountSpec>> ContainerdSnapshots::Prepare(const std::string& key, const std::string& parent,
                                                            const std::map<std::string, std::string>& labels) {
  RemountRemotes();
  ASSIGN_OR_RETURN(bool remote, TryRemote(key, parent, labels));
  if (remote) {
    return AlreadyExistsError("target snapshot " + labels.at(kSnapshotRefLabel) +
                              " exists: a ferry image serves it lazily");
  }
  std::lock_guard<std::mutex> lock(mu_);
  return CreateLocked(key, parent, SnapshotKind::kActive, labels);
}

Result<std::vector<MountSpec>> ContainerdSnapshots::View(const std::string& key, const std::string& parent,
                                                         const std::map<std::string, std::string>& labels) {
  RemountRemotes();
  std::lock_guard<std::mutex> lock(mu_);
  return CreateLocked(key, parent, SnapshotKind::kView, labels);
}

Result<std::vector<MountSpec>> ContainerdSnapshots::Mounts(const std::string& key) {
  RemountRemotes();
  std::lock_guard<std::mutex> lock(mu_);
  auto it = snapshots_.find(key);
  if (it == snapshots_.end()) return NotFoundError("snapshot " + key + " does not exist");
  if (it->second.info.kind == SnapshotKind::kCommitted) {
    return FailedPreconditionError("snapshot " + key + " is committed: only active and view snapshots have mounts");
  }
  return MountsLocked(it->second);
}

Status ContainerdSnapshots::Commit(const std::string& name, const std::string& key,
                                   const std::map<std::string, std::string>& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = snapshots_.find(key);
  if (it == snapshots_.end()) return NotFoundError("snapshot " + key + " does not exist");
  if (it->second.info.kind != SnapshotKind::kActive) {
    return FailedPreconditionError("snapshot " + key + " is not active");
  }
  if (snapshots_.count(name)) return AlreadyExistsError("snapshot " + name + " already exists");
  Entry active = it->second;  // to put back if the table cannot be saved
  Entry e = std::move(it->second);
  snapshots_.erase(it);
  e.info.name = name;
  e.info.kind = SnapshotKind::kCommitted;
  e.info.labels = labels;
  e.info.created_ns = e.info.updated_ns = NowNs();
  e.usage = DiskUsage(FsDir(e.id));
  const uint64_t id = e.id;
  snapshots_.emplace(name, std::move(e));
  if (Status st = SaveLocked(); !st.ok()) {
    snapshots_.erase(name);
    snapshots_.emplace(key, std::move(active));
    return st;
  }
  std::error_code ec;
  stdfs::remove_all(WorkDir(id), ec);
  return Status::Ok();
}

Status ContainerdSnapshots::Remove(const std::string& key) {
  std::optional<RemoteLayers::Found> release;
  std::string release_mount;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = snapshots_.find(key);
    if (it == snapshots_.end()) return NotFoundError("snapshot " + key + " does not exist");
    for (const auto& [k, e] : snapshots_) {
      if (e.info.parent == key) return FailedPreconditionError("cannot remove snapshot " + key + ": it has children");
    }
    Entry e = std::move(it->second);
    snapshots_.erase(it);
    if (Status st = SaveLocked(); !st.ok()) {
      snapshots_.emplace(key, std::move(e));
      return st;
    }
    std::error_code ec;
    stdfs::remove_all(dir_ + "/snapshots/" + std::to_string(e.id), ec);
    if (e.remote && !e.remote_mount.empty()) {
      release = e.remote;
      release_mount = e.remote_mount;
    }
  }
  if (release) remote_->Release(*release, release_mount);
  return Status::Ok();
}

Result<SnapshotInfo> ContainerdSnapshots::Stat(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = snapshots_.find(key);
  if (it == snapshots_.end()) return NotFoundError("snapshot " + key + " does not exist");
  return it->second.info;
}

Result<SnapshotInfo> ContainerdSnapshots::Update(const SnapshotInfo& info, const std::vector<std::string>& paths) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = snapshots_.find(info.name);
  if (it == snapshots_.end()) return NotFoundError("snapshot " + info.name + " does not exist");
  SnapshotInfo updated = it->second.info;
  if (paths.empty()) {
    updated.labels = info.labels;
  } else {
    for (const std::string& p : paths) {
      if (p.rfind("labels.", 0) == 0) {
        const std::string k = p.substr(7);
        auto v = info.labels.find(k);
        if (v == info.labels.end()) {
          updated.labels.erase(k);
        } else {
          updated.labels[k] = v->second;
        }
      } else if (p == "labels") {
        updated.labels = info.labels;
      } else {
        return InvalidArgumentError("cannot update field '" + p + "' of snapshot " + info.name);
      }
    }
  }
  updated.updated_ns = NowNs();
  SnapshotInfo old = it->second.info;
  it->second.info = updated;
  if (Status st = SaveLocked(); !st.ok()) {
    it->second.info = old;
    return st;
  }
  return updated;
}

Result<std::vector<SnapshotInfo>> ContainerdSnapshots::List(const std::vector<std::string>& filters) {
  std::vector<std::function<bool(const SnapshotInfo&)>> preds;
  for (const auto& f : filters) {
    ASSIGN_OR_RETURN(auto p, ParseSnapshotFilter(f));
    preds.push_back(std::move(p));
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SnapshotInfo> out;
  for (const auto& [key, e] : snapshots_) {
    bool match = preds.empty();
    for (const auto& p : preds) match = match || p(e.info);
    if (match) out.push_back(e.info);
  }
  return out;
}

Result<SnapshotUsage> ContainerdSnapshots::Usage(const std::string& key) {
  std::string dir;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = snapshots_.find(key);
    if (it == snapshots_.end()) return NotFoundError("snapshot " + key + " does not exist");
    if (it->second.usage) return *it->second.usage;
    dir = FsDir(it->second.id);
  }
  return DiskUsage(dir);  // an active snapshot: what it holds now
}

Status ContainerdSnapshots::Cleanup() {
  // Under the lock throughout: a snapshot made meanwhile would otherwise
  // have its new directory taken for an orphan.
  std::lock_guard<std::mutex> lock(mu_);
  std::unordered_set<std::string> owned;
  for (const auto& [key, e] : snapshots_) owned.insert(std::to_string(e.id));
  std::error_code ec;
  for (const auto& d : stdfs::directory_iterator(dir_ + "/snapshots", ec)) {
    if (!owned.count(d.path().filename())) stdfs::remove_all(d.path(), ec);
  }
  return Status::Ok();
}

}  // namespace ferry::snapshotter
