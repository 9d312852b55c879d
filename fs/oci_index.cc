#include "fs/oci_index.h"

#include <nlohmann/json.hpp>

namespace ferry::fs {

namespace {

using json = nlohmann::json;

constexpr std::string_view kSha256Prefix = "sha256:";
constexpr int kSourceVersion = 1;
constexpr size_t kMaxSourceBytes = 4 << 20;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

std::optional<Digest> ParseOciDigest(const std::string& s) {
  if (s.rfind(kSha256Prefix, 0) != 0) return std::nullopt;
  std::string_view hex(s.data() + kSha256Prefix.size(), s.size() - kSha256Prefix.size());
  // Digest::FromHex takes upper case too; OCI digests are lower case.
  if (hex.find_first_not_of("0123456789abcdef") != std::string_view::npos) return std::nullopt;
  return Digest::FromHex(hex);
}

std::string OciDigest(const Digest& d) { return std::string(kSha256Prefix) + d.Hex(); }

std::string ChainId(const std::string& parent, const std::string& diff_id) {
  if (parent.empty()) return diff_id;
  return OciDigest(Sha256(parent + " " + diff_id));
}

std::string ChainKey(const Digest& chain_id) { return "chains/sha256/" + chain_id.Hex(); }
std::string SourceKey(const Digest& image) { return "sources/" + image.Hex(); }

Status PutChain(chunkstore::ObjectStore& store, const Digest& chain_id, const Digest& image) {
  const std::string text = image.Hex() + "\n";
  return store.Put(ChainKey(chain_id), AsBytes(text));
}

Result<Digest> LookupChain(chunkstore::ObjectStore& store, const Digest& chain_id) {
  auto blob = store.Get(ChainKey(chain_id));
  if (!blob.ok()) {
    if (blob.status().code() == StatusCode::kNotFound) {
      return NotFoundError("no image for chain ID " + OciDigest(chain_id) + " in " + store.Url());
    }
    return blob.status();
  }
  std::string_view text = (*blob)->view();
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  auto id = Digest::FromHex(text);
  if (!id) return CorruptionError(ChainKey(chain_id) + " does not hold an image id");
  return *id;
}

std::string EncodeSource(const OciSource& s) {
  json layers = json::array();
  for (const OciLayerSource& l : s.layers) {
    layers.push_back({{"digest", l.digest},
                      {"mediaType", l.media_type},
                      {"size", l.size},
                      {"diffID", l.diff_id},
                      {"chainID", l.chain_id},
                      {"image", l.image.Hex()}});
  }
  json j = {{"ferryOciSource", kSourceVersion},
            {"reference", s.reference},
            {"manifest", s.manifest_digest},
            {"config", s.config_digest},
            {"platform", s.platform},
            {"layers", std::move(layers)}};
  return j.dump(1) + "\n";
}

Result<OciSource> DecodeSource(std::string_view text) {
  auto bad = [](const std::string& what) { return CorruptionError("OCI source record: " + what); };
  if (text.size() > kMaxSourceBytes) return bad("larger than 4 MiB");
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  auto str = [&](const json& o, const char* key) -> std::optional<std::string> {
    auto it = o.find(key);
    if (it == o.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  auto version = j.find("ferryOciSource");
  if (version == j.end() || !version->is_number_integer() || *version != kSourceVersion) {
    return bad("unknown version");
  }
  OciSource s;
  auto reference = str(j, "reference"), manifest = str(j, "manifest"), config = str(j, "config"),
       platform = str(j, "platform");
  if (!reference || !manifest || !config || !platform) return bad("a field is missing");
  s.reference = *reference;
  s.manifest_digest = *manifest;
  s.config_digest = *config;
  s.platform = *platform;
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) return bad("no layers");
  for (const json& l : *layers) {
    if (!l.is_object()) return bad("a layer is not an object");
    OciLayerSource out;
    auto digest = str(l, "digest"), media = str(l, "mediaType"), diff = str(l, "diffID"),
         chain = str(l, "chainID"), image = str(l, "image");
    auto size = l.find("size");
    if (!digest || !media || !diff || !chain || !image || size == l.end() || !size->is_number_unsigned()) {
      return bad("layer " + std::to_string(s.layers.size()) + ": a field is missing");
    }
    auto id = Digest::FromHex(*image);
    if (!id || !ParseOciDigest(*diff) || !ParseOciDigest(*chain)) {
      return bad("layer " + std::to_string(s.layers.size()) + ": a digest is malformed");
    }
    out.digest = *digest;
    out.media_type = *media;
    out.size = size->get<uint64_t>();
    out.diff_id = *diff;
    out.chain_id = *chain;
    out.image = *id;
    s.layers.push_back(std::move(out));
  }
  return s;
}

Status PutSource(chunkstore::ObjectStore& store, const Digest& image, const OciSource& source) {
  return store.Put(SourceKey(image), AsBytes(EncodeSource(source)));
}

Result<std::optional<OciSource>> GetSource(chunkstore::ObjectStore& store, const Digest& image) {
  auto blob = store.Get(SourceKey(image));
  if (!blob.ok()) {
    if (blob.status().code() == StatusCode::kNotFound) return std::optional<OciSource>();
    return blob.status();
  }
  auto s = DecodeSource((*blob)->view());
  if (!s.ok()) return s.status().Annotate(SourceKey(image));
  return std::optional<OciSource>(std::move(*s));
}

}  // namespace ferry::fs
