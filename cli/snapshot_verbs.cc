// `ferry snapshot DIR --tag NAME`: a writable ferryd mount (its base image
// plus its overlay's upper directory) into a new image in the same store.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <system_error>

#include "builder/image_builder.h"
#include "cli/store_access.h"
#include "cli/verb_support.h"
#include "cli/verbs.h"
#include "fs/image_store.h"
#include "snapshotter/api/control_client.h"

namespace ferry::cli {
namespace {

using nlohmann::json;

// Paths are compared the way `ferry mount` sent them to ferryd: absolute,
// normalised, no trailing slash.
std::string Normal(const std::filesystem::path& p) {
  std::string s = std::filesystem::absolute(p).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// The ListMounts entry of ferryd at `root` whose target is `dir` (as given,
// or with its symbolic links resolved).
Result<json> FindMount(const std::string& root, const std::string& dir) {
  ASSIGN_OR_RETURN(json reply, api::CallDaemon(root, "ListMounts", json::object(),
                                               std::chrono::seconds(60)));
  std::error_code ec;
  const std::string given = Normal(dir);
  const std::string resolved = Normal(std::filesystem::weakly_canonical(dir, ec));
  for (const json& m : reply.value("mounts", json::array())) {
    const std::string target = m.value("target", std::string());
    if (target == given || target == resolved) return m;
  }
  return FailedPreconditionError(dir + " is not a mount of ferryd at " + root +
                                 " (`ferry mount IMAGE DIR --writable` makes one)");
}

}  // namespace

int CmdSnapshot(const SnapshotArgs& a) {
  if (!fs::IsValidRefName(a.tag)) {
    std::fprintf(stderr, "ferry snapshot: invalid image name '%s' (letters, digits and ._:@+%%=- "
                 "in /-separated parts, starting with a letter or digit)\n", a.tag.c_str());
    return 2;
  }
  const std::string root = Normal(a.daemon_root.empty() ? api::DefaultDaemonRoot() : a.daemon_root);
  auto mount = FindMount(root, a.dir);
  if (!mount.ok()) return Fail(mount.status());
  const std::string image_id = mount->value("image_id", std::string());
  const std::string store_url = mount->value("store_url", std::string());
  const std::string upper = mount->value("upper_dir", std::string());
  if (!mount->value("writable", false)) {
    return Fail(FailedPreconditionError(a.dir + " is a read-only mount of image " +
                                        image_id.substr(0, 12) +
                                        ": it has no changes to snapshot (mount it --writable)"));
  }
  if (upper.empty()) {
    return Fail(FailedPreconditionError("ferryd at " + root +
                                        " does not say where the upper directory of " + a.dir +
                                        " is (an older ferryd?)"));
  }
  auto base_id = Digest::FromHex(image_id);
  if (!base_id) return Fail(CorruptionError("ferryd named image '" + image_id + "' for " + a.dir));
  auto store = OpenStore(store_url);
  if (!store.ok()) return Fail(store.status());
  auto base = fs::LoadImage(**store, *base_id);
  if (!base.ok()) return Fail(base.status().Annotate("base image of " + a.dir));

  builder::BuildOptions opt;
  opt.progress = !a.quiet && !a.json;
  builder::ImageBuilder b(store->get(), opt);
  const char* kNothing = "snapshot failed, nothing was published";
  if (Status st = b.AddImage(**base); !st.ok()) return Fail(st.Annotate(kNothing));
  if (Status st = b.AddOverlayUpper(upper); !st.ok()) return Fail(st.Annotate(kNothing));
  auto sum = b.Finish(a.tag);
  if (!sum.ok()) return Fail(sum.status().Annotate(kNothing));
  const auto& in = sum->ingest;
  if (a.json) {
    json out = {{"image_id", sum->image.Hex()},
                {"tag", a.tag},
                {"base_image_id", image_id},
                {"store_url", store_url},
                {"files_read", sum->files_read},
                {"bytes_read", in.bytes_in},
                {"chunks", in.chunks},
                {"new_chunks", in.new_chunks},
                {"new_bytes", in.new_bytes},
                {"written_bytes", in.written_bytes},
                {"packs", in.packs},
                {"files", sum->files},
                {"logical_bytes", sum->logical_bytes},
                {"metadata_bytes", sum->metadata_bytes},
                {"seconds", sum->seconds}};
    std::printf("%s\n", out.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return 0;
  }
  if (!a.quiet) {
    std::fprintf(stderr,
                 "snapshot %s of %s (base %s) in %.2f s: %llu files read (%s); %llu new chunks "
                 "(%s new data, %s written compressed in %llu packs); the image has %llu files, "
                 "%s of file data\n",
                 a.tag.c_str(), a.dir.c_str(), image_id.substr(0, 12).c_str(), sum->seconds,
                 (unsigned long long)sum->files_read, Mb(in.bytes_in).c_str(),
                 (unsigned long long)in.new_chunks, Mb(in.new_bytes).c_str(),
                 Mb(in.written_bytes).c_str(), (unsigned long long)in.packs,
                 (unsigned long long)sum->files, Mb(sum->logical_bytes).c_str());
  }
  std::printf("%s\n", sum->image.Hex().c_str());
  return 0;
}

}  // namespace ferry::cli
