// ImageBuilder: assembles sources into one image and publishes it.
//
// Sources are applied in order: a directory (scanned now, contents read at
// Finish in directory order) and/or tar archives (plain, gzip, zstd, xz),
// each a layer on top of the previous ones with OCI whiteouts. A snapshot
// is a base image (AddImage) with an overlayfs upper directory on top
// (AddOverlayUpper, overlayfs semantics instead of OCI ones). Finish()
// ingests file contents, uploads packs, then the image object, then the ref:
// until the ref is written nothing names the new image, and on failure
// nothing is published (packs already uploaded are unreferenced garbage).
// Not thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "builder/chunk_ingester.h"
#include "builder/progress.h"
#include "builder/tree.h"
#include "chunkstore/object_store.h"
#include "fs/image_reader.h"
#include "fs/image_writer.h"

namespace ferry::builder {

struct BuildOptions {
  IngestOptions ingest;
  bool progress = false;  // print progress lines to stderr
  // If set, progress goes here instead (whether or not `progress` is set).
  ProgressSink progress_sink;
  // If set, called by Finish once every source file has been read (before
  // the last uploads and before the image and its ref are written): from
  // then on the sources may change. A snapshot thaws its sandbox here.
  std::function<void()> contents_read;
  // If set, called by Finish once the image is stored and before its ref
  // is written: for what must be in the store
  // before the name is (the profile a snapshot inherits). A failure fails
  // Finish; the image is then stored but unnamed.
  struct StoredImage {
    Digest id;
    std::span<const fs::ChunkRecord> chunks;  // its CHUNKS records
    std::span<const uint8_t> chunk_used;      // per record: does a file use it
    std::optional<Digest> delta_of;           // stored as a delta of this image
  };
  std::function<Status(const StoredImage&)> before_ref;
  // With a base image (AddImage) whose root stays the root: number the
  // inodes and lay the metadata out as the base has them
  // (fs::ImageWriter::LayOutOver), and store the image as a delta of
  // `delta_root` (fs/image_delta.h), which is the base itself or the full
  // image the base is a delta of, when the delta is under half the size of
  // the whole object. A snapshot then writes metadata in proportion to what
  // changed. Must outlive Finish.
  const fs::ImageReader* delta_root = nullptr;
  Digest delta_root_id;
};

struct BuildSummary {
  Digest image;
  IngestStats ingest;
  uint64_t files = 0, directories = 0, symlinks = 0, others = 0;
  uint64_t logical_bytes = 0;  // sum of regular file sizes (holes included)
  uint64_t files_read = 0;     // regular files whose contents were read (not a base's)
  uint64_t metadata_bytes = 0;  // what was stored: the object, or its delta
  uint64_t object_bytes = 0;    // the whole metadata object
  std::optional<Digest> delta_of;  // stored as a delta of this image
  double seconds = 0;
};

class ImageBuilder {
 public:
  ImageBuilder(chunkstore::ObjectStore* store, BuildOptions opt);
  ~ImageBuilder();

  // Uses a directory tree as the next layer: metadata now, contents later.
  Status AddDirectory(const std::string& path);
  // Applies a tar archive as the next layer, reading its contents now.
  Status AddTar(const std::string& path);
  // Uses the tree of `base` as the first layer; must be the first source.
  // Its regular files keep base's chunks (their bytes are neither read nor
  // re-chunked, and the new image references base's packs, which must be in
  // this builder's store), and what its files load (LOADS, EARLY) is kept
  // for the files the later layers leave in place (what they load is then
  // found by path: a library replaced by a later layer is the new one).
  // A base file's names stay one inode; a name a later layer replaces
  // leaves the others as they were (with their count of names). Chunks of
  // the base that new content repeats count as dedup_build_bytes. `base`
  // must outlive Finish. kFailedPrecondition if another source came first.
  Status AddImage(const fs::ImageReader& base);
  // Applies the overlayfs upper directory `upper_dir` as the next layer
  // (metadata now, contents of its regular files read at Finish, like
  // AddDirectory; it counts as the one directory source). Semantics are
  // overlayfs's, not OCI's: a character device 0:0 is a whiteout that
  // removes the lower entry; a directory with xattr trusted.overlay.opaque
  // = "y" hides the lower directory's entries; any other upper directory
  // is merged with the lower one; every other upper entry replaces the
  // lower one with all of its metadata. Hard links within `upper_dir` stay
  // hard links and sparse files keep their holes. No trusted.overlay.*
  // xattr ends up in the image. Entries with trusted.overlay.redirect or
  // trusted.overlay.metacopy (made by the kernel only with redirect_dir or
  // metacopy enabled) are refused with kFailedPrecondition naming the path: such
  // an entry's data or name lives in another lower path that the image
  // would have to follow. ".wh."-named files are ordinary names here.
  Status AddOverlayUpper(const std::string& upper_dir);
  // Makes the directory at `path` (relative, "" the root) of the tree the
  // sources have made so far the new image's root, dropping everything
  // outside it: a directory snapshot. Call it after the sources. Contents
  // of files outside it are not read. A hard-linked file keeps only the
  // names inside. InvalidArgument if `path` is no directory there.
  Status KeepSubtree(const std::string& path);
  // Ingests remaining contents, writes the image and, if `tag` is not empty,
  // points the ref `tag` at it.
  Result<BuildSummary> Finish(const std::string& tag);

 private:
  using Progress = BuildProgress;
  Status IngestDirectoryFiles();
  // Opens the one directory source at `path` and fills `root` with the
  // metadata of its top directory.
  Status OpenDirectorySource(const std::string& path, TreeNode* root);
  // Scans the open directory source into `dir`'s children.
  Status ScanDirectorySource(TreeNode* dir);
  // Writes the base image's LOADS and EARLY records of the files still in
  // the tree, for the inodes that have none of their own yet; a file they
  // load that a later layer replaced is the regular file now at its path.
  void CopyBaseLoads(const std::unordered_map<const TreeNode*, uint32_t>& ino_of,
                     const std::set<uint32_t>& has_loads, fs::ImageWriter& writer);
  Status IngestFile(TreeNode& node);
  // Over a base image: each node's inode number (the base's for its nodes,
  // then new numbers after the base's last), and how many numbers up to
  // the highest are left free.
  std::unordered_map<const TreeNode*, uint32_t> NumberOverBase();
  size_t FreeSlots(const std::unordered_map<const TreeNode*, uint32_t>& slot_of) const;
  // Loads the store's chunk index once, before the first content arrives.
  Status LoadIndexOnce();

  chunkstore::ObjectStore* store_;
  BuildOptions opt_;
  Tree tree_;
  int layers_ = 0;
  bool index_loaded_ = false;
  int source_root_fd_ = -1;  // the directory source, if any
  std::string source_root_;
  const fs::ImageReader* base_ = nullptr;  // AddImage's, not owned
  // The base image's regular files by inode - 1 (null for other kinds),
  // kept alive so that a node removed by a later layer is never mistaken
  // for a new one at the same address.
  std::vector<std::shared_ptr<TreeNode>> base_files_;
  std::vector<std::string> base_paths_;  // their first paths, for files replaced since
  std::unique_ptr<ChunkIngester> ingester_;
  std::unique_ptr<Progress> progress_;
  // Nodes replaced by later layers may still have chunks in flight in the
  // ingester; they stay alive until Finish.
  std::vector<std::shared_ptr<TreeNode>> keep_alive_;
  uint64_t files_read_ = 0;
  double start_ = 0;
};

}  // namespace ferry::builder
