// OCI import: an opened, verified OciImage (builder/oci_source.h) into
// ferry images, one per prefix of its layers.
//
// Layer k's image is layer k-1's image (ImageBuilder::AddImage: its chunks
// kept, nothing re-read) with layer k applied, so each layer is read once
// and a prefix costs only its metadata. A prefix the store already holds
// (an earlier import with the same chain ID) is reused, not rebuilt. Once
// every image is stored, the index is written (fs/oci_index.h: the chain
// ID of each prefix, the source record of the last), and then the ref:
// a failure on the way publishes no name and no index entry.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "builder/image_builder.h"
#include "builder/oci_source.h"

namespace ferry::builder {

struct OciImportSummary {
  Digest image;                // the whole image (every layer)
  fs::OciSource source;        // as recorded in the store
  std::vector<bool> reused;    // per layer: its prefix image was already there
  BuildSummary last;           // the last layer's build (zeros if reused)
  uint64_t new_bytes = 0, written_bytes = 0;  // over every layer built
  double seconds = 0;
};

// `on_layer(i, n, reused)` is called as each layer starts (progress).
Result<OciImportSummary> ImportOciImage(chunkstore::ObjectStore& store, const OciImage& image,
                                        const BuildOptions& options, const std::string& tag,
                                        const std::function<void(size_t, size_t, bool)>& on_layer = {});

}  // namespace ferry::builder
