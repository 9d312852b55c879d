// Tree: the in-memory file tree a build assembles before it becomes an image.
//
// Sources (a directory, tar layers) add entries by untrusted relative paths;
// the tree refuses any path that would leave the root ("..", absolute paths,
// or a path through a symlink or other non-directory) with kInvalidArgument
// naming the entry. Hardlinks are several names for one TreeNode. Layers are
// applied in order with OCI whiteout semantics. Not thread-safe.
#pragma once

#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "builder/chunk_ingester.h"
#include "chunkstore/status.h"

namespace ferry::builder {

struct ElfLoads;
struct PyImport;

struct TreeNode {
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t rdev = 0;
  uint64_t size = 0;
  struct timespec atime{}, mtime{}, ctime{};
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::string symlink;
  std::vector<PendingExtent> extents;  // regular files, once ingested
  std::map<std::string, std::shared_ptr<TreeNode>> children;  // directories
  std::string source_path;  // directory sources: path relative to the source root
  std::shared_ptr<const ElfLoads> elf;  // a dynamically linked program or library
  std::shared_ptr<const std::vector<PyImport>> py;  // a Python module's imports (NAME.py)
  int layer = 0;            // the layer that last wrote this node
  uint32_t base_ino = 0;    // a base image's regular file (AddImage): its inode there
  // Any node of a base image (AddImage), or a directory merged over one:
  // its inode number there, which a layout over the base keeps.
  uint32_t base_slot = 0;
};

class Tree {
 public:
  Tree();
  TreeNode& root() { return *root_; }
  const std::shared_ptr<TreeNode>& root_ptr() const { return root_; }

  // Splits an archive path ("./a/b/", "a//b") into components. Rejects
  // absolute paths, "..", NUL bytes, components over 255 bytes and paths over
  // 4095 bytes. An empty result means the root itself.
  static Result<std::vector<std::string>> SplitPath(std::string_view path);

  // Puts `node` at `path`, replacing what was there. A directory placed over
  // a directory keeps the old children (layers merge). Missing parent
  // directories are created (mode 0755, root-owned). Fails if a parent is
  // not a directory.
  Status Put(std::string_view path, std::shared_ptr<TreeNode> node);
  // The node at `path` (NotFound if absent), not following symlinks.
  Result<std::shared_ptr<TreeNode>> Get(std::string_view path);
  // Applies an OCI whiteout entry found in `layer` at `path`
  // (".wh.NAME" removes NAME; ".wh..wh..opq" hides all lower-layer content of
  // its directory). Returns true if `path` was a whiteout.
  Result<bool> ApplyWhiteout(std::string_view path, int layer);
  // Makes the directory at `path` the root, dropping everything outside
  // it. InvalidArgument if `path` is not a directory of the tree (NotFound
  // if absent).
  Status Reroot(std::string_view path);
  // The layer that implicitly created parent directories belong to.
  void set_layer(int layer) { layer_ = layer; }

 private:
  Result<TreeNode*> ParentDir(const std::vector<std::string>& comps, std::string_view path,
                              bool create);
  std::shared_ptr<TreeNode> root_;
  int layer_ = 0;
};

}  // namespace ferry::builder
