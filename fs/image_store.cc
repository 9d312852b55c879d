#include "fs/image_store.h"

#include <cctype>
#include <cstring>

#include "chunkstore/pack.h"
#include "fs/image_delta.h"

namespace ferry::fs {

namespace {
// Metadata is compressed once per build and read by every mount: level 3
// takes the benchmark image's 1.9 MB to 0.55 MB (level 1 to about the
// same; 19 to 0.47 MB, at a cost a build of 150 MB/s cannot pay).
constexpr int kMetadataZstdLevel = 3;
constexpr uint8_t kZstdMagic[4] = {0x28, 0xb5, 0x2f, 0xfd};
// Larger objects are stored as they are. A compressed one may declare at
// most this, and at most 256 times its own size (metadata compresses about
// 3.4 times): a lying store cannot make a mount allocate gigabytes.
constexpr uint64_t kMaxPlainBytes = 0xffffffffu;
}  // namespace

std::string ImageKey(const Digest& id) { return "images/" + id.Hex(); }

Result<Digest> PutImage(chunkstore::ObjectStore& store, std::span<const uint8_t> object,
                        MetadataEncoding encoding) {
  Digest id = Sha256(object);
  const bool zstd = object.size() <= kMaxPlainBytes &&
                    (encoding == MetadataEncoding::kZstd ||
                     (encoding == MetadataEncoding::kAuto && !store.IsLocal()));
  if (zstd) {
    RETURN_IF_ERROR(store.Put(ImageKey(id), chunkstore::CompressChunk(object, kMetadataZstdLevel)));
  } else {
    RETURN_IF_ERROR(store.Put(ImageKey(id), object));
  }
  return id;
}

Status SetRef(chunkstore::ObjectStore& store, const std::string& name, const Digest& id) {
  if (!IsValidRefName(name)) return InvalidArgumentError("invalid image name '" + name + "'");
  std::string text = id.Hex() + "\n";
  return store.Put("refs/" + name, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

static Result<Digest> ReadRef(chunkstore::ObjectStore& store, const std::string& key) {
  ASSIGN_OR_RETURN(auto blob, store.Get(key));
  std::string_view text = blob->view();
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  auto id = Digest::FromHex(text);
  if (!id) return CorruptionError("ref " + key + " does not hold an image id");
  return *id;
}

Result<std::vector<std::pair<std::string, Digest>>> ListRefs(chunkstore::ObjectStore& store) {
  ASSIGN_OR_RETURN(auto keys, store.List("refs/"));
  std::vector<std::pair<std::string, Digest>> out;
  for (const std::string& key : keys) {
    ASSIGN_OR_RETURN(Digest id, ReadRef(store, key));
    out.emplace_back(key.substr(5), id);
  }
  return out;
}

Result<std::vector<Digest>> ListImages(chunkstore::ObjectStore& store) {
  ASSIGN_OR_RETURN(auto keys, store.List("images/"));
  std::vector<Digest> out;
  for (const std::string& key : keys) {
    if (auto id = Digest::FromHex(key.substr(7))) out.push_back(*id);
  }
  return out;
}

Result<Digest> ResolveImage(chunkstore::ObjectStore& store, const std::string& name_or_id) {
  if (auto id = Digest::FromHex(name_or_id)) return *id;
  if (IsValidRefName(name_or_id)) {
    auto ref = ReadRef(store, "refs/" + name_or_id);
    if (ref.ok() || ref.status().code() != StatusCode::kNotFound) return ref;
  }
  bool hex = name_or_id.size() >= 8 &&
             name_or_id.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (hex) {
    ASSIGN_OR_RETURN(auto ids, ListImages(store));
    std::vector<Digest> matches;
    for (const Digest& id : ids) {
      if (id.Hex().rfind(name_or_id, 0) == 0) matches.push_back(id);
    }
    if (matches.size() == 1) return matches[0];
    if (matches.size() > 1) {
      return InvalidArgumentError("image id prefix '" + name_or_id + "' is ambiguous");
    }
  }
  return NotFoundError("no image named '" + name_or_id + "' in " + store.Url());
}

namespace {

// The verified bytes stored for image `id` (decompressed if stored as a
// zstd frame): a metadata object or a delta.
Result<std::shared_ptr<const chunkstore::Blob>> FetchImageObject(chunkstore::ObjectStore& store,
                                                                 const Digest& id) {
  auto blob = store.Get(ImageKey(id));
  if (!blob.ok()) return blob.status().Annotate("load image " + id.Short());
  auto stored = (*blob)->bytes();
  if (stored.size() >= 4 && std::memcmp(stored.data(), kZstdMagic, 4) == 0) {
    // Compressed: one frame that must declare its size, at most what a
    // metadata object may be, and decode to exactly that; then it is
    // checked like any object.
    auto size = chunkstore::FrameContentSize(stored);
    if (!size.has_value() || *size > kMaxPlainBytes || *size > 256 * uint64_t{stored.size()} + (1u << 20)) {
      return CorruptionError("image " + id.Hex() + ": compressed metadata object without a valid size");
    }
    std::vector<uint8_t> object;
    Status st = chunkstore::DecompressFrame(stored, static_cast<uint32_t>(*size), id, &object);
    if (!st.ok()) return CorruptionError("image " + id.Hex() + ": compressed metadata object does not decode");
    *blob = chunkstore::MakeBlob(std::move(object));
  }
  if (Sha256((*blob)->bytes()) != id) {
    return CorruptionError("image " + id.Hex() + ": metadata object does not match its id");
  }
  return *blob;
}

}  // namespace

Result<std::unique_ptr<ImageReader>> LoadImage(chunkstore::ObjectStore& store, const Digest& id,
                                               const std::function<void(const Digest&)>& on_delta_base) {
  ASSIGN_OR_RETURN(auto blob, FetchImageObject(store, id));
  std::optional<Digest> delta_base;
  if (IsDelta(blob->bytes())) {
    // A delta of a full image (never of another delta): rebuild the object
    // from the base's, then open it like any other.
    auto base_id = DeltaBase(blob->bytes());
    if (!base_id.ok()) return base_id.status().Annotate("image " + id.Hex());
    if (on_delta_base) on_delta_base(*base_id);
    auto base = FetchImageObject(store, *base_id);
    if (!base.ok()) return base.status().Annotate("base image of " + id.Short());
    if (IsDelta((*base)->bytes())) {
      return CorruptionError("image " + id.Hex() + ": a delta of " + base_id->Hex() +
                             ", itself a delta (a delta's base must be a full image)");
    }
    auto object = ApplyDelta(blob->bytes(), (*base)->bytes());
    if (!object.ok()) return object.status().Annotate("image " + id.Hex());
    blob = chunkstore::MakeBlob(std::move(*object));
    delta_base = *base_id;
  }
  auto reader = ImageReader::Open(blob, delta_base);
  if (!reader.ok()) return reader.status().Annotate("image " + id.Hex());
  return reader;
}

}  // namespace ferry::fs
