#include "builder/image_builder.h"

#include "builder/elf_loads.h"
#include "builder/python_imports.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "chunkstore/file_store.h"
#include "fs/image_delta.h"
#include "fs/image_store.h"
#include "fs/image_writer.h"

namespace ferry::builder {
namespace {

std::string TempDirFor(chunkstore::ObjectStore* store) {
  if (auto* fs = dynamic_cast<chunkstore::FileStore*>(store)) {
    std::string p = fs->TempPath("build");
    return p.substr(0, p.rfind('/'));
  }
  std::error_code ec;
  return std::filesystem::temp_directory_path(ec).string();
}

fs::InodeRecord Attr(const TreeNode& n) {
  fs::InodeRecord r{};
  r.mode = n.mode;
  r.uid = n.uid;
  r.gid = n.gid;
  r.size = S_ISREG(n.mode) ? n.size : 0;
  r.rdev = n.rdev;
  r.atime_sec = n.atime.tv_sec;
  r.atime_nsec = static_cast<uint32_t>(n.atime.tv_nsec);
  r.mtime_sec = n.mtime.tv_sec;
  r.mtime_nsec = static_cast<uint32_t>(n.mtime.tv_nsec);
  r.ctime_sec = n.ctime.tv_sec;
  r.ctime_nsec = static_cast<uint32_t>(n.ctime.tv_nsec);
  return r;
}

}  // namespace

ImageBuilder::ImageBuilder(chunkstore::ObjectStore* store, BuildOptions opt)
    : store_(store), opt_(opt), start_(NowSeconds()) {
  ingester_ = std::make_unique<ChunkIngester>(store, TempDirFor(store), opt.ingest);
  progress_ = std::make_unique<Progress>(opt.progress, opt.progress_sink);
}

Status ImageBuilder::KeepSubtree(const std::string& path) {
  if (path.empty()) return Status::Ok();
  return tree_.Reroot(path);
}

Status ImageBuilder::LoadIndexOnce() {
  if (index_loaded_) return Status::Ok();
  progress_->SetPhase("loading store index");
  RETURN_IF_ERROR(ingester_->LoadStoreIndex());
  index_loaded_ = true;
  return Status::Ok();
}

ImageBuilder::~ImageBuilder() {
  if (source_root_fd_ >= 0) close(source_root_fd_);
}

std::unordered_map<const TreeNode*, uint32_t> ImageBuilder::NumberOverBase() {
  // The nodes in the order Finish's walk meets them (depth first, entries
  // by name, each node once), with the directory and name they were met by.
  struct Met {
    const TreeNode* node;
    const TreeNode* parent;  // null for the root
    std::string name;
  };
  std::vector<Met> order{{&tree_.root(), nullptr, ""}};
  std::unordered_set<const TreeNode*> seen{&tree_.root()};
  std::vector<const TreeNode*> stack{&tree_.root()};
  while (!stack.empty()) {
    const TreeNode* d = stack.back();
    stack.pop_back();
    std::vector<const TreeNode*> subdirs;
    for (const auto& [name, child] : d->children) {
      if (!seen.insert(child.get()).second) continue;
      order.push_back({child.get(), d, name});
      if (S_ISDIR(child->mode)) subdirs.push_back(child.get());
    }
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(*it);
  }
  // 1. A node of the base keeps its number (the first to claim it: a
  //    number is one inode).
  std::unordered_map<const TreeNode*, uint32_t> slot;
  slot.reserve(order.size());
  std::vector<uint8_t> used(base_->inode_count() + 1, 0);
  std::vector<const Met*> fresh;
  for (const Met& m : order) {
    const uint32_t s = m.node->base_slot;
    if (s >= 1 && s <= base_->inode_count() && !used[s]) {
      used[s] = 1;
      slot.emplace(m.node, s);
    } else {
      fresh.push_back(&m);
    }
  }
  // 2. A new node where the base had an inode of the same type that no
  //    node kept (a file the sandbox rewrote) takes that number: its record
  //    changes in place, and what names it (its directory's entry, what
  //    loads it) does not change at all.
  std::vector<const Met*> rest;
  for (const Met* m : fresh) {
    uint32_t s = 0;
    if (m->parent != nullptr) {
      auto p = slot.find(m->parent);
      if (p != slot.end() && S_ISDIR(base_->inode(p->second).mode)) {
        if (auto old = base_->Lookup(p->second, m->name);
            old && !used[*old] && (base_->inode(*old).mode & S_IFMT) == (m->node->mode & S_IFMT) &&
            !S_ISDIR(m->node->mode)) {
          s = *old;
        }
      }
    }
    if (s != 0) {
      used[s] = 1;
      slot.emplace(m->node, s);
    } else {
      rest.push_back(m);
    }
  }
  // 3. The others follow the base's last inode, in walk order.
  auto next = static_cast<uint32_t>(base_->inode_count());
  for (const Met* m : rest) slot.emplace(m->node, ++next);
  return slot;
}

size_t ImageBuilder::FreeSlots(const std::unordered_map<const TreeNode*, uint32_t>& slot_of) const {
  uint32_t top = 0;
  for (const auto& [node, s] : slot_of) top = std::max(top, s);
  return top - slot_of.size();  // numbers up to the highest that no node has
}

Result<BuildSummary> ImageBuilder::Finish(const std::string& tag) {
  if (!tag.empty() && !fs::IsValidRefName(tag)) {
    return InvalidArgumentError("invalid image name '" + tag + "'");
  }
  RETURN_IF_ERROR(LoadIndexOnce());
  RETURN_IF_ERROR(IngestDirectoryFiles());
  if (opt_.contents_read) opt_.contents_read();
  progress_->SetPhase("uploading");
  // The last packs upload while the metadata is put together; the image
  // is stored only once they are all in the store.
  Status placed = ingester_->FinishPlacing();
  if (!placed.ok()) {
    ingester_->AwaitUploads().IgnoreError();
    return placed;
  }
  keep_alive_.clear();

  BuildSummary summary;
  fs::ImageWriter writer;
  const auto& locations = ingester_->locations();
  if (base_ != nullptr) writer.Reserve(base_->inode_count() + 64, base_->chunks().size() + 64);
  // Inode numbers follow a sorted depth-first walk, so a directory's entries
  // sit together in the inode table. Hard links share one inode. Over a
  // base, its nodes keep their numbers and new ones follow.
  const bool over_base = base_ != nullptr && opt_.delta_root != nullptr &&
                         tree_.root().base_slot == fs::kRootIno;
  std::unordered_map<const TreeNode*, uint32_t> slot_of;
  if (over_base) {
    writer.LayOutOver(*base_);
    slot_of = NumberOverBase();
    writer.SetInodeCount(slot_of.size() + FreeSlots(slot_of));
  }
  std::unordered_map<const TreeNode*, uint32_t> ino_of;
  std::vector<std::pair<const TreeNode*, std::string>> programs;  // with their first path
  std::vector<std::pair<const TreeNode*, std::string>> py_modules;  // NAME.py with imports
  PyModuleIndex py_index(tree_.root());
  struct Frame { const TreeNode* node; uint32_t ino; std::string path; };
  auto add = [&](const TreeNode& n) {
    fs::InodeSpec spec;
    spec.attr = Attr(n);
    spec.xattrs = n.xattrs;
    spec.symlink = n.symlink;
    for (const PendingExtent& e : n.extents) {
      spec.extents.emplace_back(e.file_offset, writer.AddChunk(locations[e.location]));
    }
    switch (n.mode & S_IFMT) {
      case S_IFREG: ++summary.files; summary.logical_bytes += n.size; break;
      case S_IFDIR: ++summary.directories; break;
      case S_IFLNK: ++summary.symlinks; break;
      default: ++summary.others;
    }
    uint32_t ino;
    if (over_base) {
      ino = slot_of.at(&n);
      writer.inode(ino) = std::move(spec);
    } else {
      ino = writer.AddInode(std::move(spec));
    }
    ino_of[&n] = ino;
    return ino;
  };
  uint32_t root = add(tree_.root());
  writer.inode(root).attr.parent = root;
  std::vector<Frame> stack{{&tree_.root(), root, ""}};
  while (!stack.empty()) {
    Frame f = stack.back();
    stack.pop_back();
    std::vector<Frame> subdirs;
    uint32_t nsubdirs = 0;
    for (const auto& [name, child] : f.node->children) {
      uint32_t ino;
      auto it = ino_of.find(child.get());
      if (it != ino_of.end()) {
        ino = it->second;  // another name of a hard-linked file
      } else {
        ino = add(*child);
        if (child->elf != nullptr) programs.emplace_back(child.get(), f.path + "/" + name);
        if (child->py != nullptr) py_modules.emplace_back(child.get(), f.path + "/" + name);
      }
      writer.inode(f.ino).entries.emplace_back(name, ino);
      auto& attr = writer.inode(ino).attr;
      if (S_ISDIR(child->mode)) {
        attr.parent = f.ino;
        attr.nlink = 2;
        ++nsubdirs;
        subdirs.push_back({child.get(), ino, f.path + "/" + name});
        py_index.AddDirectory(f.path + "/" + name, *child);
      } else {
        ++attr.nlink;
      }
    }
    writer.inode(f.ino).attr.nlink = 2 + nsubdirs;
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(*it);
  }
  std::set<uint32_t> has_loads;  // inodes given LOADS records here
  // What each program loads and which of its bytes the loader touches
  // first (builder/elf_loads.h), for prefetch on its first read.
  for (const auto& [node, path] : programs) {
    std::vector<uint32_t> deps;
    for (const TreeNode* d : ResolveLoads(tree_.root(), path, *node->elf)) deps.push_back(ino_of.at(d));
    // A Python interpreter also loads the modules it imports by itself.
    for (const TreeNode* d : py_index.Interpreter(path)) {
      if (deps.size() < kMaxLoads) deps.push_back(ino_of.at(d));
    }
    if (!deps.empty()) {
      writer.AddLoads(ino_of.at(node), deps);
      has_loads.insert(ino_of.at(node));
    }
    for (auto [offset, length] : node->elf->early) writer.AddEarly(ino_of.at(node), offset, length);
  }
  // What each Python module imports (builder/python_imports.h), recorded
  // on the files the interpreter reads for it: its first read then
  // brings the modules it imports, and ferry follows their records in turn.
  std::set<const TreeNode*> recorded;
  for (const auto& [node, path] : py_modules) {
    for (const PyModuleIndex::Record& r : py_index.Resolve(path, *node->py)) {
      if (r.file->elf != nullptr || !recorded.insert(r.file).second) continue;
      std::vector<uint32_t> deps;
      for (const TreeNode* d : r.deps) deps.push_back(ino_of.at(d));
      writer.AddLoads(ino_of.at(r.file), deps);
      has_loads.insert(ino_of.at(r.file));
    }
  }
  // A base image's files left in place keep what they load.
  CopyBaseLoads(ino_of, has_loads, writer);
  std::vector<uint8_t> object = writer.Serialize();
  summary.object_bytes = summary.metadata_bytes = object.size();
  fs::MetadataEncoding encoding = fs::MetadataEncoding::kAuto;
  if (over_base) {
    std::vector<uint8_t> delta = fs::MakeDelta(opt_.delta_root->object(), opt_.delta_root_id, object);
    if (delta.size() * 2 < object.size()) {
      object = std::move(delta);
      summary.metadata_bytes = object.size();
      summary.delta_of = opt_.delta_root_id;
      encoding = fs::MetadataEncoding::kZstd;  // small either way; patches compress well
    }
  }
  RETURN_IF_ERROR(ingester_->AwaitUploads());
  progress_->Done();
  ASSIGN_OR_RETURN(summary.image, fs::PutImage(*store_, object, encoding));
  if (opt_.before_ref) {
    std::vector<uint8_t> used(writer.chunks().size(), 0);
    for (size_t ino = 1; ino <= writer.inode_count(); ++ino) {
      for (const auto& [off, chunk] : writer.inode(static_cast<uint32_t>(ino)).extents) used[chunk] = 1;
    }
    RETURN_IF_ERROR(opt_.before_ref({summary.image, writer.chunks(), used, summary.delta_of}));
  }
  if (!tag.empty()) RETURN_IF_ERROR(fs::SetRef(*store_, tag, summary.image));
  summary.ingest = ingester_->stats();
  summary.files_read = files_read_;
  summary.seconds = NowSeconds() - start_;
  return summary;
}

}  // namespace ferry::builder
