#include "builder/oci_import.h"

#include <chrono>

#include "fs/image_store.h"

namespace ferry::builder {

Result<OciImportSummary> ImportOciImage(chunkstore::ObjectStore& store, const OciImage& image,
                                        const BuildOptions& options, const std::string& tag,
                                        const std::function<void(size_t, size_t, bool)>& on_layer) {
  const auto start = std::chrono::steady_clock::now();
  OciImportSummary out;
  out.source = image.source;
  out.source.layers.clear();
  std::unique_ptr<fs::ImageReader> prev;
  const size_t n = image.layers.size();
  for (size_t i = 0; i < n; ++i) {
    const OciLayer& layer = image.layers[i];
    fs::OciLayerSource rec = layer.source;
    auto chain = fs::ParseOciDigest(rec.chain_id);
    if (!chain) return InternalError("layer " + rec.digest + " has no chain ID");
    // An earlier import of the same prefix: its image as it is.
    std::optional<Digest> have;
    if (auto found = fs::LookupChain(store, *chain); found.ok()) {
      if (auto loaded = fs::LoadImage(store, *found); loaded.ok()) {
        have = *found;
        prev = std::move(*loaded);
      }
    }
    if (on_layer) on_layer(i, n, have.has_value());
    if (have) {
      rec.image = *have;
      out.reused.push_back(true);
    } else {
      ImageBuilder b(&store, options);
      if (prev) RETURN_IF_ERROR(b.AddImage(*prev));
      RETURN_IF_ERROR(b.AddTar(layer.path).Annotate("layer " + std::to_string(i) + " (" + rec.digest + ")"));
      ASSIGN_OR_RETURN(BuildSummary sum, b.Finish(""));
      out.new_bytes += sum.ingest.new_bytes;
      out.written_bytes += sum.ingest.written_bytes;
      rec.image = sum.image;
      out.last = sum;
      out.reused.push_back(false);
      ASSIGN_OR_RETURN(prev, fs::LoadImage(store, sum.image));
    }
    out.source.layers.push_back(rec);
  }
  out.image = out.source.layers.back().image;
  // The index, then the name.
  for (const fs::OciLayerSource& l : out.source.layers) {
    RETURN_IF_ERROR(fs::PutChain(store, *fs::ParseOciDigest(l.chain_id), l.image));
  }
  RETURN_IF_ERROR(fs::PutSource(store, out.image, out.source));
  if (!tag.empty()) RETURN_IF_ERROR(fs::SetRef(store, tag, out.image));
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace ferry::builder
