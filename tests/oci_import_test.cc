// `ferry build oci:DIR[:TAG]` and `docker-archive:FILE[:TAG]`: images made
// by umoci and skopeo (real OCI tools) imported, each layer prefix an image
// under its chain ID; and layouts made by hand that lie (digests, sizes,
// diff IDs, media types, platforms, layer counts) or carry a hostile layer,
// each refused with an error naming the blob and nothing published.
// Needs root and FUSE (mounts), umoci, skopeo and docker-registry
// (scripts/install-deps.sh); starts docker-registry on loopback itself.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/support/ferry_cli.h"
#include "tests/support/registry.h"
#include "tests/support/fs_util.h"
#include "tests/support/tar_writer.h"
#include "tests/support/tree_compare.h"

namespace ferry::testing {
namespace {

namespace stdfs = std::filesystem;
using json = nlohmann::json;

void WriteFile(const std::string& path, const std::string& data) {
  stdfs::create_directories(stdfs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t CountFiles(const std::string& dir) {
  if (!stdfs::exists(dir)) return 0;
  size_t n = 0;
  for (auto& e : stdfs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

void Sh(const std::string& cmd) {
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
}

void RequireTool(const char* tool) {
  if (std::system((std::string("command -v ") + tool + " >/dev/null").c_str()) == 0) return;
  FAIL(tool << " is not installed (scripts/install-deps.sh installs it)");
}

// sha256sum of `bytes`, by the coreutils tool (not ferry's code).
std::string Sha256sum(const std::string& bytes, const ScopedTempDir& tmp) {
  const std::string f = tmp.path() + "/hash-input";
  WriteFile(f, bytes);
  auto r = Run({"sh", "-c", "sha256sum < '" + f + "' | cut -c1-64"});
  REQUIRE(r.exit_code == 0);
  return "sha256:" + r.out.substr(0, 64);
}

// The blob `digest` of the layout at `dir`, parsed.
json BlobJson(const std::string& dir, const std::string& digest) {
  return json::parse(ReadFile(dir + "/blobs/sha256/" + digest.substr(7)));
}

// ------------------------------------------------------------------ umoci ---

TEST_CASE("OCI images from umoci and skopeo: an image per layer prefix under its chain ID, the tree as umoci unpacks it") {
  RequireTool("umoci");
  RequireTool("skopeo");
  ScopedTempDir tmp("ferry-oci");
  const std::string layout = tmp.path() + "/layout", bundle = tmp.path() + "/bundle";
  const std::string store = tmp.path() + "/store", root = bundle + "/rootfs";
  Sh("umoci init --layout " + layout + " && umoci new --image " + layout + ":t");
  Sh("umoci unpack --image " + layout + ":t " + bundle + " >/dev/null");
  auto repack = [&] { Sh("umoci repack --refresh-bundle --image " + layout + ":t " + bundle); };
  // Layer 1: files, directories, a symlink, a hard link, odd modes and owners.
  Sh("mkdir -p " + root + "/etc/conf.d " + root + "/usr/lib " + root + "/gone/sub && "
     "echo hello > " + root + "/etc/greeting && echo a > " + root + "/etc/conf.d/a && "
     "echo b > " + root + "/etc/conf.d/b && echo x > " + root + "/gone/sub/x && "
     "head -c 300000 /dev/urandom > " + root + "/usr/lib/blob && "
     "ln -s ../etc/greeting " + root + "/usr/lib/link && ln " + root + "/etc/greeting " + root +
     "/etc/hard && chmod 4755 " + root + "/usr/lib/blob && chown 12:34 " + root + "/etc/conf.d/a");
  repack();
  // Layer 2: a file deleted (a whiteout), one changed, one added.
  Sh("rm " + root + "/etc/conf.d/b && echo changed > " + root + "/etc/conf.d/a && echo new > " +
     root + "/etc/added");
  repack();
  // Layer 3: a directory deleted, and one deleted and made again (opaque).
  Sh("rm -r " + root + "/gone && rm -r " + root + "/etc/conf.d && mkdir " + root + "/etc/conf.d && echo c > " +
     root + "/etc/conf.d/c");
  repack();

  auto r = Ferry(store, {"build", "oci:" + layout + ":t", "--tag", "imp"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const std::string id = r.out.substr(0, 64);

  // The source record: the manifest's digest, and per layer its diff ID
  // and the chain ID OCI defines, computed here with sha256sum.
  json index = json::parse(ReadFile(layout + "/index.json"));
  const std::string manifest_digest = index["manifests"][0]["digest"];
  json manifest = BlobJson(layout, manifest_digest);
  json config = BlobJson(layout, manifest["config"]["digest"]);
  REQUIRE(manifest["layers"].size() == 3);
  json source = json::parse(ReadFile(store + "/sources/" + id));
  CHECK(source["reference"] == "oci:" + layout + ":t");
  CHECK(source["manifest"] == manifest_digest);
  CHECK(source["config"] == manifest["config"]["digest"]);
  REQUIRE(source["layers"].size() == 3);
  std::string chain;
  for (size_t i = 0; i < 3; ++i) {
    INFO("layer " << i);
    const json& l = source["layers"][i];
    const std::string diff = config["rootfs"]["diff_ids"][i];
    chain = i == 0 ? diff : Sha256sum(chain + " " + diff, tmp);
    CHECK(l["digest"] == manifest["layers"][i]["digest"]);
    CHECK(l["diffID"] == diff);
    CHECK(l["chainID"] == chain);
    // chains/sha256/<hex> names the prefix image.
    CHECK(ReadFile(store + "/chains/sha256/" + chain.substr(7)) == l["image"].get<std::string>() + "\n");
  }
  CHECK(source["layers"][2]["image"] == id);

  // The whole image is the tree umoci unpacks.
  const std::string unpacked = tmp.path() + "/unpacked";
  Sh("umoci unpack --image " + layout + ":t " + unpacked + " >/dev/null");
  {
    const std::string mnt = tmp.path() + "/mnt";
    stdfs::create_directories(mnt);
    ScopedMount m(store, "imp", mnt);
    INFO(m.result().err);
    REQUIRE(m.ok());
    std::string diffs;
    for (const auto& d : CompareTrees(unpacked + "/rootfs", mnt)) {
      if (d.rfind("\".\":", 0) != 0) diffs += d + "\n";  // the root directory is umoci's own
    }
    INFO(diffs);
    CHECK(diffs.empty());
    CHECK(!stdfs::exists(mnt + "/gone"));
    CHECK(!stdfs::exists(mnt + "/etc/conf.d/a"));
  }
  // The first prefix is layer 1 alone.
  {
    const std::string mnt = tmp.path() + "/mnt1";
    stdfs::create_directories(mnt);
    ScopedMount m(store, source["layers"][0]["image"].get<std::string>(), mnt);
    INFO(m.result().err);
    REQUIRE(m.ok());
    CHECK(ReadFile(mnt + "/etc/conf.d/b") == "b\n");
    CHECK(ReadFile(mnt + "/gone/sub/x") == "x\n");
    CHECK(!stdfs::exists(mnt + "/etc/added"));
  }
  auto ls = Ferry(store, {"ls"});
  CHECK(ls.exit_code == 0);
  CHECK(ls.out.find("oci:" + layout + ":t") != std::string::npos);

  // The same image as `docker save` output: the same ferry image, every
  // prefix found in the store, nothing built again.
  const std::string archive = tmp.path() + "/image.tar";
  Sh("skopeo copy -q oci:" + layout + ":t docker-archive:" + archive + ":example/imp:t");
  auto d = Ferry(store, {"build", "docker-archive:" + archive, "--tag", "imp2"});
  INFO(d.err);
  REQUIRE(d.exit_code == 0);
  CHECK(d.out.substr(0, 64) == id);
  CHECK(d.err.find("3 layers (3 already in the store)") != std::string::npos);
  // By its tag in the archive, and a tag it does not have.
  auto t = Ferry(store, {"build", "docker-archive:" + archive + ":example/imp:t"});
  CHECK(t.exit_code == 0);
  auto no = Ferry(store, {"build", "docker-archive:" + archive + ":example/imp:nope", "--tag", "x"});
  CHECK(no.exit_code == 3);  // not found, as for any name ferry does not find
  CHECK(no.err.find("example/imp:t") != std::string::npos);  // says what it holds
}

// ---------------------------------------------------------- by hand ---

// An OCI layout written here, so that any part of it can lie.
struct HandLayout {
  std::string dir;
  std::vector<std::string> layer_tars;  // uncompressed layer tars
  std::string layer_media = "application/vnd.oci.image.layer.v1.tar+gzip";
  std::string platform_os = "linux", platform_arch = "amd64";
  bool wrap_in_index = false;           // index.json -> image index -> manifest
  std::vector<std::string> diff_ids;    // filled by Write unless set
  std::vector<json> layer_descriptors;  // filled by Write
  std::string manifest_digest, config_digest;
  // Mutations applied before the digests are computed.
  std::function<void(json&)> edit_manifest;
  std::function<void(json&)> edit_config;

  std::string PutBlob(const std::string& bytes, const ScopedTempDir& tmp) {
    const std::string digest = Sha256sum(bytes, tmp);
    WriteFile(dir + "/blobs/sha256/" + digest.substr(7), bytes);
    return digest;
  }

  void Write(const ScopedTempDir& tmp) {
    WriteFile(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    layer_descriptors.clear();
    const bool fill_diffs = diff_ids.empty();
    for (size_t i = 0; i < layer_tars.size(); ++i) {
      const std::string plain = tmp.path() + "/layer-" + std::to_string(i) + ".tar";
      WriteFile(plain, layer_tars[i]);
      Sh("gzip -n -k -f " + plain);
      const std::string gz = ReadFile(plain + ".gz");
      if (fill_diffs) diff_ids.push_back(Sha256sum(layer_tars[i], tmp));
      layer_descriptors.push_back({{"mediaType", layer_media}, {"digest", PutBlob(gz, tmp)}, {"size", gz.size()}});
    }
    json config = {{"architecture", platform_arch}, {"os", platform_os},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    if (edit_config) edit_config(config);
    const std::string ctext = config.dump();
    config_digest = PutBlob(ctext, tmp);
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                 {"digest", config_digest}, {"size", ctext.size()}}},
                     {"layers", layer_descriptors}};
    if (edit_manifest) edit_manifest(manifest);
    const std::string mtext = manifest.dump();
    manifest_digest = PutBlob(mtext, tmp);
    json top = {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                {"digest", manifest_digest}, {"size", mtext.size()},
                {"annotations", {{"org.opencontainers.image.ref.name", "t"}}}};
    if (wrap_in_index) {
      json idx = {{"schemaVersion", 2},
                  {"mediaType", "application/vnd.oci.image.index.v1+json"},
                  {"manifests", {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                  {"digest", manifest_digest}, {"size", mtext.size()},
                                  {"platform", {{"os", platform_os}, {"architecture", platform_arch}}}}}}};
      const std::string itext = idx.dump();
      top = {{"mediaType", "application/vnd.oci.image.index.v1+json"},
             {"digest", PutBlob(itext, tmp)}, {"size", itext.size()},
             {"annotations", {{"org.opencontainers.image.ref.name", "t"}}}};
    }
    WriteFile(dir + "/index.json", json({{"schemaVersion", 2}, {"manifests", {top}}}).dump());
  }
  std::string BlobPath(const std::string& digest) const { return dir + "/blobs/sha256/" + digest.substr(7); }
};

std::string LayerTar(const ScopedTempDir& tmp, const std::vector<TarEntry>& entries) {
  const std::string f = tmp.path() + "/made.tar";
  WriteTar(f, entries);
  return ReadFile(f);
}

TEST_CASE("OCI layouts that lie or carry a hostile layer are refused, naming the blob; nothing is published") {
  ScopedTempDir tmp("ferry-oci-bad");
  const std::string store = tmp.path() + "/store";
  HandLayout l;
  l.dir = tmp.path() + "/layout";
  l.layer_tars = {LayerTar(tmp, {{TarEntry::kDir, "etc", "", "", 0755}, {TarEntry::kFile, "etc/a", "first\n"}}),
                  LayerTar(tmp, {{TarEntry::kFile, "etc/b", "second\n"}})};
  std::string platform;  // --platform, if any
  std::vector<std::string> expect;  // in the error
  auto build = [&] {
    std::vector<std::string> args = {"build", "oci:" + l.dir + ":t", "--tag", "bad"};
    if (!platform.empty()) args.insert(args.end(), {"--platform", platform});
    return Ferry(store, args);
  };

  SECTION("as made, it imports (the cases below each change one thing)") {
    l.Write(tmp);
    auto r = build();
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(CountFiles(store + "/chains") == 2);
    CHECK(CountFiles(store + "/sources") == 1);
    CHECK(CountFiles(store + "/refs") == 1);
    return;
  }
  SECTION("a layer blob with a byte changed") {
    l.Write(tmp);
    const std::string digest = l.layer_descriptors[1]["digest"];
    std::string bytes = ReadFile(l.BlobPath(digest));
    bytes[bytes.size() / 2] ^= 0x20;
    WriteFile(l.BlobPath(digest), bytes);
    expect = {digest, "does not match its digest"};
  }
  SECTION("a layer blob cut short") {
    l.Write(tmp);
    const std::string digest = l.layer_descriptors[0]["digest"];
    std::string bytes = ReadFile(l.BlobPath(digest));
    WriteFile(l.BlobPath(digest), bytes.substr(0, bytes.size() - 10));
    expect = {digest};
  }
  SECTION("a layer blob missing") {
    l.Write(tmp);
    const std::string digest = l.layer_descriptors[1]["digest"];
    stdfs::remove(l.BlobPath(digest));
    expect = {digest.substr(7), "No such file"};
  }
  SECTION("a truncated manifest") {
    l.Write(tmp);
    std::string bytes = ReadFile(l.BlobPath(l.manifest_digest));
    WriteFile(l.BlobPath(l.manifest_digest), bytes.substr(0, bytes.size() / 2));
    expect = {l.manifest_digest};
  }
  SECTION("a manifest over 4 MiB") {
    l.edit_manifest = [](json& m) { m["annotations"] = {{"padding", std::string(5 << 20, 'x')}}; };
    l.Write(tmp);
    expect = {l.manifest_digest, "more than the 4194304 allowed"};
  }
  SECTION("a config whose diff ID is not the layer's") {
    l.Write(tmp);  // for the real diff IDs
    l.diff_ids[1] = "sha256:" + std::string(64, 'e');
    l.Write(tmp);
    expect = {"diff ID says sha256:eeee"};
  }
  SECTION("a layer of an unknown media type") {
    l.layer_media = "application/vnd.oci.image.layer.v1.tar+encrypted";
    l.Write(tmp);
    expect = {"unknown media type", "+encrypted"};
  }
  SECTION("more layers than allowed") {
    l.edit_manifest = [](json& m) {
      while (m["layers"].size() < 129) m["layers"].push_back(m["layers"][0]);
    };
    l.Write(tmp);
    expect = {l.manifest_digest, "129 layers, more than the 128 allowed"};
  }
  SECTION("an image index with no manifest for the platform asked for") {
    l.wrap_in_index = true;
    l.platform_arch = "arm64";
    l.Write(tmp);
    platform = "linux/s390x";
    expect = {"no manifest for linux/s390x", "linux/arm64"};
  }
  SECTION("a digest of another algorithm") {
    l.edit_manifest = [](json& m) { m["layers"][0]["digest"] = "sha512:" + std::string(128, 'a'); };
    l.Write(tmp);
    expect = {"sha512:", "not a sha256 digest"};
  }
  SECTION("a hostile layer: a path that leaves the root") {
    l.layer_tars[1] = LayerTar(tmp, {{TarEntry::kFile, "../../escaped", "evil\n"}});
    l.Write(tmp);
    expect = {"escaped"};
  }
  SECTION("a layer blob that is not a regular file (a symlink to /dev/zero)") {
    l.Write(tmp);
    const std::string digest = l.layer_descriptors[0]["digest"];
    stdfs::remove(l.BlobPath(digest));
    stdfs::create_symlink("/dev/zero", l.BlobPath(digest));
    expect = {digest, "not a regular file"};
  }
  SECTION("no oci-layout file") {
    l.Write(tmp);
    stdfs::remove(l.dir + "/oci-layout");
    expect = {"oci-layout"};
  }
  auto r = build();
  INFO(r.err);
  CHECK(r.exit_code == 1);
  for (const auto& e : expect) {
    INFO("expected in the error: " << e);
    CHECK(r.err.find(e) != std::string::npos);
  }
  CHECK(r.err.find("nothing was published") != std::string::npos);
  CHECK(CountFiles(store + "/refs") == 0);
  CHECK(CountFiles(store + "/chains") == 0);
  CHECK(CountFiles(store + "/sources") == 0);
  CHECK(!stdfs::exists(tmp.path() + "/escaped"));
}

TEST_CASE("a docker archive whose layer is not what its config says is refused; nothing is published") {
  ScopedTempDir tmp("ferry-docker-archive-bad");
  const std::string store = tmp.path() + "/store", dir = tmp.path() + "/archive";
  const std::string layer = LayerTar(tmp, {{TarEntry::kFile, "hello", "hi\n"}});
  WriteFile(dir + "/layer.tar", layer);
  json config = {{"architecture", "amd64"}, {"os", "linux"},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + std::string(64, '0')}}}}};
  WriteFile(dir + "/config.json", config.dump());
  WriteFile(dir + "/manifest.json",
            json::array({{{"Config", "config.json"}, {"RepoTags", {"x:y"}}, {"Layers", {"layer.tar"}}}}).dump());
  Sh("tar -C " + dir + " -cf " + tmp.path() + "/a.tar manifest.json config.json layer.tar");
  auto r = Ferry(store, {"build", "docker-archive:" + tmp.path() + "/a.tar", "--tag", "bad"});
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("layer.tar") != std::string::npos);
  CHECK(r.err.find("diff ID") != std::string::npos);
  CHECK(CountFiles(store + "/refs") == 0);
  CHECK(CountFiles(store + "/chains") == 0);
  // No copy of the archive's blobs is left behind either.
  auto left = Run({"sh", "-c", "ls -d /var/tmp/ferry-oci-* 2>/dev/null | wc -l"});
  CHECK(left.out == "0\n");
}

// --------------------------------------------------------- registry ---

HandLayout TwoLayers(const ScopedTempDir& tmp, const std::string& name) {
  HandLayout l;
  l.dir = tmp.path() + "/" + name;
  l.layer_tars = {LayerTar(tmp, {{TarEntry::kDir, "etc", "", "", 0755}, {TarEntry::kFile, "etc/a", "first\n"}}),
                  LayerTar(tmp, {{TarEntry::kFile, "etc/b", std::string(200000, 'b')}})};
  return l;
}

// A local registry holding TwoLayers as test/img:t.
struct Pushed {
  ScopedTempDir tmp;
  LocalRegistry reg;
  HandLayout layout;
  explicit Pushed(const char* name) : tmp(name), reg((RequireTool("skopeo"), tmp.path() + "/registry")),
                                      layout(TwoLayers(tmp, "layout")) {
    layout.Write(tmp);
    reg.Push(layout.dir + ":t", "test/img:t");
  }
};

TEST_CASE("docker:// from a local docker-registry: every blob verified, the same image as from the layout") {
  Pushed p("ferry-registry");
  const ScopedTempDir& tmp = p.tmp;
  LocalRegistry& reg = p.reg;
  HandLayout& l = p.layout;
  const std::string store = tmp.path() + "/store";
  const size_t gets_before = reg.BlobGets();
  auto r = Ferry(store, {"build", "docker://" + reg.host() + "/test/img:t", "--tag", "from-registry"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // The config and the two layers, each fetched once.
  CHECK(reg.BlobGets() - gets_before == 3);
  auto layout = Ferry(tmp.path() + "/store2", {"build", "oci:" + l.dir + ":t"});
  REQUIRE(layout.exit_code == 0);
  CHECK(layout.out == r.out);
  json source = json::parse(ReadFile(store + "/sources/" + r.out.substr(0, 64)));
  CHECK(source["reference"] == "docker://" + reg.host() + "/test/img:t");
  CHECK(source["layers"].size() == 2);
  // By digest too.
  const std::string manifest = source["manifest"];
  auto by_digest = Ferry(store, {"build", "docker://" + reg.host() + "/test/img@" + manifest});
  INFO(by_digest.err);
  CHECK(by_digest.exit_code == 0);
  CHECK(by_digest.out == r.out);
  // A tag the registry does not have: not found (3), naming it.
  auto missing = Ferry(store, {"build", "docker://" + reg.host() + "/test/img:nope", "--tag", "x"});
  CHECK(missing.exit_code == 3);
  CHECK(missing.err.find("test/img:nope") != std::string::npos);
}

TEST_CASE("docker:// with bearer-token authentication: --creds, ~/.docker/config.json, and none") {
  Pushed p("ferry-registry-auth");
  const ScopedTempDir& tmp = p.tmp;
  LocalRegistry& reg = p.reg;
  RegistryFront front(tmp.path(), reg.port(), {"--auth", "alice:s3cret"});
  const std::string port = front.port();
  const std::string ref = "docker://127.0.0.1:" + port + "/test/img:t";
  const std::string store = tmp.path() + "/store";
  auto none = Run({"env", "HOME=" + tmp.path() + "/nohome", FerryBinary(), "--store", store, "build", ref, "--tag", "a"});
  INFO(none.err);
  CHECK(none.exit_code == 1);
  CHECK(none.err.find("--creds") != std::string::npos);
  CHECK(CountFiles(store + "/refs") == 0);
  auto wrong = Ferry(store, {"build", ref, "--creds", "alice:wrong", "--tag", "a"});
  CHECK(wrong.exit_code == 1);
  CHECK(CountFiles(store + "/refs") == 0);
  auto creds = Ferry(store, {"build", ref, "--creds", "alice:s3cret", "--tag", "a"});
  INFO(creds.err);
  CHECK(creds.exit_code == 0);
  // ~/.docker/config.json: base64 of "alice:s3cret".
  WriteFile(tmp.path() + "/home/.docker/config.json",
            R"({"auths": {"127.0.0.1:)" + port + R"(": {"auth": "YWxpY2U6czNjcmV0"}}})");
  auto config = Run({"env", "HOME=" + tmp.path() + "/home", FerryBinary(), "--store", store, "build", ref, "--tag", "b"});
  INFO(config.err);
  CHECK(config.exit_code == 0);
  CHECK(config.out == creds.out);
}

TEST_CASE("a registry that serves a blob or manifest that is not what it names, or no manifest for the platform: refused, nothing published") {
  RequireTool("skopeo");
  ScopedTempDir tmp("ferry-registry-bad");
  LocalRegistry reg(tmp.path() + "/registry");
  HandLayout l = TwoLayers(tmp, "layout");
  std::string ref = "docker://" + reg.host() + "/test/img:t";
  std::vector<std::string> expect, extra;
  SECTION("a layer blob with a byte changed in the registry's storage") {
    l.Write(tmp);
    reg.Push(l.dir + ":t", "test/img:t");
    const std::string digest = l.layer_descriptors[1]["digest"];
    std::string bytes = ReadFile(reg.BlobData(digest));
    REQUIRE(!bytes.empty());
    bytes[bytes.size() / 2] ^= 1;
    WriteFile(reg.BlobData(digest), bytes);
    expect = {digest, "does not match its digest"};
  }
  std::unique_ptr<RegistryFront> front;
  SECTION("a manifest cut short on the way (the registry's digest header as sent)") {
    l.Write(tmp);
    reg.Push(l.dir + ":t", "test/img:t");
    front = std::make_unique<RegistryFront>(tmp.path(), reg.port(), std::vector<std::string>{"--cut-manifests"});
    ref = "docker://127.0.0.1:" + front->port() + "/test/img:t";
    expect = {"does not match its digest", l.manifest_digest};
  }
  SECTION("a manifest cut short on the way, asked for by digest") {
    l.Write(tmp);
    reg.Push(l.dir + ":t", "test/img:t");
    front = std::make_unique<RegistryFront>(tmp.path(), reg.port(), std::vector<std::string>{"--cut-manifests"});
    ref = "docker://127.0.0.1:" + front->port() + "/test/img@" + l.manifest_digest;
    expect = {"does not match its digest", l.manifest_digest};
  }
  SECTION("a manifest list with no manifest for the platform") {
    l.wrap_in_index = true;
    l.platform_arch = "arm64";
    l.Write(tmp);
    reg.Push(l.dir + ":t", "test/img:t", /*all=*/true);
    extra = {"--platform", "linux/amd64"};
    expect = {"no manifest for linux/amd64", "linux/arm64"};
  }
  const std::string store = tmp.path() + "/store";
  std::vector<std::string> args = {"build", ref, "--tag", "bad"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto r = Ferry(store, args);
  INFO(r.err);
  CHECK((r.exit_code == 1 || r.exit_code == 3));
  for (const auto& e : expect) {
    INFO("expected in the error: " << e);
    CHECK(r.err.find(e) != std::string::npos);
  }
  CHECK(CountFiles(store + "/refs") == 0);
  CHECK(CountFiles(store + "/chains") == 0);
  CHECK(CountFiles(store + "/sources") == 0);
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  ferry::testing::RequireFuseOrSkip();
  return Catch::Session().run(argc, argv);
}
