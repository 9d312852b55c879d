// ImageBuilder: assembles sources into one image and publishes it.
//
// Sources are applied in order: a directory (scanned now, contents read at
// Finish in directory order) and/or tar archives (plain, gzip, zstd, xz),
// each a layer on top of the previous ones with OCI whiteouts. Finish()
// ingests file contents, uploads packs, then the image object, then the ref:
// until the ref is written nothing names the new image, and on failure
// nothing is published (packs already uploaded are unreferenced garbage).
// Not thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "builder/chunk_ingester.h"
#include "builder/progress.h"
#include "builder/tree.h"
#include "chunkstore/object_store.h"

namespace ferry::builder {

struct BuildOptions {
  IngestOptions ingest;
  bool progress = false;  // print progress lines to stderr
};

struct BuildSummary {
  Digest image;
  IngestStats ingest;
  uint64_t files = 0, directories = 0, symlinks = 0, others = 0;
  uint64_t logical_bytes = 0;  // sum of regular file sizes (holes included)
  uint64_t metadata_bytes = 0;
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
  // Ingests remaining contents, writes the image and, if `tag` is not empty,
  // points the ref `tag` at it.
  Result<BuildSummary> Finish(const std::string& tag);

 private:
  using Progress = BuildProgress;
  Status IngestDirectoryFiles();
  Status IngestFile(TreeNode& node);
  // Loads the store's chunk index once, before the first content arrives.
  Status LoadIndexOnce();

  chunkstore::ObjectStore* store_;
  BuildOptions opt_;
  Tree tree_;
  int layers_ = 0;
  bool index_loaded_ = false;
  int source_root_fd_ = -1;  // the directory source, if any
  std::string source_root_;
  std::unique_ptr<ChunkIngester> ingester_;
  std::unique_ptr<Progress> progress_;
  // Nodes replaced by later layers may still have chunks in flight in the
  // ingester; they stay alive until Finish.
  std::vector<std::shared_ptr<TreeNode>> keep_alive_;
  double start_ = 0;
};

}  // namespace ferry::builder
