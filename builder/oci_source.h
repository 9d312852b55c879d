// OCI images as `ferry build` sources, read and verified before any of
// them is used:
//
//   oci:DIR[:TAG]            an OCI image layout (image-layout spec): DIR/
//                            oci-layout, DIR/index.json, DIR/blobs/sha256/
//   docker-archive:FILE[:T]  the output of `docker save` (manifest.json,
//                            the config and the layer tars inside a tar)
//   docker://HOST/REPO:TAG   a registry (builder/registry_client.h); layer
//                            blobs are downloaded to the spool directory
//
// OpenOciSource resolves the reference to one image manifest (through an
// image index or manifest list, choosing the platform), checks every
// manifest, config and layer blob against its digest and size, and every
// layer's uncompressed bytes against the config's diff ID, so that the
// chain IDs computed from them can be trusted. Anything unexpected (an
// unknown media type, a manifest or config too large, more layers than
// kMaxLayers, a missing blob) is an error that names the blob.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "builder/registry_client.h"
#include "chunkstore/status.h"
#include "fs/oci_index.h"

namespace ferry::builder {

inline constexpr uint64_t kMaxOciJsonBytes = 4 << 20;     // a manifest or an index
inline constexpr uint64_t kMaxOciConfigBytes = 16 << 20;  // a config (history can be long)
inline constexpr size_t kMaxLayers = 128;

struct OciPlatform {
  std::string os, architecture, variant;  // variant empty: any
  std::string ToString() const;
};
// This host's platform as OCI names it (linux/amd64, linux/arm64/v8, ...).
OciPlatform HostPlatform();
// "os/architecture[/variant]".
Result<OciPlatform> ParsePlatform(const std::string& text);

// True if `source` names an OCI source (oci:, docker-archive:, docker://).
bool IsOciReference(const std::string& source);

struct OciLayer {
  std::string path;  // the verified blob on local disk
  fs::OciLayerSource source;  // digest, media type, size, diff ID, chain ID (image not yet set)
};

class ScopedSpool;

struct OciImage {
  fs::OciSource source;  // layers' images not yet set
  std::vector<OciLayer> layers;
  std::vector<std::string> repo_tags;  // docker-archive's RepoTags, the layout's ref name
  std::shared_ptr<ScopedSpool> spool;  // owns blobs copied out of an archive
};

// Opens and verifies `reference` (see the top of this file). Blobs that
// are not plain files already (layers inside a docker-archive or in a
// registry) are copied to a temporary directory under `spool_parent`,
// removed with the OciImage. `registry` applies to docker:// references.
Result<OciImage> OpenOciSource(const std::string& reference, const OciPlatform& platform,
                               const std::string& spool_parent, const RegistryOptions& registry = {});

}  // namespace ferry::builder
