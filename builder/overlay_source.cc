// The snapshot sources of ImageBuilder: a base image's tree, whose files keep
// their chunks, and an overlayfs upper directory on top of it.
#include <sys/stat.h>

#include <string_view>

#include "builder/image_builder.h"
#include "fs/image_format.h"

namespace ferry::builder {
namespace {

constexpr std::string_view kOverlayPrefix = "trusted.overlay.";
constexpr std::string_view kOpaque = "trusted.overlay.opaque";
constexpr std::string_view kRedirect = "trusted.overlay.redirect";
constexpr std::string_view kMetacopy = "trusted.overlay.metacopy";

void FillFromImage(const fs::InodeRecord& r, TreeNode* node) {
  node->mode = r.mode;
  node->uid = r.uid;
  node->gid = r.gid;
  node->rdev = r.rdev;
  node->size = S_ISREG(r.mode) ? r.size : 0;
  node->atime = {static_cast<time_t>(r.atime_sec), static_cast<long>(r.atime_nsec)};
  node->mtime = {static_cast<time_t>(r.mtime_sec), static_cast<long>(r.mtime_nsec)};
  node->ctime = {static_cast<time_t>(r.ctime_sec), static_cast<long>(r.ctime_nsec)};
}

bool IsWhiteout(const TreeNode& n) { return S_ISCHR(n.mode) && n.rdev == 0; }

// Checks the overlay's own xattrs of upper entry `path`, then removes them
// all: they describe the overlay, not the files. Sets *opaque for an
// opaque directory.
Status TakeOverlayXattrs(TreeNode* n, const std::string& path, bool* opaque) {
  *opaque = false;
  std::vector<std::pair<std::string, std::string>> kept;
  for (auto& [name, value] : n->xattrs) {
    if (name == kRedirect || name == kMetacopy) {
      return FailedPreconditionError(
          "upper entry '" + path + "' has " + name +
          ": redirected and metacopy entries are not supported (mount the overlay without "
          "redirect_dir and metacopy)");
    }
    if (name == kOpaque) {
      *opaque = S_ISDIR(n->mode) && value == "y";
    } else if (std::string_view(name).substr(0, kOverlayPrefix.size()) == kOverlayPrefix) {
      // origin, impure, nlink, upper, ...: bookkeeping of the overlay.
    } else {
      kept.emplace_back(std::move(name), std::move(value));
    }
  }
  n->xattrs = std::move(kept);
  return Status::Ok();
}

// Merges upper directory `upper` into the tree directory `lower` (whose
// metadata it has already replaced), overlayfs's way.
Status MergeUpper(TreeNode* lower, TreeNode& upper, const std::string& path, int layer) {
  for (auto& [name, u] : upper.children) {
    std::string child_path = path.empty() ? name : path + "/" + name;
    u->layer = layer;
    if (IsWhiteout(*u)) {
      lower->children.erase(name);
      continue;
    }
    bool opaque = false;
    RETURN_IF_ERROR(TakeOverlayXattrs(u.get(), child_path, &opaque));
    auto& slot = lower->children[name];
    if (!S_ISDIR(u->mode)) {
      slot = u;  // a file (its other hard-linked names share it), link, device, ...
      continue;
    }
    // A directory: its metadata is the upper one; its entries are the lower
    // directory's unless it is opaque (or the lower entry is no directory),
    // with the upper ones merged on top.
    auto dir = std::make_shared<TreeNode>(*u);
    dir->children.clear();
    if (!opaque && slot && S_ISDIR(slot->mode)) dir->children = std::move(slot->children);
    if (slot && S_ISDIR(slot->mode)) dir->base_slot = slot->base_slot;  // the same directory
    slot = dir;
    RETURN_IF_ERROR(MergeUpper(dir.get(), *u, child_path, layer));
  }
  return Status::Ok();
}

}  // namespace

Status ImageBuilder::AddImage(const fs::ImageReader& base) {
  if (layers_ != 0 || base_ != nullptr) {
    return FailedPreconditionError("a base image must be the first source of a build");
  }
  base_ = &base;
  base_files_.assign(base.inode_count(), nullptr);
  base_paths_.assign(base.inode_count(), std::string());
  tree_.set_layer(layers_);
  // Hard links are one inode in the image and one node here.
  std::vector<std::shared_ptr<TreeNode>> node_of(base.inode_count() + 1);
  auto make = [&](uint32_t ino, const std::string& path) {
    auto n = std::make_shared<TreeNode>();
    const fs::InodeRecord& r = base.inode(ino);
    FillFromImage(r, n.get());
    n->layer = layers_;
    n->base_slot = ino;
    for (const fs::XattrRecord& x : base.Xattrs(ino)) {
      n->xattrs.emplace_back(base.XattrName(x), base.XattrValue(x));
    }
    if (S_ISLNK(r.mode)) n->symlink = base.SymlinkTarget(ino);
    if (S_ISREG(r.mode)) {
      n->base_ino = ino;
      for (const fs::ExtentRecord& e : base.Extents(ino)) {
        n->extents.push_back({e.file_offset, ingester_->AddStoredChunk(base.Chunk(e.chunk))});
      }
      base_files_[ino - 1] = n;
      base_paths_[ino - 1] = path;
    }
    return n;
  };
  auto root = make(fs::kRootIno, "");
  RETURN_IF_ERROR(tree_.Put("", root));
  struct Frame {
    uint32_t ino;
    TreeNode* dir;
    std::string path;
  };
  std::vector<Frame> stack{{fs::kRootIno, &tree_.root(), ""}};
  while (!stack.empty()) {
    Frame f = std::move(stack.back());
    stack.pop_back();
    for (const fs::DirentRecord& d : base.Dirents(f.ino)) {
      std::string name(base.Name(d));
      std::string path = f.path.empty() ? name : f.path + "/" + name;
      auto& n = node_of[d.ino];
      // A directory is validated to have one name; a file may have several.
      if (!n) n = make(d.ino, path);
      f.dir->children.emplace(std::move(name), n);
      if (S_ISDIR(n->mode)) stack.push_back({d.ino, n.get(), std::move(path)});
    }
  }
  ++layers_;
  return Status::Ok();
}

Status ImageBuilder::AddOverlayUpper(const std::string& upper_dir) {
  auto upper = std::make_shared<TreeNode>();
  RETURN_IF_ERROR(OpenDirectorySource(upper_dir, upper.get()));
  RETURN_IF_ERROR(ScanDirectorySource(upper.get()));
  tree_.set_layer(layers_);
  bool opaque = false;
  RETURN_IF_ERROR(TakeOverlayXattrs(upper.get(), "", &opaque));
  // The overlay's root is the upper directory's, with the lower entries
  // (Put keeps them) unless it is opaque.
  auto root = std::make_shared<TreeNode>(*upper);
  root->children.clear();
  root->layer = layers_;
  if (opaque) tree_.root().children.clear();
  RETURN_IF_ERROR(tree_.Put("", root));
  RETURN_IF_ERROR(MergeUpper(&tree_.root(), *upper, "", layers_));
  ++layers_;
  return Status::Ok();
}

void ImageBuilder::CopyBaseLoads(const std::unordered_map<const TreeNode*, uint32_t>& ino_of,
                                 const std::set<uint32_t>& has_loads, fs::ImageWriter& writer) {
  if (base_ == nullptr) return;
  // The new inode of base inode `ino`, if that file is still in the tree
  // (replaced or removed files are not).
  auto now = [&](uint32_t ino) -> uint32_t {
    if (!base_->IsValidIno(ino) || base_files_[ino - 1] == nullptr) return 0;
    auto it = ino_of.find(base_files_[ino - 1].get());
    return it == ino_of.end() ? 0 : it->second;
  };
  // What a file loads may have been replaced: the file at its path now.
  auto dep_now = [&](uint32_t ino) -> uint32_t {
    if (uint32_t same = now(ino); same != 0 || !base_->IsValidIno(ino)) return same;
    auto n = tree_.Get(base_paths_[ino - 1]);
    if (!n.ok() || !S_ISREG((*n)->mode)) return 0;
    auto it = ino_of.find(n->get());
    return it == ino_of.end() ? 0 : it->second;
  };
  // Records are grouped by file in the base, in load order.
  uint32_t last = 0;
  std::vector<uint32_t> deps;
  auto flush = [&] {
    uint32_t ino = now(last);
    if (ino != 0 && !deps.empty() && !has_loads.contains(ino)) writer.AddLoads(ino, deps);
    deps.clear();
  };
  for (const fs::LoadRecord& l : base_->loads()) {
    if (l.ino != last) {
      flush();
      last = l.ino;
    }
    if (uint32_t dep = dep_now(l.dep); dep != 0) deps.push_back(dep);
  }
  flush();
  for (const fs::EarlyRecord& e : base_->early()) {
    uint32_t ino = now(e.ino);
    if (ino != 0) writer.AddEarly(ino, e.offset, e.length);  // a base file has no ELF scan
  }
}

}  // namespace ferry::builder
