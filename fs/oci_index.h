// Where an image imported from OCI came from, and the OCI index over it.
//
//   chains/sha256/<hex>  the image that flattens the layers whose OCI chain
//                        ID is sha256:<hex>: its 64-hex id and a newline
//   sources/<image-id>   the OCI source of an imported image (JSON,
//                        docs/format.md 13): the reference it was built from,
//                        its manifest and config digests, and per layer the
//                        blob digest, diff ID, chain ID and prefix image
//
// Both are written by the builder's OCI import before the image's ref, so a
// name never points at an image whose index is missing. Read by `ferry ls`
// and by ferryd's containerd snapshotter (a chain ID to a lazy mount).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "chunkstore/digest.h"
#include "chunkstore/object_store.h"

namespace ferry::fs {

struct OciLayerSource {
  std::string digest;      // "sha256:<hex>" of the blob as stored (compressed)
  std::string media_type;  // as the manifest names it
  uint64_t size = 0;       // the blob's size
  std::string diff_id;     // "sha256:<hex>" of the uncompressed layer tar
  std::string chain_id;    // "sha256:<hex>", OCI chain ID of layers 0..this
  Digest image;            // the ferry image of layers 0..this
};

struct OciSource {
  std::string reference;        // as given to `ferry build`
  std::string manifest_digest;  // "sha256:<hex>"; empty for docker-archive
  std::string config_digest;    // "sha256:<hex>" (docker's image id)
  std::string platform;         // os/architecture[/variant] of the config
  std::vector<OciLayerSource> layers;
};

// "sha256:<hex>" for a 64-hex digest, nullopt for anything else.
std::optional<Digest> ParseOciDigest(const std::string& s);
std::string OciDigest(const Digest& d);
// The OCI chain ID of a layer over the chain `parent` (empty for the
// first layer): the diff ID itself, then "sha256:" + hex SHA-256 of
// "<parent chain ID> <diff ID>".
std::string ChainId(const std::string& parent, const std::string& diff_id);

std::string ChainKey(const Digest& chain_id);
std::string SourceKey(const Digest& image);

Status PutChain(chunkstore::ObjectStore& store, const Digest& chain_id, const Digest& image);
// NotFound if no image flattens that chain; kCorruption for a damaged entry.
Result<Digest> LookupChain(chunkstore::ObjectStore& store, const Digest& chain_id);

Status PutSource(chunkstore::ObjectStore& store, const Digest& image, const OciSource& source);
// nullopt if the image was not imported from OCI; kCorruption if damaged.
Result<std::optional<OciSource>> GetSource(chunkstore::ObjectStore& store, const Digest& image);

// The JSON of a source record, and back (kCorruption naming what is wrong).
std::string EncodeSource(const OciSource& source);
Result<OciSource> DecodeSource(std::string_view json);

}  // namespace ferry::fs
