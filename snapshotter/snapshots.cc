#include "snapshotter/snapshots.h"

#include <sys/stat.h>

#include <filesystem>

#include "chunkstore/store_factory.h"
#include "snapshotter/cgroup_freeze.h"
#include "fs/image_store.h"
#include "fs/profile.h"

namespace ferry::snapshotter {

namespace stdfs = std::filesystem;

namespace {

constexpr const char* kNothing = "snapshot failed, nothing was published";

std::string Normal(const std::string& p) {
  std::string s = stdfs::path(p).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

// The sandbox's pause for one snapshot: from Begin (if a freeze cgroup was
// named) until the builder has read every changed file (End, from
// BuildOptions::contents_read), or at the latest until End after Finish.
class Pause {
 public:
  explicit Pause(double* frozen_ms) : frozen_ms_(frozen_ms) {}
  Status Begin(const SnapshotSpec& spec) {
    if (spec.freeze_cgroup.empty()) return Status::Ok();
    auto f = CgroupFreeze::Freeze(spec.freeze_cgroup, spec.freeze_timeout);
    if (!f.ok()) return f.status().Annotate(kNothing);
    freeze_ = std::move(*f);
    return Status::Ok();
  }
  void End() {
    if (freeze_) *frozen_ms_ = freeze_->Thaw();
  }
  builder::BuildOptions Options(const SnapshotSpec& spec, const builder::ProgressSink& progress) {
    builder::BuildOptions opt;
    opt.ingest.zstd_level = spec.zstd_level;
    opt.progress_sink = progress;
    opt.contents_read = [this] { End(); };
    return opt;
  }

 private:
  double* const frozen_ms_;
  std::unique_ptr<CgroupFreeze> freeze_;
};

}  // namespace

Snapshots::Snapshots(Attachments* attachments, StoreOpener open)
    : attachments_(attachments), open_(std::move(open)) {
  if (!open_) open_ = [](const std::string& url) { return chunkstore::OpenObjectStore(url); };
}

Result<SnapshotOutcome> Snapshots::Take(const SnapshotSpec& spec_in,
                                        const builder::ProgressSink& progress) {
  SnapshotSpec spec = spec_in;
  if (spec.path.empty() || spec.path[0] != '/') {
    return InvalidArgumentError("snapshot path '" + spec.path + "' must be an absolute path");
  }
  if (!fs::IsValidRefName(spec.tag)) {
    return InvalidArgumentError("invalid image name '" + spec.tag + "'");
  }
  spec.path = Normal(spec.path);
  auto target = attachments_->PinContaining(spec.path, spec.into);
  if (!target.ok()) {
    if (target.status().code() != StatusCode::kNotFound || spec.into.pid != 0) {
      return target.status();
    }
    return FromDirectory(spec, progress);
  }
  Result<SnapshotOutcome> out = FromTarget(spec, *target, progress);
  attachments_->Unpin(*target);
  return out;
}

Result<SnapshotOutcome> Snapshots::FromTarget(const SnapshotSpec& spec, const TargetInfo& t,
                                              const builder::ProgressSink& progress) {
  SnapshotOutcome out;
  out.target = t.target;
  out.subdir = spec.path == t.target ? "" : spec.path.substr(t.target == "/" ? 1 : t.target.size() + 1);
  out.kind = out.subdir.empty() && t.writable ? "filesystem" : "directory";
  out.base_image_id = t.image_id;
  out.store_url = t.store_url;
  if (out.subdir.empty() && !t.writable) {
    return FailedPreconditionError(spec.path + " is a read-only mount of image " +
                                   t.image_id.substr(0, 12) +
                                   ": it has no changes to snapshot (mount it --writable)");
  }
  auto base_id = Digest::FromHex(t.image_id);
  if (!base_id) return InternalError("target " + t.target + " names image '" + t.image_id + "'");
  ASSIGN_OR_RETURN(auto store, open_(t.store_url));
  auto base = fs::LoadImage(*store, *base_id);
  if (!base.ok()) return base.status().Annotate("base image of " + t.target);
  // The snapshot is stored as a delta of the full image at the start of
  // the chain: the base, or the image the base is a delta of.
  std::unique_ptr<fs::ImageReader> chain_root;
  if ((*base)->delta_base().has_value()) {
    auto r = fs::LoadImage(*store, *(*base)->delta_base());
    if (!r.ok()) return r.status().Annotate("the full image base " + t.image_id.substr(0, 12) + " is a delta of");
    chain_root = std::move(*r);
  }
  const fs::ImageReader& root = chain_root ? *chain_root : **base;
  const Digest root_id = chain_root ? *(*base)->delta_base() : *base_id;

  Pause pause(&out.frozen_ms);
  builder::BuildOptions opt = pause.Options(spec, progress);
  // The snapshot starts with what its base's start-up read, where it kept
  // those chunks (fs/profile.h, CarryProfile): it is put before the ref, so
  // the named snapshot has it from the start.
  opt.delta_root = &root;
  opt.delta_root_id = root_id;
  opt.before_ref = [&](const builder::BuildOptions::StoredImage& img) -> Status {
    auto bp = fs::LoadProfileOf(*store, *base_id, **base);
    if (!bp.ok() || !bp->has_value()) return Status::Ok();  // a hint: none, or unreadable
    if (!fs::MismatchWithImage(**bp, (*base)->chunks()).empty()) return Status::Ok();
    std::optional<fs::Profile> carried = fs::CarryProfile(**bp, (*base)->chunks(), img.chunks, img.chunk_used);
    if (!carried) return Status::Ok();
    out.profile_chunks = carried->chunks.size();
    out.profile_pack = carried->pack.has_value();
    // Stored as a delta of the chain's root, a snapshot that inherits the
    // root's own profile unchanged (the same entries: its layout keeps the
    // chunks' indices) goes by it without a copy (fs::LoadProfileOf).
    auto rp = fs::LoadProfile(*store, root_id, static_cast<uint32_t>(root.chunks().size()));
    if (rp.ok() && rp->has_value() && fs::EncodeProfile(**rp) == fs::EncodeProfile(*carried) &&
        !(*rp)->digests.empty() && img.delta_of == root_id) {
      return Status::Ok();
    }
    return fs::PutProfile(*store, img.id, *carried).Annotate("the profile it inherits");
  };
  builder::ImageBuilder b(store.get(), std::move(opt));
  if (Status st = b.AddImage(**base); !st.ok()) return st.Annotate(kNothing);
  // The pause covers the scan of the upper directory and the reading of
  // what changed: one instant's tree.
  RETURN_IF_ERROR(pause.Begin(spec));
  if (const std::string upper = OverlayUpperDir(t); !upper.empty()) {
    if (Status st = b.AddOverlayUpper(upper); !st.ok()) return st.Annotate(kNothing);
  }
  if (Status st = b.KeepSubtree(out.subdir); !st.ok()) {
    return st.Annotate("directory snapshot of " + spec.path + " (in the mount " + t.target + ")")
        .Annotate(kNothing);
  }
  auto sum = b.Finish(spec.tag);
  pause.End();  // already, unless Finish failed early
  if (!sum.ok()) return sum.status().Annotate(kNothing);
  out.summary = std::move(*sum);
  return out;
}

Result<SnapshotOutcome> Snapshots::FromDirectory(const SnapshotSpec& spec,
                                                 const builder::ProgressSink& progress) {
  struct stat st;
  if (stat(spec.path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return NotFoundError(spec.path + " is not a directory");
  }
  if (spec.store_url.empty()) {
    return FailedPreconditionError(spec.path + " is in no mount of ferryd; name the store to "
                                   "snapshot it into");
  }
  SnapshotOutcome out;
  out.kind = "directory";
  ASSIGN_OR_RETURN(auto store, open_(spec.store_url));
  out.store_url = store->Url();
  Pause pause(&out.frozen_ms);
  builder::ImageBuilder b(store.get(), pause.Options(spec, progress));
  RETURN_IF_ERROR(pause.Begin(spec));
  if (Status s = b.AddDirectory(spec.path); !s.ok()) return s.Annotate(kNothing);
  auto sum = b.Finish(spec.tag);
  pause.End();
  if (!sum.ok()) return sum.status().Annotate(kNothing);
  out.summary = std::move(*sum);
  return out;
}

}  // namespace ferry::snapshotter
