// `ferry build`: a directory or tar archive (and tar layers) into an image.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "builder/image_builder.h"
#include "builder/oci_import.h"
#include "builder/oci_source.h"
#include "cli/store_access.h"
#include "cli/verb_support.h"
#include "cli/verbs.h"
#include "fs/image_store.h"

namespace ferry::cli {

namespace {

int CmdBuildOci(chunkstore::ObjectStore& store, const std::string& reference,
                const std::vector<std::string>& layers, const std::string& tag, bool quiet,
                int level, const std::string& platform_text, const builder::RegistryOptions& registry) {
  const char* kNothing = "build failed, nothing was published";
  if (!layers.empty()) {
    std::fprintf(stderr, "ferry build: --layer does not go with an OCI image source\n");
    return 2;
  }
  builder::OciPlatform platform = builder::HostPlatform();
  if (!platform_text.empty()) {
    auto p = builder::ParsePlatform(platform_text);
    if (!p.ok()) {
      std::fprintf(stderr, "ferry build: %s\n", p.status().message().c_str());
      return 2;
    }
    platform = *p;
  }
  const char* tmp = std::getenv("TMPDIR");
  if (!quiet) std::fprintf(stderr, "ferry: reading and verifying %s\n", reference.c_str());
  auto image = builder::OpenOciSource(reference, platform, tmp && *tmp ? tmp : "/var/tmp", registry);
  if (!image.ok()) return Fail(image.status().Annotate(kNothing));
  builder::BuildOptions opt;
  opt.progress = !quiet;
  opt.ingest.zstd_level = level;
  auto on_layer = [&](size_t i, size_t n, bool reused) {
    if (quiet) return;
    const auto& l = image->layers[i].source;
    std::fprintf(stderr, "ferry: layer %zu/%zu %s (%s)%s\n", i + 1, n, l.digest.substr(0, 19).c_str(),
                 Mb(l.size).c_str(), reused ? ": already in the store" : "");
  };
  auto sum = builder::ImportOciImage(store, *image, opt, tag, on_layer);
  if (!sum.ok()) return Fail(sum.status().Annotate(kNothing));
  if (!quiet) {
    size_t reused = 0;
    for (bool r : sum->reused) reused += r;
    std::fprintf(stderr,
                 "built %s from %s in %.2f s: %zu layers (%zu already in the store), config %s%s%s; "
                 "%s new data, %s written\n",
                 tag.empty() ? "image" : tag.c_str(), reference.c_str(), sum->seconds,
                 sum->source.layers.size(), reused, sum->source.config_digest.c_str(),
                 sum->source.manifest_digest.empty() ? "" : ", manifest ",
                 sum->source.manifest_digest.c_str(), Mb(sum->new_bytes).c_str(),
                 Mb(sum->written_bytes).c_str());
  }
  std::printf("%s\n", sum->image.Hex().c_str());
  return 0;
}

}  // namespace

int CmdBuild(const std::string& store_url, const std::string& source,
             const std::vector<std::string>& layers, const std::string& tag, bool quiet,
             int level, const std::string& platform, const std::string& creds, bool insecure) {
  auto store = OpenStore(store_url);
  if (!store.ok()) return Fail(store.status());
  if (source.empty() && layers.empty()) {
    std::fprintf(stderr, "ferry build: give a SOURCE directory or archive, or --layer TAR\n");
    return 2;
  }
  if (!tag.empty() && !fs::IsValidRefName(tag)) {
    std::fprintf(stderr, "ferry build: invalid image name '%s' (letters, digits and ._:@+%%=- "
                 "in /-separated parts, starting with a letter or digit)\n", tag.c_str());
    return 2;
  }
  builder::RegistryOptions registry;
  registry.creds = creds;
  registry.insecure = insecure;
  if (builder::IsOciReference(source)) {
    return CmdBuildOci(**store, source, layers, tag, quiet, level, platform, registry);
  }
  if (!platform.empty() || !creds.empty() || insecure) {
    std::fprintf(stderr, "ferry build: --platform, --creds and --insecure are for OCI image sources\n");
    return 2;
  }
  struct stat st;
  if (!source.empty() && stat(source.c_str(), &st) != 0) {
    return Fail(ErrnoError("build source " + source));
  }
  for (const std::string& layer : layers) {
    if (stat(layer.c_str(), &st) != 0) return Fail(ErrnoError("layer " + layer));
  }
  builder::BuildOptions opt;
  opt.progress = !quiet;
  opt.ingest.zstd_level = level;
  builder::ImageBuilder b(store->get(), opt);
  const char* kNothing = "build failed, nothing was published";
  if (!source.empty()) {
    Status st = IsDirectory(source) ? b.AddDirectory(source) : b.AddTar(source);
    if (!st.ok()) return Fail(st.Annotate(kNothing));
  }
  for (const std::string& layer : layers) {
    if (Status st = b.AddTar(layer); !st.ok()) return Fail(st.Annotate(kNothing));
  }
  auto sum = b.Finish(tag);
  if (!sum.ok()) return Fail(sum.status().Annotate(kNothing));
  const auto& in = sum->ingest;
  if (!quiet) {
    std::fprintf(stderr,
                 "built %s in %.2f s: %llu files, %llu dirs, %llu symlinks, %llu other; %s of "
                 "file data (%s stored, %.0f MB/s)\n"
                 "chunks: %llu total, %llu new (%s new data, %s written compressed in %llu "
                 "packs); deduplicated %s against the store, %s within the image\n",
                 tag.empty() ? "image" : tag.c_str(), sum->seconds,
                 (unsigned long long)sum->files, (unsigned long long)sum->directories,
                 (unsigned long long)sum->symlinks, (unsigned long long)sum->others,
                 Mb(sum->logical_bytes).c_str(), Mb(in.bytes_in).c_str(),
                 in.bytes_in / 1e6 / std::max(sum->seconds, 1e-6),
                 (unsigned long long)in.chunks, (unsigned long long)in.new_chunks,
                 Mb(in.new_bytes).c_str(), Mb(in.written_bytes).c_str(),
                 (unsigned long long)in.packs, Mb(in.dedup_store_bytes).c_str(),
                 Mb(in.dedup_build_bytes).c_str());
  }
  std::printf("%s\n", sum->image.Hex().c_str());
  return 0;
}

}  // namespace ferry::cli
