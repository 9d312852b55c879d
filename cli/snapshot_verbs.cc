// `ferry snapshot PATH --tag NAME`: asks ferryd to make a new image of a
// writable mount (its base image plus its overlay's upper directory), of a
// directory inside a mount, or of any directory (the Snapshot method of
// snapshotter/api/ferryd.proto), and shows its progress.
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <system_error>

#include "chunkstore/store_url.h"
#include "cli/verb_support.h"
#include "cli/daemon_verbs.h"
#include "fs/ref_names.h"
#include "snapshotter/api/control_client.h"

namespace ferry::cli {
namespace {

using nlohmann::json;

// How long ferryd may stay silent during a snapshot (it reports progress
// several times a second while it reads; uploading one pack to a slow
// store is the longest quiet time).
constexpr std::chrono::minutes kSilence{10};

// Paths go to ferryd absolute, normalised, without a trailing slash, with
// symbolic links resolved (a mount is found by its target path).
std::string Normal(const std::filesystem::path& p, bool resolve) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(p, ec);
  if (resolve) {
    auto canon = std::filesystem::weakly_canonical(abs, ec);
    if (!ec) abs = canon;
  }
  std::string s = abs.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

int CmdSnapshot(const SnapshotArgs& a) {
  if (!fs::IsValidRefName(a.tag)) {
    std::fprintf(stderr, "ferry snapshot: invalid image name '%s' (letters, digits and ._:@+%%=- "
                 "in /-separated parts, starting with a letter or digit)\n", a.tag.c_str());
    return 2;
  }
  if (a.into_pid < 0) {
    std::fprintf(stderr, "ferry snapshot: --into %lld is not a process id\n",
                 static_cast<long long>(a.into_pid));
    return 2;
  }
  const std::string root =
      Normal(a.daemon_root.empty() ? api::DefaultDaemonRoot() : a.daemon_root, false);
  // A path in another process's namespace means nothing here: sent as given.
  const std::string path = a.into_pid != 0 ? a.dir : Normal(a.dir, true);
  json req = {{"path", path},
              {"tag", a.tag},
              {"store_url", chunkstore::AbsoluteStoreUrl(
                                a.store_url.empty() ? chunkstore::DefaultStoreUrl() : a.store_url)},
              {"freeze_cgroup", a.freeze_cgroup.empty() ? "" : Normal(a.freeze_cgroup, true)},
              {"into_pid", a.into_pid},
              {"zstd_level", a.zstd_level}};
  const bool draw = !a.quiet && !a.json && isatty(STDERR_FILENO);
  bool drawn = false;
  auto reply = api::CallDaemonStreaming(root, "Snapshot", req, kSilence, [&](const json& p) {
    if (!draw) return;
    double mb = static_cast<double>(api::JsonU64(p, "bytes")) / 1e6;
    std::fprintf(stderr, "\r\033[Ksnapshot %s: %s, %llu files read, %.1f MB, %.1f s", a.tag.c_str(),
                 p.value("phase", std::string()).c_str(),
                 static_cast<unsigned long long>(api::JsonU64(p, "files")), mb,
                 p.value("seconds", 0.0));
    drawn = true;
  });
  if (drawn) std::fprintf(stderr, "\r\033[K");
  if (!reply.ok()) return Fail(reply.status());
  const json& r = *reply;
  auto u = [&](const char* k) { return api::JsonU64(r, k); };
  if (a.json) {
    json out = {{"image_id", r.value("image_id", "")},
                {"tag", r.value("tag", "")},
                {"kind", r.value("kind", "")},
                {"base_image_id", r.value("base_image_id", "")},
                {"store_url", r.value("store_url", "")},
                {"target", r.value("target", "")},
                {"subdir", r.value("subdir", "")},
                {"seconds", r.value("seconds", 0.0)},
                {"frozen_ms", r.value("frozen_ms", 0.0)},
                {"profile_pack", r.value("profile_pack", false)},
                {"delta_of", r.value("delta_of", "")}};
    for (const char* k : {"files_read", "bytes_read", "chunks", "new_chunks", "new_bytes",
                          "written_bytes", "packs", "files", "logical_bytes", "metadata_bytes", "object_bytes", "profile_chunks"}) {
      out[k] = u(k);
    }
    std::printf("%s\n", out.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return 0;
  }
  const std::string image_id = r.value("image_id", "");
  if (!a.quiet) {
    const std::string base = r.value("base_image_id", "");
    std::string what = r.value("kind", "") + " snapshot " + a.tag + " of " + path;
    if (!base.empty()) what += " (base " + base.substr(0, 12) + ")";
    std::string frozen;
    if (!a.freeze_cgroup.empty()) {
      char buf[96];
      std::snprintf(buf, sizeof(buf), "; %s frozen for %.1f ms", a.freeze_cgroup.c_str(),
                    r.value("frozen_ms", 0.0));
      frozen = buf;
    }
    std::fprintf(stderr,
                 "%s in %.2f s%s: %llu files read (%s); %llu new chunks (%s new data, %s written "
                 "compressed in %llu packs); the image has %llu files, %s of file data\n",
                 what.c_str(), r.value("seconds", 0.0), frozen.c_str(),
                 (unsigned long long)u("files_read"), Mb(u("bytes_read")).c_str(),
                 (unsigned long long)u("new_chunks"), Mb(u("new_bytes")).c_str(),
                 Mb(u("written_bytes")).c_str(), (unsigned long long)u("packs"),
                 (unsigned long long)u("files"), Mb(u("logical_bytes")).c_str());
    if (u("profile_chunks") > 0) {
      std::fprintf(stderr, "start-up profile: %llu chunks of the base's kept (%s)\n",
                   (unsigned long long)u("profile_chunks"),
                   r.value("profile_pack", false) ? "replayed from its start-up pack"
                                                  : "replayed from the image's packs");
    }
  }
  std::printf("%s\n", image_id.c_str());
  return 0;
}

}  // namespace ferry::cli
