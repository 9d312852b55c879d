// Unit tests for fs: the image format (writer, reader, validation) and
// ImageFs, the filesystem semantics without a mount.
#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <array>
#include <cstring>
#include <filesystem>

#include "chunkstore/file_store.h"
#include "chunkstore/pack.h"
#include "fs/image_delta.h"
#include "fs/image_fs.h"
#include "fs/image_store.h"
#include "fs/image_writer.h"
#include "fs/profile.h"

namespace ferry::fs {
namespace {

InodeSpec Spec(uint32_t mode, uint64_t size = 0) {
  InodeSpec s;
  s.attr.mode = mode;
  s.attr.size = size;
  s.attr.nlink = 1;
  s.attr.uid = 1000;
  s.attr.gid = 100;
  s.attr.mtime_sec = 1700000000;
  s.attr.mtime_nsec = 123456789;
  return s;
}

// Root with: hello (regular, one chunk at offset 4096 of a 10000-byte file,
// the rest holes), sub/ (directory), link -> hello.
struct SampleImage {
  std::string root_dir;
  std::unique_ptr<chunkstore::FileStore> store;
  std::vector<uint8_t> object;
  std::vector<uint8_t> chunk;
  SampleImage() {
    char tmpl[] = "/tmp/ferry-fs-XXXXXX";
    root_dir = mkdtemp(tmpl);
    store = std::move(chunkstore::FileStore::Open(root_dir).value());
    chunk.assign(3000, 'c');
    std::string path = store->TempPath("p");
    auto pack = std::move(chunkstore::PackWriter::Create(path).value());
    chunkstore::ChunkLocation loc;
    loc.digest = Sha256(chunk);
    auto frame = chunkstore::CompressChunk(chunk, 3);
    loc.offset = pack->Append(loc.digest, frame, 3000).value();
    loc.clen = static_cast<uint32_t>(frame.size());
    loc.ulen = 3000;
    loc.pack = pack->Finish().value();
    REQUIRE(store->PutFile(chunkstore::PackKey(loc.pack), path).ok());

    ImageWriter w;
    uint32_t root = w.AddInode(Spec(S_IFDIR | 0755));
    w.inode(root).attr.parent = root;
    auto file = Spec(S_IFREG | 0644, 10000);
    file.xattrs = {{"user.b", "2"}, {"user.a", std::string("\0x", 2)}};
    file.extents = {{4096, w.AddChunk(loc)}};
    uint32_t hello = w.AddInode(file);
    auto dir = Spec(S_IFDIR | 0700);
    dir.attr.parent = root;
    uint32_t sub = w.AddInode(dir);
    auto link = Spec(S_IFLNK | 0777);
    link.symlink = "hello";
    uint32_t lnk = w.AddInode(link);
    w.inode(root).entries = {{"sub", sub}, {"link", lnk}, {"hello", hello}};
    object = w.Serialize();
  }
  ~SampleImage() { std::filesystem::remove_all(root_dir); }
  Result<std::unique_ptr<ImageReader>> Open(std::vector<uint8_t> bytes) {
    return ImageReader::Open(chunkstore::MakeBlob(std::move(bytes)));
  }
};

TEST_CASE("image: written and read back in place") {
  SampleImage s;
  auto r = s.Open(s.object);
  REQUIRE(r.ok());
  const ImageReader& img = **r;
  CHECK(img.inode_count() == 4);
  auto names = img.Dirents(kRootIno);
  REQUIRE(names.size() == 3);
  CHECK(img.Name(names[0]) == "hello");  // sorted
  CHECK(img.Name(names[2]) == "sub");
  uint32_t hello = img.Lookup(kRootIno, "hello").value();
  CHECK_FALSE(img.Lookup(kRootIno, "nope").has_value());
  CHECK(img.inode(hello).mtime_nsec == 123456789);
  CHECK(img.SymlinkTarget(img.Lookup(kRootIno, "link").value()) == "hello");
  auto xs = img.Xattrs(hello);
  REQUIRE(xs.size() == 2);
  CHECK(img.XattrName(xs[0]) == "user.a");
  CHECK(img.XattrValue(xs[0]) == std::string("\0x", 2));
  REQUIRE(img.Extents(hello).size() == 1);
  CHECK(img.Chunk(img.Extents(hello)[0].chunk).digest == Sha256(s.chunk));
}

TEST_CASE("image: any damaged or truncated object is refused as corruption") {
  SampleImage s;
  for (size_t i = 0; i < s.object.size(); i += 7) {
    auto bad = s.object;
    bad[i] ^= 0x41;
    auto r = s.Open(bad);
    INFO("flipped byte " << i);
    CHECK(r.status().code() == StatusCode::kCorruption);
  }
  for (size_t n : {size_t{0}, size_t{10}, size_t{64}, s.object.size() - 8}) {
    CHECK(s.Open(std::vector<uint8_t>(s.object.begin(), s.object.begin() + n)).status().code() ==
          StatusCode::kCorruption);
  }
  CHECK(s.Open(std::vector<uint8_t>(4096, 0xab)).status().code() == StatusCode::kCorruption);
}

TEST_CASE("image: LOADS (what a program loads) read back per program; bad records refused") {
  auto build = [](std::vector<uint32_t> deps_of_prog) {
    ImageWriter w;
    uint32_t root = w.AddInode(Spec(S_IFDIR | 0755));
    w.inode(root).attr.parent = root;
    uint32_t prog = w.AddInode(Spec(S_IFREG | 0755));
    uint32_t lib = w.AddInode(Spec(S_IFREG | 0644));
    uint32_t cache = w.AddInode(Spec(S_IFREG | 0644));
    auto dir = Spec(S_IFDIR | 0755);
    dir.attr.parent = root;
    uint32_t sub = w.AddInode(dir);
    w.inode(root).entries = {{"prog", prog}, {"lib", lib}, {"cache", cache}, {"sub", sub}};
    w.AddLoads(lib, {cache});  // added out of order: the writer sorts by program
    if (!deps_of_prog.empty()) w.AddLoads(prog, deps_of_prog);
    return w.Serialize();
  };
  // prog = 2, lib = 3, cache = 4, sub = 5
  auto object = build({3, 4});
  ImageHeader h;
  std::memcpy(&h, object.data(), sizeof(h));
  CHECK(h.section_count == kSectionCount + 1);
  auto r = ImageReader::Open(chunkstore::MakeBlob(object));
  REQUIRE(r.ok());
  auto prog = (*r)->Loads(2);
  REQUIRE(prog.size() == 2);
  CHECK(prog[0].dep == 3);  // load order kept
  CHECK(prog[1].dep == 4);
  REQUIRE((*r)->Loads(3).size() == 1);
  CHECK((*r)->Loads(3)[0].dep == 4);
  CHECK((*r)->Loads(4).empty());
  CHECK((*r)->Loads(5).empty());
  // A directory or a missing inode as a dependency is corruption.
  for (uint32_t bad : {5u, 0u, 99u}) {
    INFO("dep " << bad);
    CHECK(ImageReader::Open(chunkstore::MakeBlob(build({bad}))).status().code() == StatusCode::kCorruption);
  }
}

TEST_CASE("image: EARLY (what a loader touches first) read back per file, sorted; bad records refused") {
  // prog = 2 (10,000 bytes), lib = 3 (5,000 bytes), sub = 4 (a directory)
  auto build = [](std::vector<std::array<uint64_t, 3>> extra) {
    ImageWriter w;
    uint32_t root = w.AddInode(Spec(S_IFDIR | 0755));
    w.inode(root).attr.parent = root;
    uint32_t prog = w.AddInode(Spec(S_IFREG | 0755, 10000));
    uint32_t lib = w.AddInode(Spec(S_IFREG | 0644, 5000));
    auto dir = Spec(S_IFDIR | 0755);
    dir.attr.parent = root;
    uint32_t sub = w.AddInode(dir);
    w.inode(root).entries = {{"prog", prog}, {"lib", lib}, {"sub", sub}};
    w.AddEarly(prog, 8000, 2000);  // out of order: the writer sorts by file, then offset
    w.AddEarly(lib, 0, 100);
    w.AddEarly(prog, 0, 500);
    w.AddEarly(prog, 600, 0);  // empty: not recorded
    for (auto [ino, off, len] : extra) w.AddEarly(static_cast<uint32_t>(ino), off, len);
    return w.Serialize();
  };
  auto object = build({});
  ImageHeader h;
  std::memcpy(&h, object.data(), sizeof(h));
  CHECK(h.section_count == kSectionCount + 1);  // EARLY without LOADS
  auto r = ImageReader::Open(chunkstore::MakeBlob(object));
  REQUIRE(r.ok());
  auto prog = (*r)->Early(2);
  REQUIRE(prog.size() == 2);
  CHECK(prog[0].offset == 0);
  CHECK(prog[0].length == 500);
  CHECK(prog[1].offset == 8000);
  CHECK(prog[1].length == 2000);
  REQUIRE((*r)->Early(3).size() == 1);
  CHECK((*r)->Early(3)[0].length == 100);
  CHECK((*r)->Early(4).empty());
  CHECK((*r)->Loads(2).empty());
  // Past the end of the file, overlapping another range, on a directory or
  // a missing inode: corruption.
  for (auto bad : std::vector<std::array<uint64_t, 3>>{
           {2, 9000, 1001}, {2, 400, 200}, {2, 7999, 2}, {4, 0, 1}, {99, 0, 1}, {3, ~0ull, 2}}) {
    INFO("ino " << bad[0] << " offset " << bad[1] << " length " << bad[2]);
    CHECK(ImageReader::Open(chunkstore::MakeBlob(build({bad}))).status().code() == StatusCode::kCorruption);
  }
  // Up to the last byte is fine.
  CHECK(ImageReader::Open(chunkstore::MakeBlob(build({{3, 4000, 1000}}))).ok());
}

TEST_CASE("image: without programs the writer keeps seven sections (images stay as they were)") {
  SampleImage s;
  ImageHeader h;
  std::memcpy(&h, s.object.data(), sizeof(h));
  CHECK(h.section_count == kSectionCount);
  REQUIRE(s.Open(s.object).ok());
  CHECK((*s.Open(s.object))->loads().empty());
  CHECK((*s.Open(s.object))->early().empty());
}

TEST_CASE("image store: ids are verified when loading") {
  SampleImage s;
  Digest id = PutImage(*s.store, s.object).value();
  REQUIRE(SetRef(*s.store, "app:1", id).ok());
  CHECK(ResolveImage(*s.store, "app:1").value() == id);
  CHECK(ResolveImage(*s.store, id.Hex().substr(0, 10)).value() == id);
  CHECK(ResolveImage(*s.store, "other").status().code() == StatusCode::kNotFound);
  REQUIRE(LoadImage(*s.store, id).ok());
  // A valid object stored under an id that is not its own.
  Digest fake = Sha256(std::string_view("something else"));
  REQUIRE(s.store->Put(ImageKey(fake), s.object).ok());
  CHECK(LoadImage(*s.store, fake).status().code() == StatusCode::kCorruption);
}

TEST_CASE("image store: a compressed metadata object loads like the plain one; damaged or oversized ones are refused") {
  SampleImage s;
  // A file:// store keeps objects plain (mmap in place); a remote one gets
  // a zstd frame, asked for here.
  Digest plain = PutImage(*s.store, s.object).value();
  CHECK(s.store->Get(ImageKey(plain)).value()->bytes().size() == s.object.size());
  REQUIRE(s.store->Delete(ImageKey(plain)).ok());
  Digest id = PutImage(*s.store, s.object, MetadataEncoding::kZstd).value();
  CHECK(id == plain);  // the id names the metadata, however it is stored
  auto stored = s.store->Get(ImageKey(id)).value();
  std::vector<uint8_t> frame(stored->bytes().begin(), stored->bytes().end());
  CHECK(frame.size() < s.object.size());
  REQUIRE(frame.size() > 8);
  CHECK(frame[0] == 0x28);  // zstd's magic number
  auto image = LoadImage(*s.store, id);
  REQUIRE(image.ok());
  CHECK((*image)->object_size() == s.object.size());
  CHECK((*image)->chunks().size() == (*s.Open(s.object))->chunks().size());

  // Any flipped byte past the magic: refused, or (a byte the decoder never
  // uses) the very same metadata, which is all the id check lets through.
  size_t refused_flips = 0;
  for (size_t i = 4; i < frame.size(); ++i) {
    auto bad = frame;
    bad[i] ^= 0x20;
    REQUIRE(s.store->Put(ImageKey(id), bad).ok());
    INFO("byte " << i);
    auto r = LoadImage(*s.store, id);
    if (!r.ok()) {
      CHECK(r.status().code() == StatusCode::kCorruption);
      ++refused_flips;
    } else {
      CHECK((*r)->object_size() == s.object.size());
    }
  }
  CHECK(refused_flips > (frame.size() - 4) * 9 / 10);
  // Truncated, or followed by more bytes.
  REQUIRE(s.store->Put(ImageKey(id), std::span(frame).first(frame.size() - 1)).ok());
  CHECK(LoadImage(*s.store, id).status().code() == StatusCode::kCorruption);
  auto longer = frame;
  longer.insert(longer.end(), frame.begin(), frame.end());
  REQUIRE(s.store->Put(ImageKey(id), longer).ok());
  CHECK(LoadImage(*s.store, id).status().code() == StatusCode::kCorruption);
  // A small frame that would decode to 64 MiB (more than 256 times its size):
  // refused before anything that large is allocated.
  std::vector<uint8_t> zeros(64u << 20, 0);
  Digest bomb = Sha256(zeros);
  REQUIRE(s.store->Put(ImageKey(bomb), chunkstore::CompressChunk(zeros, 1)).ok());
  auto refused = LoadImage(*s.store, bomb);
  CHECK(refused.status().code() == StatusCode::kCorruption);
  CHECK(refused.status().ToString().find("without a valid size") != std::string::npos);
}

// A small tree: root, `files` regular files f0.. of mode `mode`, a symlink.
std::vector<uint8_t> TreeObject(int files, uint32_t mode) {
  ImageWriter w;
  uint32_t root = w.AddInode(Spec(S_IFDIR | 0755));
  w.inode(root).attr.parent = root;
  for (int i = 0; i < files; ++i) {
    uint32_t f = w.AddInode(Spec(S_IFREG | mode));
    w.inode(root).entries.emplace_back("f" + std::to_string(i), f);
  }
  auto link = Spec(S_IFLNK | 0777);
  link.symlink = "f0";
  uint32_t l = w.AddInode(link);
  w.inode(root).entries.emplace_back("link", l);
  return w.Serialize();
}

TEST_CASE("delta objects: rebuild the target exactly, load like any image, and refuse every damage") {
  SampleImage s;
  const std::vector<uint8_t> base = TreeObject(40, 0644);
  const std::vector<uint8_t> target = TreeObject(41, 0600);  // every mode changed, one more file
  const Digest base_id = PutImage(*s.store, base, MetadataEncoding::kPlain).value();
  const std::vector<uint8_t> delta = MakeDelta(base, base_id, target);
  CHECK(IsDelta(delta));
  CHECK(DeltaBase(delta).value() == base_id);
  auto rebuilt = ApplyDelta(delta, base);
  REQUIRE(rebuilt.ok());
  CHECK((*rebuilt == target));
  // Identical objects: a delta of patches-free sections.
  auto same = ApplyDelta(MakeDelta(base, base_id, base), base);
  REQUIRE(same.ok());
  CHECK((*same == base));

  // Stored (plain or compressed) and loaded: the target's tree, and which
  // image it was rebuilt from.
  for (auto enc : {MetadataEncoding::kPlain, MetadataEncoding::kZstd}) {
    const Digest id = PutImage(*s.store, delta, enc).value();
    CHECK(id == Sha256(delta));
    auto r = LoadImage(*s.store, id);
    REQUIRE(r.ok());
    CHECK(r.value()->inode_count() == 43);
    CHECK(r.value()->delta_base() == std::optional<Digest>(base_id));
    CHECK((std::vector<uint8_t>(r.value()->object().begin(), r.value()->object().end()) == target));
    CHECK((r.value()->inode(2).mode & 07777) == 0600);
    CHECK_FALSE(LoadImage(*s.store, base_id).value()->delta_base().has_value());
  }

  // Any flipped bit, any truncation: refused, never another object.
  for (size_t i = 0; i < delta.size() * 8; i += 7) {
    auto bad = delta;
    bad[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    INFO("bit " << i);
    CHECK(ApplyDelta(bad, base).status().code() == StatusCode::kCorruption);
  }
  for (size_t n = 0; n < delta.size(); n += 5) {
    CHECK(ApplyDelta(std::span(delta).first(n), base).status().code() == StatusCode::kCorruption);
  }
  // Applied to another base: the result does not hash to what it records.
  auto wrong = ApplyDelta(delta, TreeObject(39, 0644));
  CHECK(wrong.status().code() == StatusCode::kCorruption);
  CHECK(wrong.status().ToString().find("SHA-256") != std::string::npos);
  // A patch past its section, with a valid checksum: refused by bounds.
  {
    auto bad = delta;
    // The first section's first patch starts after the fixed head, the
    // target's header and table, and its patch count.
    const size_t first = 96 + 64 + 32 * 7 + 8;
    REQUIRE(bad.size() > first + 16);
    uint64_t huge = uint64_t{1} << 40;
    std::memcpy(bad.data() + first, &huge, 8);
    uint64_t sum = XXH3_64bits(bad.data(), bad.size() - 8);
    std::memcpy(bad.data() + bad.size() - 8, &sum, 8);
    auto r = ApplyDelta(bad, base);
    CHECK(r.status().code() == StatusCode::kCorruption);
    CHECK(r.status().ToString().find("out of range") != std::string::npos);
  }
  // A delta whose base is itself a delta is refused.
  const Digest first_delta = PutImage(*s.store, delta, MetadataEncoding::kPlain).value();
  const Digest second = PutImage(*s.store, MakeDelta(target, first_delta, TreeObject(42, 0600)),
                                 MetadataEncoding::kPlain).value();
  auto dd = LoadImage(*s.store, second);
  CHECK(dd.status().code() == StatusCode::kCorruption);
  CHECK(dd.status().ToString().find("itself a delta") != std::string::npos);
}

TEST_CASE("image fs: reads, holes, attributes, xattrs, errors") {
  SampleImage s;
  chunkstore::ChunkReader chunks(s.store.get(), 1 << 20);
  std::vector<std::string> logged;
  ImageFs fs(std::move(s.Open(s.object).value()), &chunks,
             [&](const std::string& m) { logged.push_back(m); });
  uint64_t hello = fs.Lookup(kRootIno, "hello").value();
  auto st = fs.GetAttr(hello).value();
  CHECK(st.st_size == 10000);
  CHECK(st.st_mtim.tv_nsec == 123456789);
  CHECK(st.st_uid == 1000);
  auto flatten = [](const ReadResult& r) {
    std::string out;
    for (const auto& v : r.iov) out.append(static_cast<const char*>(v.iov_base), v.iov_len);
    return out;
  };
  std::string all = flatten(fs.Read(hello, 0, 20000).value());
  REQUIRE(all.size() == 10000);
  CHECK(all == std::string(4096, '\0') + std::string(3000, 'c') + std::string(2904, '\0'));
  CHECK(flatten(fs.Read(hello, 4000, 200).value()) == std::string(96, '\0') + std::string(104, 'c'));
  CHECK(fs.Read(hello, 10000, 10).value().bytes == 0);
  // A read entirely inside a hole fetches nothing.
  auto before = chunks.stats().fetches;
  CHECK(flatten(fs.Read(hello, 8000, 1000).value()) == std::string(1000, '\0'));
  CHECK(chunks.stats().fetches == before);
  // SEEK_DATA / SEEK_HOLE follow the extents: data is [4096, 7096).
  CHECK(fs.Seek(hello, 0, SEEK_DATA).value() == 4096);
  CHECK(fs.Seek(hello, 5000, SEEK_DATA).value() == 5000);
  CHECK(ErrnoFor(fs.Seek(hello, 7096, SEEK_DATA).status()) == ENXIO);
  CHECK(fs.Seek(hello, 0, SEEK_HOLE).value() == 0);
  CHECK(fs.Seek(hello, 4096, SEEK_HOLE).value() == 7096);
  CHECK(ErrnoFor(fs.Seek(hello, 10000, SEEK_HOLE).status()) == ENXIO);
  CHECK(ErrnoFor(fs.Lookup(kRootIno, "missing").status()) == ENOENT);
  CHECK(ErrnoFor(fs.Lookup(hello, "x").status()) == ENOTDIR);
  CHECK(ErrnoFor(fs.GetAttr(99).status()) == ENOENT);
  CHECK(ErrnoFor(fs.Read(kRootIno, 0, 1).status()) == EISDIR);
  CHECK(fs.GetXattr(hello, "user.b").value() == "2");
  CHECK(fs.GetXattr(hello, "user.zz").status().code() == StatusCode::kNotFound);
  CHECK(fs.ListXattr(hello).value() == std::string("user.a\0user.b\0", 14));
  CHECK(ErrnoFor(fs.Access(hello, W_OK, 0, 0)) == EROFS);
  CHECK(fs.Access(hello, R_OK, 1000, 100).ok());
  CHECK(ErrnoFor(fs.Access(fs.Lookup(kRootIno, "sub").value(), R_OK, 5, 5)) == EACCES);
  CHECK(fs.ReadLink(fs.Lookup(kRootIno, "link").value()).value() == "hello");
  CHECK(logged.empty());
}

TEST_CASE("image fs: a corrupt chunk fails the read with EIO and a log line naming it") {
  SampleImage s;
  // Flip one byte inside the chunk's frame in the pack file.
  auto img = std::move(s.Open(s.object).value());
  auto loc = img->Chunk(0);
  std::string pack_path = s.root_dir + "/" + chunkstore::PackKey(loc.pack);
  {
    FILE* f = std::fopen(pack_path.c_str(), "r+b");
    REQUIRE(f != nullptr);
    std::fseek(f, static_cast<long>(loc.offset + loc.clen - 6), SEEK_SET);
    int c = std::fgetc(f);
    std::fseek(f, static_cast<long>(loc.offset + loc.clen - 6), SEEK_SET);
    std::fputc(c ^ 0xff, f);
    std::fclose(f);
  }
  chunkstore::ChunkReader chunks(s.store.get(), 1 << 20);
  std::vector<std::string> logged;
  ImageFs fs(std::move(img), &chunks, [&](const std::string& m) { logged.push_back(m); });
  auto r = fs.Read(fs.Lookup(kRootIno, "hello").value(), 0, 10000);
  REQUIRE_FALSE(r.ok());
  CHECK(ErrnoFor(r.status()) == EIO);
  REQUIRE(logged.size() == 1);
  CHECK(logged[0].find(loc.digest.Hex()) != std::string::npos);
  CHECK(fs.counters().read_errors == 1);
}

}  // namespace
}  // namespace ferry::fs

namespace ferry {

TEST_CASE("profile: versions 1 and 2 read back; damaged ones refused") {
  fs::Profile v1{{5, 0, 7}, {}, {}, {}, {}};
  auto back1 = fs::DecodeProfile(fs::EncodeProfile(v1), 8);
  REQUIRE(back1.ok());
  CHECK(back1->chunks == v1.chunks);
  CHECK(!back1->pack.has_value());
  CHECK(fs::EncodeProfile(v1).size() == 24 + 4 * 3);

  fs::Profile v2{{5, 0, 7}, Sha256(std::string_view("a start-up pack")), {100, 1, 40000}, {}, {}};
  std::vector<uint8_t> bytes = fs::EncodeProfile(v2);
  CHECK(bytes.size() == 24 + 32 + 8 * 3);
  auto back2 = fs::DecodeProfile(bytes, 8);
  REQUIRE(back2.ok());
  CHECK(back2->chunks == v2.chunks);
  REQUIRE(back2->pack.has_value());
  CHECK(*back2->pack == *v2.pack);
  CHECK(back2->clens == v2.clens);

  // Every single flipped bit and every truncation is refused.
  for (size_t i = 0; i < bytes.size() * 8; ++i) {
    auto bad = bytes;
    bad[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    INFO("bit " << i);
    CHECK(fs::DecodeProfile(bad, 8).status().code() == StatusCode::kCorruption);
  }
  for (size_t n = 0; n < bytes.size(); ++n) {
    CHECK(!fs::DecodeProfile(std::span(bytes).first(n), 8).ok());
  }
  // Well formed, but naming a chunk the image does not have, or an empty frame.
  CHECK(fs::DecodeProfile(bytes, 7).status().code() == StatusCode::kCorruption);
  fs::Profile empty_frame = v2;
  empty_frame.clens[1] = 0;
  CHECK(fs::DecodeProfile(fs::EncodeProfile(empty_frame), 8).status().code() == StatusCode::kCorruption);
}

TEST_CASE("profile: version 3 is laid out as docs/format.md says; damaged ones and other images' refused") {
  fs::Profile v3{{5, 0, 7},
                 Sha256(std::string_view("a start-up pack")),
                 {100, 1, 40000},
                 {Sha256(std::string_view("c5")), Sha256(std::string_view("c0")), Sha256(std::string_view("c7"))},
                 {200, 1, 40000}};
  // The layout, written out field by field from the format document.
  std::vector<uint8_t> expect = {'F', 'E', 'R', 'R', 'Y', 'P', 'R', 'F'};
  auto le32 = [&](uint32_t v) {
    for (int k = 0; k < 4; ++k) expect.push_back(static_cast<uint8_t>(v >> (8 * k)));
  };
  le32(3);
  le32(3);
  expect.insert(expect.end(), v3.pack->bytes.begin(), v3.pack->bytes.end());
  for (size_t i = 0; i < 3; ++i) {
    le32(v3.chunks[i]);
    le32(v3.clens[i]);
    le32(v3.ulens[i]);
    expect.insert(expect.end(), v3.digests[i].bytes.begin(), v3.digests[i].bytes.end());
  }
  const uint64_t sum = XXH3_64bits(expect.data(), expect.size());
  for (int k = 0; k < 8; ++k) expect.push_back(static_cast<uint8_t>(sum >> (8 * k)));
  std::vector<uint8_t> bytes = fs::EncodeProfile(v3);
  REQUIRE(bytes.size() == 56 + 44 * 3);
  CHECK((bytes == expect));

  auto back = fs::DecodeProfile(bytes, UINT32_MAX);
  REQUIRE(back.ok());
  CHECK(back->chunks == v3.chunks);
  CHECK(back->pack == v3.pack);
  CHECK(back->clens == v3.clens);
  CHECK(back->ulens == v3.ulens);
  CHECK(back->digests == v3.digests);

  for (size_t i = 0; i < bytes.size() * 8; ++i) {
    auto bad = bytes;
    bad[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    INFO("bit " << i);
    CHECK(fs::DecodeProfile(bad, 8).status().code() == StatusCode::kCorruption);
  }
  for (size_t n = 0; n < bytes.size(); ++n) CHECK(!fs::DecodeProfile(std::span(bytes).first(n), 8).ok());
  // Well formed and checksummed, but a chunk of no bytes, one longer than a
  // chunk can be, or a frame longer than zstd makes of its chunk.
  for (uint32_t ulen : {0u, fs::kMaxChunkSize + 1}) {
    fs::Profile bad = v3;
    bad.ulens[0] = ulen;
    CHECK(fs::DecodeProfile(fs::EncodeProfile(bad), 8).status().code() == StatusCode::kCorruption);
  }
  fs::Profile long_frame = v3;
  long_frame.clens[2] = 40000 + 40000 / 128 + 1025;
  CHECK(fs::DecodeProfile(fs::EncodeProfile(long_frame), 8).status().code() == StatusCode::kCorruption);
  long_frame.clens[2] -= 1;  // the longest allowed
  CHECK(fs::DecodeProfile(fs::EncodeProfile(long_frame), 8).ok());

  // Against an image: it must have chunks 5, 0 and 7 with those digests and lengths.
  std::vector<fs::ChunkRecord> image(8);
  for (size_t i = 0; i < 3; ++i) {
    std::memcpy(image[v3.chunks[i]].digest, v3.digests[i].bytes.data(), 32);
    image[v3.chunks[i]].ulen = v3.ulens[i];
  }
  CHECK(fs::MismatchWithImage(v3, image) == "");
  CHECK(fs::MismatchWithImage(v3, std::span(image).first(7)) != "");  // no chunk 7
  auto other = image;
  other[0].digest[31] ^= 1;
  CHECK(fs::MismatchWithImage(v3, other).find("entry 1") != std::string::npos);
  other = image;
  other[7].ulen = 39999;
  CHECK(fs::MismatchWithImage(v3, other).find("entry 2") != std::string::npos);
  // Versions 1 and 2 carry no digests: only their indices are checked.
  fs::Profile v2 = v3;
  v2.digests.clear();
  v2.ulens.clear();
  CHECK(fs::MismatchWithImage(v2, other) == "");
  CHECK(fs::MismatchWithImage(v2, std::span(image).first(7)) != "");

  // Arrays that do not fit together are refused before any entry is read:
  // no bytes to store, a mismatch for any image, an error from PutProfile.
  CHECK(fs::ShapeError(v3) == "");
  CHECK(fs::ShapeError(v2) == "");
  fs::SampleImage sample;
  auto misshapen = [&](fs::Profile bad) {
    CHECK(fs::ShapeError(bad) != "");
    CHECK(fs::EncodeProfile(bad).empty());
    CHECK(fs::MismatchWithImage(bad, image) != "");
    const Digest id = Sha256(sample.object);
    CHECK(fs::PutProfile(*sample.store, id, bad).code() == StatusCode::kInvalidArgument);
    CHECK(!sample.store->Get(fs::ProfileKey(id)).ok());
  };
  fs::Profile bad = v3;
  bad.ulens.pop_back();  // one length short
  misshapen(bad);
  bad = v3;
  bad.digests.pop_back();
  bad.ulens.pop_back();  // both short
  misshapen(bad);
  bad = v3;
  bad.clens.push_back(1);
  misshapen(bad);
  bad = v3;
  bad.pack.reset();  // digests and lengths without a pack
  bad.clens.clear();
  misshapen(bad);
}

TEST_CASE("profile: a derived image inherits the entries whose chunks it kept, renumbered") {
  // Base: 6 chunks; its profile reads chunks 4, 1, 2 (v3, with a start-up pack).
  auto record = [](std::string_view name, uint32_t ulen) {
    fs::ChunkRecord c{};
    Digest d = Sha256(name);
    std::memcpy(c.digest, d.bytes.data(), 32);
    c.ulen = ulen;
    return c;
  };
  std::vector<fs::ChunkRecord> base = {record("a", 10), record("b", 11), record("c", 12),
                                       record("d", 13), record("e", 14), record("f", 15)};
  fs::Profile bp{{4, 1, 2}, Sha256(std::string_view("pack")), {7, 8, 9}, {}, {}};
  for (uint32_t c : bp.chunks) {
    bp.digests.push_back(Sha256(std::string_view(std::string(1, static_cast<char>('a' + c)))));
    bp.ulens.push_back(base[c].ulen);
  }
  REQUIRE(fs::MismatchWithImage(bp, base) == "");

  // Derived, every profiled chunk kept (in another order, with a new one):
  // the same start-up pack, a version 3 profile that matches the new image.
  std::vector<fs::ChunkRecord> all = {record("new", 99), record("c", 12), record("e", 14),
                                      record("b", 11), record("a", 10)};
  auto kept = fs::CarryProfile(bp, base, all);
  REQUIRE(kept.has_value());
  CHECK(kept->chunks == std::vector<uint32_t>{2, 3, 1});
  CHECK(kept->pack == bp.pack);
  CHECK(kept->clens == bp.clens);
  CHECK(kept->digests == bp.digests);
  CHECK(fs::MismatchWithImage(*kept, all) == "");
  auto round = fs::DecodeProfile(fs::EncodeProfile(*kept), static_cast<uint32_t>(all.size()));
  REQUIRE(round.ok());
  CHECK(round->pack == bp.pack);

  // Chunk "b" gone (its file changed): the rest, in order, without the
  // start-up pack (its frames would no longer line up with the entries).
  std::vector<fs::ChunkRecord> some = {record("e", 14), record("x", 5), record("c", 12)};
  auto part = fs::CarryProfile(bp, base, some);
  REQUIRE(part.has_value());
  CHECK(part->chunks == std::vector<uint32_t>{0, 2});
  CHECK_FALSE(part->pack.has_value());
  CHECK(fs::ShapeError(*part) == "");
  CHECK(fs::DecodeProfile(fs::EncodeProfile(*part), 3).ok());

  // Nothing of the start-up left: no profile.
  std::vector<fs::ChunkRecord> none = {record("a", 10), record("x", 5)};
  CHECK_FALSE(fs::CarryProfile(bp, base, none).has_value());
}

}  // namespace ferry
