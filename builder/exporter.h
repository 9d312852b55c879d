// Exporter: writes an image back out as a pax tar archive, so data can
// always leave ferry. Every file kind and metadata field that tar can carry
// is kept: modes, owners, times in ns, xattrs, hard links, device numbers and
// sparse holes. Sockets cannot be stored in tar; they are skipped and counted.
// Chunks are verified as they are read, like any other read.
#pragma once

#include <string>

#include "chunkstore/chunk_reader.h"
#include "fs/image_reader.h"

namespace ferry::builder {

struct ExportSummary {
  uint64_t entries = 0;
  uint64_t bytes = 0;
  uint64_t skipped_sockets = 0;
};

// Writes `image` to `out_path` ("-" for stdout). On failure the partial file
// is removed.
Result<ExportSummary> ExportImage(const fs::ImageReader& image, chunkstore::ChunkReader& chunks,
                                  const std::string& out_path);

}  // namespace ferry::builder
