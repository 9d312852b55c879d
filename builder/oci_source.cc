#include "builder/oci_source.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "chunkstore/digest.h"

namespace ferry::builder {

namespace stdfs = std::filesystem;
using json = nlohmann::json;

// Removes its temporary directory (and what was copied there) when the
// last OciImage holding it goes.
class ScopedSpool {
 public:
  explicit ScopedSpool(std::string dir) : dir_(std::move(dir)) {}
  ~ScopedSpool() {
    std::error_code ec;
    stdfs::remove_all(dir_, ec);
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

namespace {

constexpr const char* kOciIndex = "application/vnd.oci.image.index.v1+json";
constexpr const char* kDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr const char* kOciConfig = "application/vnd.oci.image.config.v1+json";
constexpr const char* kDockerConfig = "application/vnd.docker.container.image.v1+json";
constexpr const char* kRefNameAnnotation = "org.opencontainers.image.ref.name";

bool IsLayerMediaType(const std::string& t) {
  static const char* const kKnown[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  };
  for (const char* k : kKnown) {
    if (t == k) return true;
  }
  return false;
}

std::string ArchiveError(struct archive* a) {
  const char* msg = archive_error_string(a);
  return msg ? msg : "unknown libarchive error";
}

struct ArchiveReadCloser {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<struct archive, ArchiveReadCloser>;

struct FdCloser {
  int fd = -1;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

// A whole small file, refused past `max` bytes.
Result<std::string> ReadSmall(const std::string& path, uint64_t max, const std::string& what) {
  FdCloser f{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return ErrnoError(what + " " + path);
  struct stat st;
  if (fstat(f.fd, &st) != 0) return ErrnoError(what + " " + path);
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(what + " " + path + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > max) {
    return InvalidArgumentError(what + " " + path + " is " + std::to_string(st.st_size) +
                                " bytes, more than the " + std::to_string(max) + " allowed");
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = read(f.fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("reading " + what + " " + path);
    if (n == 0) return CorruptionError(what + " " + path + " shrank while read");
    done += static_cast<size_t>(n);
  }
  return out;
}

Result<json> ParseJson(const std::string& text, const std::string& what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return CorruptionError(what + " is not valid JSON");
  if (!j.is_object() && !j.is_array()) return CorruptionError(what + " is not a JSON object");
  return j;
}

std::optional<std::string> Str(const json& o, const char* key) {
  if (!o.is_object()) return std::nullopt;
  auto it = o.find(key);
  if (it == o.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// A content descriptor (OCI image spec): media type, digest, size.
struct Descriptor {
  std::string media_type;
  std::string digest;
  Digest id;
  uint64_t size = 0;
  json raw;
};

Result<Descriptor> ReadDescriptor(const json& d, const std::string& where) {
  if (!d.is_object()) return CorruptionError(where + ": a descriptor is not an object");
  Descriptor out;
  auto media = Str(d, "mediaType");
  auto digest = Str(d, "digest");
  auto size = d.find("size");
  if (!digest) return CorruptionError(where + ": a descriptor has no digest");
  auto id = fs::ParseOciDigest(*digest);
  if (!id) {
    return InvalidArgumentError(where + ": digest '" + *digest +
                                "' is not a sha256 digest (the only algorithm ferry accepts)");
  }
  if (size == d.end() || !size->is_number_unsigned()) {
    return CorruptionError(where + ": descriptor " + *digest + " has no valid size");
  }
  out.media_type = media.value_or("");
  out.digest = *digest;
  out.id = *id;
  out.size = size->get<uint64_t>();
  out.raw = d;
  return out;
}

// `bytes` are the blob `d` names: its size and its digest.
Status CheckBlob(const std::string& bytes, const Descriptor& d, const std::string& what) {
  if (bytes.size() != d.size) {
    return CorruptionError(what + " " + d.digest + " is " + std::to_string(bytes.size()) +
                           " bytes, its descriptor says " + std::to_string(d.size));
  }
  if (Digest got = Sha256(bytes); got != d.id) {
    return CorruptionError(what + " " + d.digest + " does not match its digest (content is sha256:" +
                           got.Hex() + ")");
  }
  return Status::Ok();
}

// A small blob (manifest, index, config) read whole and checked against
// its descriptor.
Result<std::string> ReadVerifiedJsonBlob(const std::string& path, const Descriptor& d, uint64_t max,
                                         const std::string& what) {
  if (d.size > max) {
    return InvalidArgumentError(what + " " + d.digest + " is " + std::to_string(d.size) +
                                " bytes, more than the " + std::to_string(max) + " allowed");
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadSmall(path, max, what + " " + d.digest));
  RETURN_IF_ERROR(CheckBlob(bytes, d, what));
  return bytes;
}

// One pass over a layer blob: the SHA-256 of its bytes as stored and of
// its uncompressed tar (libarchive's filters, raw format), and the
// compression found.
struct LayerDigests {
  Digest stored, uncompressed;
  uint64_t stored_bytes = 0;
  std::string compression;  // "", "gzip", "zstd", ...
};

// Reads a blob for libarchive, hashing what it reads, refusing more than
// `max` bytes, and (copy_fd >= 0) writing a copy of every byte.
struct HashingReader {
  int fd = -1;
  int copy_fd = -1;
  uint64_t max = 0;
  Sha256Stream sha;
  uint64_t bytes = 0;
  std::vector<uint8_t> buf = std::vector<uint8_t>(1 << 20);
  int err = 0;
  bool too_long = false;
};

la_ssize_t HashingRead(struct archive*, void* opaque, const void** out) {
  auto* r = static_cast<HashingReader*>(opaque);
  for (;;) {
    ssize_t n = read(r->fd, r->buf.data(), r->buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r->err = errno;
      return -1;
    }
    if (r->bytes + static_cast<uint64_t>(n) > r->max) {
      r->too_long = true;
      return -1;
    }
    r->sha.Update({r->buf.data(), static_cast<size_t>(n)});
    r->bytes += static_cast<uint64_t>(n);
    for (ssize_t done = 0; r->copy_fd >= 0 && done < n;) {
      ssize_t w = write(r->copy_fd, r->buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        r->err = errno;
        return -1;
      }
      done += w;
    }
    *out = r->buf.data();
    return n;
  }
}

// The blob at `path` must be a regular file of `want_size` bytes, if given.
// With `copy_to`, what is hashed is also copied there: the copy, not the
// file (which its owner may change afterwards), is what gets imported.
Result<LayerDigests> DigestLayer(const std::string& path, const std::string& what,
                                 std::optional<uint64_t> want_size, const std::string& copy_to) {
  HashingReader r;
  FdCloser f{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return ErrnoError(what + " " + path);
  struct stat st;
  if (fstat(f.fd, &st) != 0) return ErrnoError(what + " " + path);
  if (!S_ISREG(st.st_mode)) return InvalidArgumentError(what + ": " + path + " is not a regular file");
  if (want_size && static_cast<uint64_t>(st.st_size) != *want_size) {
    return CorruptionError(what + " is " + std::to_string(st.st_size) + " bytes, its descriptor says " +
                           std::to_string(*want_size));
  }
  r.fd = f.fd;
  r.max = static_cast<uint64_t>(st.st_size);
  FdCloser copy{-1};
  if (!copy_to.empty()) {
    copy.fd = open(copy_to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (copy.fd < 0) return ErrnoError("creating " + copy_to);
    r.copy_fd = copy.fd;
  }
  auto read_error = [&](struct archive* a) {
    if (r.too_long) return CorruptionError(what + ": " + path + " grew while it was read");
    if (r.err) return ErrnoError("reading " + what, r.err);
    return CorruptionError(what + ": " + ArchiveError(a));
  };
  ArchivePtr a(archive_read_new());
  if (!a) return InternalError("libarchive: out of memory");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_raw(a.get());
  if (archive_read_open(a.get(), &r, nullptr, HashingRead, nullptr) != ARCHIVE_OK) return read_error(a.get());
  struct archive_entry* e;
  int rc = archive_read_next_header(a.get(), &e);
  if (rc != ARCHIVE_OK) return read_error(a.get());
  LayerDigests out;
  Sha256Stream tar;
  std::vector<uint8_t> buf(1 << 20);
  for (;;) {
    la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (r.too_long || r.err) return read_error(a.get());
      return CorruptionError(what + ": cannot decompress: " + ArchiveError(a.get()));
    }
    tar.Update({buf.data(), static_cast<size_t>(n)});
  }
  // Whatever the decompressor did not need still belongs to the blob.
  while (true) {
    const void* ignored;
    la_ssize_t n = HashingRead(a.get(), &r, &ignored);
    if (n < 0) return read_error(a.get());
    if (n == 0) break;
  }
  if (archive_filter_count(a.get()) > 1) {
    const char* name = archive_filter_name(a.get(), 0);
    out.compression = name ? name : "?";
  }
  out.uncompressed = tar.Finish();
  out.stored = r.sha.Finish();
  out.stored_bytes = r.bytes;
  return out;
}

std::string JoinArchivePath(const std::string& dir, const std::string& rel) {
  std::vector<std::string> parts;
  auto push = [&](const std::string& p) {
    size_t start = 0;
    while (start <= p.size()) {
      size_t end = p.find('/', start);
      if (end == std::string::npos) end = p.size();
      std::string c = p.substr(start, end - start);
      if (c == "..") {
        if (!parts.empty()) parts.pop_back();
      } else if (!c.empty() && c != ".") {
        parts.push_back(c);
      }
      start = end + 1;
    }
  };
  if (!rel.empty() && rel[0] != '/') push(dir);
  push(rel);
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

std::string NormalizeArchivePath(const std::string& p) { return JoinArchivePath("", p); }

// Splits "PREFIX:PATH[:TAG]": the longest PATH... that exists (a path may
// hold colons), then the rest as the tag.
Result<std::pair<std::string, std::string>> SplitPathAndTag(const std::string& rest,
                                                            const std::string& reference, bool dir) {
  for (size_t pos = rest.size();;) {
    std::string path = rest.substr(0, pos);
    struct stat st;
    if (!path.empty() && stat(path.c_str(), &st) == 0 && (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode))) {
      return std::make_pair(path, pos < rest.size() ? rest.substr(pos + 1) : std::string());
    }
    if (pos == 0) break;
    size_t colon = rest.rfind(':', pos - 1);
    if (colon == std::string::npos) break;
    pos = colon;
  }
  return NotFoundError(reference + ": no such " + std::string(dir ? "directory" : "file") + " '" +
                       rest + "'");
}

bool PlatformMatches(const json& p, const OciPlatform& want) {
  auto os = Str(p, "os"), arch = Str(p, "architecture"), variant = Str(p, "variant");
  if (!os || !arch || *os != want.os || *arch != want.architecture) return false;
  return want.variant.empty() || variant.value_or("") == want.variant;
}

std::string PlatformOf(const json& p) {
  std::string s = Str(p, "os").value_or("?") + "/" + Str(p, "architecture").value_or("?");
  if (auto v = Str(p, "variant"); v && !v->empty()) s += "/" + *v;
  return s;
}

// The config's rootfs.diff_ids and platform; as many diff IDs as layers.
struct ConfigFacts {
  std::vector<std::string> diff_ids;
  std::string platform;
};

Result<ConfigFacts> ReadConfig(const std::string& text, const std::string& what, size_t layers) {
  ASSIGN_OR_RETURN(json c, ParseJson(text, what));
  ConfigFacts out;
  out.platform = PlatformOf(c);
  auto rootfs = c.find("rootfs");
  if (!c.is_object() || rootfs == c.end() || !rootfs->is_object() || Str(*rootfs, "type") != "layers") {
    return CorruptionError(what + " has no rootfs of type \"layers\"");
  }
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) return CorruptionError(what + " has no rootfs.diff_ids");
  for (const json& d : *ids) {
    if (!d.is_string() || !fs::ParseOciDigest(d.get<std::string>())) {
      return CorruptionError(what + ": a diff ID is not a sha256 digest");
    }
    out.diff_ids.push_back(d.get<std::string>());
  }
  if (out.diff_ids.size() != layers) {
    return CorruptionError(what + " lists " + std::to_string(out.diff_ids.size()) +
                           " diff IDs for " + std::to_string(layers) + " layers");
  }
  return out;
}

// Checks a layer blob against its digest, size and diff ID and fills in
// its source record (chain ID over `parent_chain`).
Status VerifyLayer(OciLayer& layer, const std::optional<Digest>& want_digest,
                   std::optional<uint64_t> want_size, const std::string& diff_id,
                   const std::string& parent_chain, const std::string& what,
                   const std::string& copy_to = "") {
  ASSIGN_OR_RETURN(LayerDigests d, DigestLayer(layer.path, what, want_size, copy_to));
  if (!copy_to.empty()) layer.path = copy_to;
  if (want_size && d.stored_bytes != *want_size) {
    return CorruptionError(what + " is " + std::to_string(d.stored_bytes) +
                           " bytes, its descriptor says " + std::to_string(*want_size));
  }
  if (want_digest && d.stored != *want_digest) {
    return CorruptionError(what + " does not match its digest (content is sha256:" + d.stored.Hex() + ")");
  }
  if (fs::OciDigest(d.uncompressed) != diff_id) {
    return CorruptionError(what + ": its uncompressed tar is sha256:" + d.uncompressed.Hex() +
                           ", the config's diff ID says " + diff_id);
  }
  layer.source.digest = fs::OciDigest(d.stored);
  layer.source.size = d.stored_bytes;
  layer.source.diff_id = diff_id;
  layer.source.chain_id = fs::ChainId(parent_chain, diff_id);
  if (layer.source.media_type.empty()) {
    layer.source.media_type = "application/vnd.oci.image.layer.v1.tar";
    if (!d.compression.empty()) layer.source.media_type += "+" + d.compression;
  }
  return Status::Ok();
}

// Where the blobs of a layout or a registry come from: a small JSON blob
// read whole and verified, and a layer blob as a local file (not yet
// verified: ReadImageFrom checks it).
using JsonBlobFn = std::function<Result<std::string>(const Descriptor&, uint64_t, const std::string&)>;
using LayerFileFn = std::function<Result<std::string>(const Descriptor&)>;

// From the descriptor `top` (a manifest, or an image index to choose in)
// to a verified image: manifest, config, layers.
// With `copy_dir`, each layer is copied there as it is verified and the
// copy imported (for blobs in a directory that others may write to).
Result<OciImage> ReadImageFrom(const std::string& reference, Descriptor d, const OciPlatform& platform,
                               OciImage out, const JsonBlobFn& json_blob, const LayerFileFn& layer_file,
                               const std::string& copy_dir = "") {
  // Through image indexes (at most two deep) to a manifest for `platform`.
  for (int depth = 0;; ++depth) {
    if (d.media_type == kOciManifest || d.media_type == kDockerManifest) break;
    if (d.media_type != kOciIndex && d.media_type != kDockerList) {
      return InvalidArgumentError(reference + ": " + d.digest + " has media type '" + d.media_type +
                                  "', not an image manifest or index");
    }
    if (depth == 2) return InvalidArgumentError(reference + ": image indexes nested too deep at " + d.digest);
    ASSIGN_OR_RETURN(std::string text, json_blob(d, kMaxOciJsonBytes, "image index"));
    ASSIGN_OR_RETURN(json idx, ParseJson(text, "image index " + d.digest));
    auto list = idx.find("manifests");
    if (!idx.is_object() || list == idx.end() || !list->is_array()) {
      return CorruptionError("image index " + d.digest + " lists no manifests");
    }
    std::optional<Descriptor> match;
    std::string have;
    for (const json& m : *list) {
      ASSIGN_OR_RETURN(Descriptor md, ReadDescriptor(m, "image index " + d.digest));
      auto p = m.find("platform");
      if (p == m.end()) continue;
      have += (have.empty() ? "" : ", ") + PlatformOf(*p);
      if (!match && PlatformMatches(*p, platform)) match = md;
    }
    if (!match) {
      return NotFoundError(reference + ": image index " + d.digest + " has no manifest for " +
                           platform.ToString() + " (it has: " + (have.empty() ? "none" : have) +
                           "); choose one with --platform");
    }
    d = *match;
  }
  ASSIGN_OR_RETURN(std::string mtext, json_blob(d, kMaxOciJsonBytes, "manifest"));
  ASSIGN_OR_RETURN(json manifest, ParseJson(mtext, "manifest " + d.digest));
  out.source.reference = reference;
  out.source.manifest_digest = d.digest;
  auto config = manifest.find("config");
  auto layers = manifest.find("layers");
  if (!manifest.is_object() || config == manifest.end() || layers == manifest.end() || !layers->is_array()) {
    return CorruptionError("manifest " + d.digest + " has no config or no layers");
  }
  ASSIGN_OR_RETURN(Descriptor cd, ReadDescriptor(*config, "manifest " + d.digest));
  if (cd.media_type != kOciConfig && cd.media_type != kDockerConfig) {
    return InvalidArgumentError("manifest " + d.digest + ": config " + cd.digest + " has media type '" +
                                cd.media_type + "', not an image config");
  }
  if (layers->empty()) return InvalidArgumentError("manifest " + d.digest + " has no layers");
  if (layers->size() > kMaxLayers) {
    return InvalidArgumentError("manifest " + d.digest + " has " + std::to_string(layers->size()) +
                                " layers, more than the " + std::to_string(kMaxLayers) + " allowed");
  }
  // Every descriptor is checked before any layer blob is fetched.
  std::vector<Descriptor> lds;
  for (size_t i = 0; i < layers->size(); ++i) {
    const std::string where = "manifest " + d.digest + ", layer " + std::to_string(i);
    ASSIGN_OR_RETURN(Descriptor ld, ReadDescriptor((*layers)[i], where));
    if (!IsLayerMediaType(ld.media_type)) {
      return InvalidArgumentError(where + ": " + ld.digest + " has unknown media type '" + ld.media_type + "'");
    }
    lds.push_back(ld);
  }
  ASSIGN_OR_RETURN(std::string ctext, json_blob(cd, kMaxOciConfigBytes, "config"));
  ASSIGN_OR_RETURN(ConfigFacts facts, ReadConfig(ctext, "config " + cd.digest, layers->size()));
  out.source.config_digest = cd.digest;
  out.source.platform = facts.platform;
  std::string chain;
  for (size_t i = 0; i < lds.size(); ++i) {
    OciLayer layer;
    ASSIGN_OR_RETURN(layer.path, layer_file(lds[i]));
    layer.source.media_type = lds[i].media_type;
    RETURN_IF_ERROR(VerifyLayer(layer, lds[i].id, lds[i].size, facts.diff_ids[i], chain, "layer " + lds[i].digest,
                                copy_dir.empty() ? "" : copy_dir + "/layer-" + std::to_string(i)));
    chain = layer.source.chain_id;
    out.layers.push_back(std::move(layer));
  }
  return out;
}

// --------------------------------------------------------- image layout ---

Result<OciImage> OpenLayout(const std::string& reference, const std::string& rest,
                            const OciPlatform& platform, const std::string& spool_parent) {
  ASSIGN_OR_RETURN(auto split, SplitPathAndTag(rest, reference, /*dir=*/true));
  const std::string dir = split.first, tag = split.second;
  ASSIGN_OR_RETURN(std::string layout_text, ReadSmall(dir + "/oci-layout", 4096, "OCI layout file"));
  ASSIGN_OR_RETURN(json layout, ParseJson(layout_text, dir + "/oci-layout"));
  if (!Str(layout, "imageLayoutVersion")) {
    return CorruptionError(dir + "/oci-layout has no imageLayoutVersion");
  }
  ASSIGN_OR_RETURN(std::string index_text, ReadSmall(dir + "/index.json", kMaxOciJsonBytes, "OCI index"));
  ASSIGN_OR_RETURN(json index, ParseJson(index_text, dir + "/index.json"));
  auto blob = [&](const Descriptor& d) { return dir + "/blobs/sha256/" + d.id.Hex(); };

  // The index.json entry: by its ref name, or the only one.
  auto manifests = index.find("manifests");
  if (!index.is_object() || manifests == index.end() || !manifests->is_array() || manifests->empty()) {
    return CorruptionError(dir + "/index.json lists no manifests");
  }
  std::optional<Descriptor> chosen;
  std::vector<std::string> names;
  for (const json& m : *manifests) {
    ASSIGN_OR_RETURN(Descriptor d, ReadDescriptor(m, dir + "/index.json"));
    std::string name;
    if (auto a = m.find("annotations"); a != m.end()) name = Str(*a, kRefNameAnnotation).value_or("");
    names.push_back(name.empty() ? d.digest : name);
    if ((tag.empty() && manifests->size() == 1) || (!tag.empty() && (name == tag || d.digest == tag))) {
      chosen = d;
    }
  }
  if (!chosen) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    return NotFoundError(reference + ": " +
                         (tag.empty() ? "the layout holds several images, name one as oci:DIR:TAG"
                                      : "no image named '" + tag + "'") +
                         " (it holds: " + list + ")");
  }
  OciImage out;
  if (!tag.empty()) out.repo_tags.push_back(tag);

  // The layers are imported from copies made as they are verified: the
  // layout's own files may change after they were checked.
  std::string tmpl = spool_parent + "/ferry-oci-XXXXXX";
  if (!mkdtemp(tmpl.data())) return ErrnoError("creating a temporary directory in " + spool_parent);
  out.spool = std::make_shared<ScopedSpool>(tmpl);
  return ReadImageFrom(reference, *chosen, platform, std::move(out),
                       [&](const Descriptor& d, uint64_t max, const std::string& what) {
                         return ReadVerifiedJsonBlob(blob(d), d, max, what);
                       },
                       [&](const Descriptor& d) -> Result<std::string> { return blob(d); }, tmpl);
}

// ------------------------------------------------------- docker-archive ---

// The regular files and symlinks of a tar, by normalized name.
struct ArchiveIndex {
  std::map<std::string, std::string> symlinks;  // name -> target as written
  std::map<std::string, int64_t> files;         // name -> size
};

Result<ArchivePtr> OpenTar(const std::string& path) {
  ArchivePtr a(archive_read_new());
  if (!a) return InternalError("libarchive: out of memory");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 20) != ARCHIVE_OK) {
    return InvalidArgumentError("cannot open docker archive " + path + ": " + ArchiveError(a.get()));
  }
  return a;
}

// Calls `fn` with each entry of the tar `file` (and the archive, to read
// the entry's data), in order; stops at the first error `fn` returns.
Status ForEachEntry(const std::string& file,
                    const std::function<Status(struct archive*, struct archive_entry*, const std::string&)>& fn) {
  ASSIGN_OR_RETURN(ArchivePtr a, OpenTar(file));
  struct archive_entry* e;
  for (;;) {
    int rc = archive_read_next_header(a.get(), &e);
    if (rc == ARCHIVE_EOF) return Status::Ok();
    if (rc < ARCHIVE_WARN) return CorruptionError("docker archive " + file + ": " + ArchiveError(a.get()));
    const char* p = archive_entry_pathname(e);
    if (!p) continue;
    RETURN_IF_ERROR(fn(a.get(), e, NormalizeArchivePath(p)));
  }
}

// A name as the archive has it, through its symlinks (at most 8).
Result<std::string> ResolveInArchive(const ArchiveIndex& idx, const std::string& name,
                                     const std::string& archive) {
  std::string n = NormalizeArchivePath(name);
  for (int hops = 0; hops < 8; ++hops) {
    if (idx.files.count(n)) return n;
    auto s = idx.symlinks.find(n);
    if (s == idx.symlinks.end()) break;
    std::string parent = n.find('/') == std::string::npos ? "" : n.substr(0, n.rfind('/'));
    n = JoinArchivePath(parent, s->second);
  }
  return NotFoundError("docker archive " + archive + " has no file '" + name + "'");
}

Result<OciImage> OpenDockerArchive(const std::string& reference, const std::string& rest,
                                   const std::string& spool_parent) {
  ASSIGN_OR_RETURN(auto split, SplitPathAndTag(rest, reference, /*dir=*/false));
  const std::string file = split.first, tag = split.second;
  // Pass 1: the index of names, and manifest.json.
  ArchiveIndex idx;
  std::string manifest_text;
  RETURN_IF_ERROR(ForEachEntry(file, [&](struct archive* a, struct archive_entry* e, const std::string& name) {
    if (archive_entry_filetype(e) == AE_IFLNK && archive_entry_symlink(e)) {
      idx.symlinks[name] = archive_entry_symlink(e);
    } else if (archive_entry_filetype(e) == AE_IFREG) {
      idx.files[name] = archive_entry_size(e);
      if (name == "manifest.json") {
        if (archive_entry_size(e) > static_cast<int64_t>(kMaxOciJsonBytes)) {
          return InvalidArgumentError("docker archive " + file + ": manifest.json is larger than " +
                                      std::to_string(kMaxOciJsonBytes) + " bytes");
        }
        manifest_text.resize(static_cast<size_t>(archive_entry_size(e)));
        la_ssize_t n = archive_read_data(a, manifest_text.data(), manifest_text.size());
        if (n != static_cast<la_ssize_t>(manifest_text.size())) {
          return CorruptionError("docker archive " + file + ": manifest.json cut short");
        }
      }
    }
    return Status::Ok();
  }));
  if (!idx.files.count("manifest.json")) {
    return InvalidArgumentError("docker archive " + file + " has no manifest.json (not `docker save` output?)");
  }
  ASSIGN_OR_RETURN(json manifest, ParseJson(manifest_text, "docker archive " + file + ": manifest.json"));
  if (!manifest.is_array() || manifest.empty()) {
    return CorruptionError("docker archive " + file + ": manifest.json lists no image");
  }
  const json* chosen = nullptr;
  std::string have;
  for (const json& m : manifest) {
    std::vector<std::string> tags;
    if (auto t = m.find("RepoTags"); m.is_object() && t != m.end() && t->is_array()) {
      for (const json& x : *t) {
        if (x.is_string()) tags.push_back(x.get<std::string>());
      }
    }
    for (const auto& t : tags) have += (have.empty() ? "" : ", ") + t;
    // As docker names them: "example/x:t" is also "docker.io/example/x:t",
    // "x:t" also "docker.io/library/x:t".
    auto names_tag = [&](const std::string& t) {
      return t == tag || t == "docker.io/" + tag || t == "docker.io/library/" + tag;
    };
    bool match = tag.empty() ? manifest.size() == 1 : std::any_of(tags.begin(), tags.end(), names_tag);
    if (match && !chosen) chosen = &m;
  }
  if (!chosen) {
    return NotFoundError(reference + ": " +
                         (tag.empty() ? "the archive holds several images, name one as docker-archive:FILE:TAG"
                                      : "no image tagged '" + tag + "'") +
                         " (it holds: " + (have.empty() ? "untagged images" : have) + ")");
  }
  auto config_name = Str(*chosen, "Config");
  auto layer_names = chosen->find("Layers");
  if (!config_name || layer_names == chosen->end() || !layer_names->is_array()) {
    return CorruptionError("docker archive " + file + ": manifest.json entry without Config or Layers");
  }
  if (layer_names->empty()) return InvalidArgumentError("docker archive " + file + ": the image has no layers");
  if (layer_names->size() > kMaxLayers) {
    return InvalidArgumentError("docker archive " + file + ": the image has " +
                                std::to_string(layer_names->size()) + " layers, more than the " +
                                std::to_string(kMaxLayers) + " allowed");
  }
  // What to copy out: the config and the layers, each once, by name.
  std::map<std::string, std::string> wanted;  // archive name -> spool path
  ASSIGN_OR_RETURN(std::string config_file, ResolveInArchive(idx, *config_name, file));
  std::vector<std::string> layer_files;
  for (const json& l : *layer_names) {
    if (!l.is_string()) return CorruptionError("docker archive " + file + ": a layer name is not a string");
    ASSIGN_OR_RETURN(std::string f, ResolveInArchive(idx, l.get<std::string>(), file));
    layer_files.push_back(f);
  }
  if (idx.files[config_file] > static_cast<int64_t>(kMaxOciConfigBytes)) {
    return InvalidArgumentError("docker archive " + file + ": config " + config_file + " is larger than " +
                                std::to_string(kMaxOciConfigBytes) + " bytes");
  }
  std::string tmpl = spool_parent + "/ferry-oci-XXXXXX";
  if (!mkdtemp(tmpl.data())) return ErrnoError("creating a temporary directory in " + spool_parent);
  OciImage out;
  out.spool = std::make_shared<ScopedSpool>(tmpl);
  wanted[config_file] = tmpl + "/config";
  for (size_t i = 0; i < layer_files.size(); ++i) {
    wanted.emplace(layer_files[i], tmpl + "/layer-" + std::to_string(i));
  }
  // Pass 2: copy those out.
  RETURN_IF_ERROR(ForEachEntry(file, [&](struct archive* a, struct archive_entry* e, const std::string& name) {
    if (archive_entry_filetype(e) != AE_IFREG) return Status::Ok();
    auto w = wanted.find(name);
    if (w == wanted.end()) return Status::Ok();
    FdCloser f{open(w->second.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
    if (f.fd < 0) return ErrnoError("creating " + w->second);
    if (archive_read_data_into_fd(a, f.fd) != ARCHIVE_OK) {
      return CorruptionError("docker archive " + file + ", entry " + w->first + ": " + ArchiveError(a));
    }
    return Status::Ok();
  }));
  ASSIGN_OR_RETURN(std::string ctext, ReadSmall(wanted[config_file], kMaxOciConfigBytes, "config"));
  const Digest config_id = Sha256(ctext);
  // A config named by its digest (<hex>.json, blobs/sha256/<hex>) must match it.
  std::string base = config_file.substr(config_file.rfind('/') == std::string::npos ? 0 : config_file.rfind('/') + 1);
  if (base.size() >= 64) {
    if (auto named = Digest::FromHex(base.substr(0, 64)); named && *named != config_id) {
      return CorruptionError("docker archive " + file + ": config " + config_file +
                             " does not match the digest in its name (content is sha256:" + config_id.Hex() + ")");
    }
  }
  ASSIGN_OR_RETURN(ConfigFacts facts, ReadConfig(ctext, "config " + config_file, layer_files.size()));
  out.source.reference = reference;
  out.source.config_digest = fs::OciDigest(config_id);
  out.source.platform = facts.platform;
  if (auto t = chosen->find("RepoTags"); t != chosen->end() && t->is_array()) {
    for (const json& x : *t) {
      if (x.is_string()) out.repo_tags.push_back(x.get<std::string>());
    }
  }
  std::string chain;
  for (size_t i = 0; i < layer_files.size(); ++i) {
    OciLayer layer;
    layer.path = wanted[layer_files[i]];
    // A layer named by its digest (blobs/sha256/<hex>) must match it.
    std::optional<Digest> named;
    if (layer_files[i].rfind("blobs/sha256/", 0) == 0) named = Digest::FromHex(layer_files[i].substr(13));
    RETURN_IF_ERROR(VerifyLayer(layer, named, std::nullopt, facts.diff_ids[i], chain,
                                "docker archive " + file + ", layer " + layer_files[i]));
    chain = layer.source.chain_id;
    out.layers.push_back(std::move(layer));
  }
  return out;
}

// ------------------------------------------------------------ registry ---

Result<OciImage> OpenRegistry(const std::string& reference, const OciPlatform& platform,
                              const std::string& spool_parent, const RegistryOptions& options) {
  ASSIGN_OR_RETURN(RegistryRef ref, ParseRegistryRef(reference.substr(9)));
  auto client = std::make_shared<RegistryClient>(ref, options);
  // The top manifest or index: verified against the digest asked for, or
  // against the one the registry says (Docker-Content-Digest) if a tag.
  ASSIGN_OR_RETURN(RegistryClient::Manifest top, client->GetManifest(ref.reference, kMaxOciJsonBytes));
  Descriptor d;
  d.id = Sha256(top.body);
  d.digest = fs::OciDigest(d.id);
  d.size = top.body.size();
  d.media_type = top.media_type;
  const std::string& said = ref.reference.rfind("sha256:", 0) == 0 ? ref.reference : top.digest;
  if (!said.empty() && said != d.digest) {
    return CorruptionError(reference + ": the registry's manifest does not match its digest " + said +
                           " (content is " + d.digest + ")");
  }
  std::string tmpl = spool_parent + "/ferry-oci-XXXXXX";
  if (!mkdtemp(tmpl.data())) return ErrnoError("creating a temporary directory in " + spool_parent);
  OciImage out;
  out.spool = std::make_shared<ScopedSpool>(tmpl);
  if (ref.reference.rfind("sha256:", 0) != 0) out.repo_tags.push_back(ref.repository + ":" + ref.reference);
  const std::string top_body = top.body;
  auto json_blob = [&](const Descriptor& want, uint64_t max, const std::string& what) -> Result<std::string> {
    if (want.size > max) {
      return InvalidArgumentError(what + " " + want.digest + " is " + std::to_string(want.size) +
                                  " bytes, more than the " + std::to_string(max) + " allowed");
    }
    std::string body;
    if (want.id == d.id) {
      body = top_body;
    } else if (what == "config") {
      ASSIGN_OR_RETURN(body, client->GetBlob(want.digest, want.size));
    } else {
      ASSIGN_OR_RETURN(auto m, client->GetManifest(want.digest, want.size));
      body = std::move(m.body);
    }
    RETURN_IF_ERROR(CheckBlob(body, want, what));
    return body;
  };
  size_t n = 0;
  auto layer_file = [&](const Descriptor& ld) -> Result<std::string> {
    const std::string path = tmpl + "/layer-" + std::to_string(n++);
    RETURN_IF_ERROR(client->GetBlobToFile(ld.digest, ld.size, path));
    return path;
  };
  return ReadImageFrom(reference, d, platform, std::move(out), json_blob, layer_file);
}

}  // namespace

std::string OciPlatform::ToString() const {
  return os + "/" + architecture + (variant.empty() ? "" : "/" + variant);
}

OciPlatform HostPlatform() {
  struct utsname u;
  std::string m = uname(&u) == 0 ? u.machine : "";
  OciPlatform p{"linux", m, ""};
  if (m == "x86_64") p.architecture = "amd64";
  else if (m == "aarch64" || m == "arm64") p.architecture = "arm64";
  else if (m == "i386" || m == "i686") p.architecture = "386";
  else if (m.rfind("armv7", 0) == 0) p = {"linux", "arm", "v7"};
  else if (m.rfind("armv6", 0) == 0) p = {"linux", "arm", "v6"};
  return p;
}

Result<OciPlatform> ParsePlatform(const std::string& text) {
  OciPlatform p;
  size_t a = text.find('/');
  if (a == std::string::npos || a == 0) {
    return InvalidArgumentError("platform '" + text + "' is not os/architecture[/variant]");
  }
  size_t b = text.find('/', a + 1);
  p.os = text.substr(0, a);
  p.architecture = text.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  if (b != std::string::npos) p.variant = text.substr(b + 1);
  if (p.architecture.empty() || (b != std::string::npos && p.variant.empty()) ||
      p.variant.find('/') != std::string::npos) {
    return InvalidArgumentError("platform '" + text + "' is not os/architecture[/variant]");
  }
  return p;
}

bool IsOciReference(const std::string& s) {
  return s.rfind("oci:", 0) == 0 || s.rfind("docker-archive:", 0) == 0 || s.rfind("docker://", 0) == 0;
}

Result<OciImage> OpenOciSource(const std::string& reference, const OciPlatform& platform,
                               const std::string& spool_parent, const RegistryOptions& registry) {
  if (reference.rfind("oci:", 0) == 0) return OpenLayout(reference, reference.substr(4), platform, spool_parent);
  if (reference.rfind("docker-archive:", 0) == 0) {
    return OpenDockerArchive(reference, reference.substr(15), spool_parent);
  }
  if (reference.rfind("docker://", 0) == 0) return OpenRegistry(reference, platform, spool_parent, registry);
  return InvalidArgumentError("'" + reference + "' is not an OCI reference (oci:DIR[:TAG], docker-archive:FILE[:TAG])");
}

}  // namespace ferry::builder
