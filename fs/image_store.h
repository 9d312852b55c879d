// Images and refs in an object store.
//
//   images/<id>   an image metadata object; id = SHA-256 of its bytes. In a
//                 remote store it is kept as one zstd frame of those bytes
//                 (a third of the size on the wire); LoadImage reads both.
//   refs/<name>   a ref: the 64-hex image id followed by a newline
//
// Everything read is verified: an image whose bytes do not hash to its id is
// kCorruption, and a ref that does not hold an id is kCorruption.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chunkstore/object_store.h"
#include "fs/image_reader.h"
#include "fs/ref_names.h"

namespace ferry::fs {

std::string ImageKey(const Digest& id);


// Stores a serialized image: with kAuto as one zstd frame in a remote
// store and plain in a local one (mapped in place), else as asked. Returns
// its id, the SHA-256 of `object` either way.
enum class MetadataEncoding { kAuto, kPlain, kZstd };
Result<Digest> PutImage(chunkstore::ObjectStore& store, std::span<const uint8_t> object,
                        MetadataEncoding encoding = MetadataEncoding::kAuto);
// Points `name` at `id` (atomically replacing an old value).
Status SetRef(chunkstore::ObjectStore& store, const std::string& name, const Digest& id);
// All refs, sorted by name.
Result<std::vector<std::pair<std::string, Digest>>> ListRefs(chunkstore::ObjectStore& store);
// All image ids in the store.
Result<std::vector<Digest>> ListImages(chunkstore::ObjectStore& store);

// Resolves a ref name, a full image id or a unique id prefix of at least 8
// hex characters. NotFound names what was looked for.
Result<Digest> ResolveImage(chunkstore::ObjectStore& store, const std::string& name_or_id);

// Fetches, verifies and opens an image. `on_delta_base`, if set, is called
// with the base image's id as soon as the image turns out to be stored as
// a delta, before the base is fetched (a caller can fetch what it needs of
// the base meanwhile).
Result<std::unique_ptr<ImageReader>> LoadImage(
    chunkstore::ObjectStore& store, const Digest& id,
    const std::function<void(const Digest&)>& on_delta_base = nullptr);

}  // namespace ferry::fs
