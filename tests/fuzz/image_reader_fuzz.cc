// libFuzzer target: untrusted image metadata objects.
//
// ImageReader::Open promises to refuse any corrupt or hostile object with a
// Status, and after a successful Open every accessor (and ImageFs on top of
// it) must be safe without further checks. This target feeds each input to
// Open twice:
//   1. as is, which exercises the checksum and size checks;
//   2. with object_size, every in-bounds section checksum and the header
//      checksum recomputed, so that mutations get past the XXH3 checks and
//      reach the structural validation (the interesting part).
// Whenever Open succeeds, every accessor is run over every inode, and
// ImageFs answers every call for every inode. ImageFs reads go through a
// ChunkReader over a store that fails every read, so Read() is exercised up
// to the fetch without doing any I/O.
//
// Invariants checked beyond "no crash" (a violation aborts):
//   - an accepted image obeys the validity rules of docs/format.md 8.1
//     (checked independently of Open: CheckRules);
//   - Lookup(dir, name) finds every entry Dirents(dir) lists, with its inode;
//   - a symlink's target is non-empty and as long as its inode says;
//   - ListXattr lists every xattr once and GetXattr finds each one's value;
//   - calls on invalid inode numbers fail; on valid ones GetAttr and
//     ListXattr succeed; Read never returns more than asked.
//
// FERRY_FUZZ_VERBOSE=1 prints the Status of each Open.
//
// Build and run: tests/fuzz/run.sh. Seeds: ferry_fuzz_make_seeds.
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chunkstore/chunk_reader.h"
#include "chunkstore/object_store.h"
#include "fs/image_delta.h"
#include "fs/image_format.h"
#include "fs/image_fs.h"
#include "fs/image_reader.h"
#include "tests/fuzz/delta_base.h"

namespace {

using ferry::Result;
using ferry::Status;
using ferry::StatusCode;

// Every operation fails; nothing is read or written.
class FailingStore final : public ferry::chunkstore::ObjectStore {
 public:
  std::string Url() const override { return "fuzz://failing"; }
  Status Put(const std::string&, std::span<const uint8_t>) override { return Fail(); }
  Status PutFile(const std::string&, const std::string&) override { return Fail(); }
  Result<std::shared_ptr<const ferry::chunkstore::Blob>> Get(const std::string&) override {
    return Fail();
  }
  Status GetRange(const std::string& key, uint64_t, std::span<uint8_t>) override {
    if (key.empty()) __builtin_trap();
    return Fail();
  }
  Result<uint64_t> Size(const std::string&) override { return Fail(); }
  Result<std::vector<std::string>> List(const std::string&) override { return Fail(); }
  Status Delete(const std::string&) override { return Fail(); }

 private:
  static Status Fail() { return Status(StatusCode::kUnavailable, "fuzz store: no I/O"); }
};

// Folds bytes into a value the optimizer cannot drop, so that every byte an
// accessor points at is actually read (and checked by ASan).
volatile uint64_t g_sink;
void Touch(std::string_view s) { g_sink = g_sink + XXH3_64bits(s.data(), s.size()); }
void Touch(uint64_t v) { g_sink = g_sink + v; }

[[noreturn]] void Fail(const char* what, uint64_t ino) {
  std::fprintf(stderr, "image_reader_fuzz: invariant violated: %s (inode %llu)\n", what,
               static_cast<unsigned long long>(ino));
  std::abort();
}

template <typename T>
T Load(const std::vector<uint8_t>& b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}
template <typename T>
void Store(std::vector<uint8_t>& b, size_t off, T v) {
  std::memcpy(b.data() + off, &v, sizeof(T));
}

// Recomputes object_size, the checksum of every in-bounds section and the
// header checksum. Returns false if the object is too short to have them.
bool FixChecksums(std::vector<uint8_t>& b) {
  using namespace ferry::fs;
  if (b.size() < kImageHeaderSize) return false;
  Store<uint64_t>(b, offsetof(ImageHeader, object_size), b.size());
  uint64_t count = Load<uint32_t>(b, offsetof(ImageHeader, section_count));
  if (count > 64 || kImageHeaderSize + count * kSectionEntrySize > b.size()) return false;
  for (uint64_t i = 0; i < count; ++i) {
    size_t at = kImageHeaderSize + i * kSectionEntrySize;
    uint64_t off = Load<uint64_t>(b, at + offsetof(SectionEntry, offset));
    uint64_t size = Load<uint64_t>(b, at + offsetof(SectionEntry, size));
    if (off > b.size() || size > b.size() - off) continue;
    Store<uint64_t>(b, at + offsetof(SectionEntry, xxh3), XXH3_64bits(b.data() + off, size));
  }
  Store<uint64_t>(b, offsetof(ImageHeader, header_xxh3), 0);
  uint64_t h = XXH3_64bits(b.data(), kImageHeaderSize + count * kSectionEntrySize);
  Store<uint64_t>(b, offsetof(ImageHeader, header_xxh3), h);
  return true;
}

// An image Open accepted must obey the validity rules of docs/format.md,
// section 8.1, as far as the accessors show them. Checked here independently
// of ImageReader::Validate, so that a rule Validate misses is a finding.
void CheckRules(const ferry::fs::ImageReader& r) {
  using namespace ferry::fs;
  const uint64_t count = r.inode_count();
  if (count == 0 || !S_ISDIR(r.inode(1).mode) || r.inode(1).parent != 1) Fail("N1/N2", 1);
  for (const ChunkRecord& c : r.chunks()) {  // C1
    if (c.pack >= r.packs().size() || c.ulen < 1 || c.ulen > (16u << 20) || c.clen < 1 ||
        c.clen > (17u << 20)) {
      Fail("C1: chunk record out of range", 0);
    }
  }
  std::vector<uint32_t> named(count + 1, 0);  // entries naming each directory
  for (uint64_t ino = 1; ino <= count; ++ino) {
    const InodeRecord& n = r.inode(ino);
    std::string_view prev;
    bool first = true;
    for (const XattrRecord& x : r.Xattrs(ino)) {  // X2, X3
      std::string_view name = r.XattrName(x);
      if (name.empty() || name.size() > 255 || x.value_len > 65536) Fail("X2: bad xattr", ino);
      if (name.find('\0') != name.npos || (!first && !(prev < name))) {
        Fail("X3: xattr names not NUL-free, sorted and unique", ino);
      }
      prev = name;
      first = false;
    }
    if (n.atime_nsec >= 1000000000 || n.mtime_nsec >= 1000000000 ||
        n.ctime_nsec >= 1000000000) {
      Fail("T2: bad timestamp", ino);
    }
    switch (n.mode & S_IFMT) {
      case S_IFDIR: {
        if (n.parent < 1 || n.parent > count || !S_ISDIR(r.inode(n.parent).mode)) {
          Fail("D2: bad parent", ino);
        }
        if (r.Dirents(ino).size() != n.data_count) Fail("D1: dirents span", ino);
        first = true;
        for (const DirentRecord& d : r.Dirents(ino)) {
          std::string_view name = r.Name(d);
          if (name.empty() || name.size() > 255 || name == "." || name == ".." ||
              name.find('/') != name.npos || name.find('\0') != name.npos) {
            Fail("D4: invalid entry name", ino);
          }
          if (!first && !(prev < name)) Fail("D5: entries not sorted and unique", ino);
          prev = name;
          first = false;
          if (d.ino < 2 || d.ino > count) Fail("D6: entry names an invalid inode", ino);
          if (S_ISDIR(r.inode(d.ino).mode)) {
            if (r.inode(d.ino).parent != ino) Fail("D7: directory's parent is not its dir", ino);
            ++named[d.ino];
          }
        }
        break;
      }
      case S_IFREG: {
        if (r.Extents(ino).size() != n.data_count) Fail("R1: extents span", ino);
        uint64_t end = 0;
        for (const ExtentRecord& e : r.Extents(ino)) {
          if (e.chunk >= r.chunks().size()) Fail("R2: bad chunk index", ino);
          uint64_t len = r.chunks()[e.chunk].ulen;
          if (e.file_offset < end) Fail("R3: extents overlap or unsorted", ino);
          if (e.file_offset > n.size || len > n.size - e.file_offset) Fail("R4: extent past EOF", ino);
          end = e.file_offset + len;
        }
        break;
      }
      case S_IFLNK: {
        std::string_view t = r.SymlinkTarget(ino);
        if (t.empty() || t.size() > 4095 || n.size != t.size() || t.size() != n.data_count ||
            t.find('\0') != t.npos) {
          Fail("L4-L6: bad symlink target", ino);
        }
        break;
      }
      case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
        if (n.data_count != 0) Fail("V1: device/FIFO/socket with data", ino);
        break;
      default:
        Fail("T1: unknown file type", ino);
    }
  }
  // D7/D8: every directory but the root is named exactly once, and (what
  // those rules are for) the directories form one tree under the root: all
  // are reachable from it.
  std::vector<bool> reached(count + 1, false);
  std::vector<uint64_t> stack{1};
  reached[1] = true;
  while (!stack.empty()) {
    uint64_t dir = stack.back();
    stack.pop_back();
    for (const DirentRecord& d : r.Dirents(dir)) {
      if (S_ISDIR(r.inode(d.ino).mode) && !reached[d.ino]) {
        reached[d.ino] = true;
        stack.push_back(d.ino);
      }
    }
  }
  for (uint64_t ino = 2; ino <= count; ++ino) {
    if (!S_ISDIR(r.inode(ino).mode)) continue;
    if (named[ino] != 1) Fail("D7/D8: directory not named exactly once", ino);
    if (!reached[ino]) Fail("D8: directory not reachable from the root", ino);
  }
}

void ExerciseReader(const ferry::fs::ImageReader& r) {
  using namespace ferry::fs;
  Touch(r.object_size());
  for (uint64_t ino = 1; ino <= r.inode_count(); ++ino) {
    if (!r.IsValidIno(ino)) Fail("IsValidIno false inside [1, inode_count]", ino);
    const InodeRecord& n = r.inode(ino);
    Touch(n.mode ^ n.uid ^ n.gid ^ n.nlink ^ n.size ^ n.rdev ^ n.parent);

    for (const DirentRecord& d : r.Dirents(ino)) {
      std::string_view name = r.Name(d);
      Touch(name);
      auto found = r.Lookup(ino, name);
      if (!found || *found != d.ino) Fail("Lookup misses a listed entry", ino);
      if (!r.IsValidIno(d.ino)) Fail("entry names an invalid inode", ino);
      // Names next to real ones, to walk the binary search's other branches.
      std::string around(name);
      around.push_back('\0');
      Touch(r.Lookup(ino, around).value_or(0));
      around.back() = '\xff';
      Touch(r.Lookup(ino, around).value_or(0));
      Touch(r.Lookup(ino, name.substr(0, name.size() - 1)).value_or(0));
    }
    Touch(r.Lookup(ino, "").value_or(0));
    Touch(r.Lookup(ino, "..").value_or(0));

    std::string_view target = r.SymlinkTarget(ino);
    Touch(target);
    if (S_ISLNK(n.mode) && (target.empty() || target.size() != n.size)) {
      Fail("bad symlink target", ino);
    }

    for (const XattrRecord& x : r.Xattrs(ino)) {
      Touch(r.XattrName(x));
      Touch(r.XattrValue(x));
    }

    for (const ExtentRecord& e : r.Extents(ino)) {
      if (e.chunk >= r.chunks().size()) Fail("extent names an invalid chunk", ino);
      ferry::chunkstore::ChunkLocation loc = r.Chunk(e.chunk);
      Touch(e.file_offset + loc.offset + loc.clen + loc.ulen + loc.digest.bytes[0] +
            loc.pack.bytes[31]);
    }
  }
  for (uint32_t i = 0; i < r.chunks().size(); ++i) {
    ferry::chunkstore::ChunkLocation loc = r.Chunk(i);
    Touch(loc.offset + loc.clen + loc.ulen + loc.pack.bytes[0]);
  }
  for (const PackRecord& p : r.packs()) Touch(p.digest[0]);
}

void ExerciseFs(ferry::fs::ImageFs& fs) {
  using namespace ferry::fs;
  const ImageReader& r = fs.image();
  const uint64_t count = r.inode_count();
  struct statvfs sv = fs.StatFs();
  Touch(sv.f_blocks + sv.f_files);
  Touch(ferry::fs::ErrnoFor(Status()));

  // Invalid inode numbers must be refused, not indexed.
  for (uint64_t bad : {uint64_t{0}, count + 1, std::numeric_limits<uint64_t>::max()}) {
    if (fs.GetAttr(bad).ok() || fs.Lookup(bad, "x").ok() || fs.ReadLink(bad).ok() ||
        fs.Read(bad, 0, 1).ok() || fs.GetXattr(bad, "user.x").ok() || fs.ListXattr(bad).ok() ||
        fs.Access(bad, R_OK, 0, 0).ok()) {
      Fail("call on an invalid inode succeeded", bad);
    }
  }

  const std::string long_name(300, 'a');
  for (uint64_t ino = 1; ino <= count; ++ino) {
    const InodeRecord& n = r.inode(ino);
    auto st = fs.GetAttr(ino);
    if (!st.ok()) Fail("GetAttr failed on a valid inode", ino);
    Touch(static_cast<uint64_t>(st->st_blocks) + static_cast<uint64_t>(st->st_size));

    for (const DirentRecord& d : r.Dirents(ino)) {
      auto child = fs.Lookup(ino, r.Name(d));
      if (!child.ok() || *child != d.ino) Fail("ImageFs::Lookup misses a listed entry", ino);
    }
    for (std::string_view name : {std::string_view(""), std::string_view("."),
                                  std::string_view(".."), std::string_view(long_name)}) {
      auto res = fs.Lookup(ino, name);
      Touch(ferry::fs::ErrnoFor(res.status()));
    }

    auto link = fs.ReadLink(ino);
    if (link.ok()) Touch(*link);
    Touch(ferry::fs::ErrnoFor(link.status()));

    auto list = fs.ListXattr(ino);
    if (!list.ok()) Fail("ListXattr failed on a valid inode", ino);
    Touch(*list);
    size_t listed = 0;
    for (char c : *list) listed += c == '\0';
    if (listed != r.Xattrs(ino).size()) Fail("ListXattr lists a different number of names", ino);
    for (const XattrRecord& x : r.Xattrs(ino)) {
      auto value = fs.GetXattr(ino, r.XattrName(x));
      if (!value.ok() || *value != r.XattrValue(x)) Fail("GetXattr misses a listed attribute", ino);
      Touch(*value);
    }
    Touch(ferry::fs::ErrnoFor(fs.GetXattr(ino, "").status()));
    Touch(ferry::fs::ErrnoFor(fs.GetXattr(ino, "user.\xff").status()));

    for (int mask : {F_OK, R_OK, W_OK, X_OK, R_OK | X_OK}) {
      Touch(ferry::fs::ErrnoFor(fs.Access(ino, mask, 0, 0)));
      Touch(ferry::fs::ErrnoFor(fs.Access(ino, mask, 1000, 1000)));
      Touch(ferry::fs::ErrnoFor(fs.Access(ino, mask, n.uid, n.gid)));
    }

    // Reads as FUSE issues them: offsets within off_t, sizes up to 1 MiB.
    constexpr uint64_t kMaxOff = std::numeric_limits<int64_t>::max();
    const uint64_t size = n.size;
    const uint64_t offsets[] = {0, 1, 4095, size / 2, size ? size - 1 : 0, size,
                                size < kMaxOff ? size + 1 : kMaxOff, kMaxOff};
    for (uint64_t off : offsets) {
      if (off > kMaxOff) continue;
      for (size_t len : {size_t{1}, size_t{4096}, size_t{1} << 20}) {
        auto res = fs.Read(ino, off, len);
        if (res.ok()) {
          if (res->bytes > len) Fail("Read returned more than asked", ino);
          size_t total = 0;
          for (const struct iovec& v : res->iov) {
            total += v.iov_len;
            if (v.iov_len > 0) {
              Touch(static_cast<const uint8_t*>(v.iov_base)[0]);
              Touch(static_cast<const uint8_t*>(v.iov_base)[v.iov_len - 1]);
            }
          }
          if (total != res->bytes) Fail("Read iovecs disagree with byte count", ino);
        } else {
          Touch(ferry::fs::ErrnoFor(res.status()));
        }
      }
    }
  }
  Touch(fs.StatsJson());
}

void OpenAndExercise(std::vector<uint8_t> bytes) {
  auto reader = ferry::fs::ImageReader::Open(ferry::chunkstore::MakeBlob(std::move(bytes)));
  if (std::getenv("FERRY_FUZZ_VERBOSE")) {
    std::fprintf(stderr, "image_reader_fuzz: Open: %s\n", reader.status().ToString().c_str());
  }
  if (!reader.ok()) {
    if (reader.status().code() != StatusCode::kCorruption) {
      Fail("Open refused an object with a code other than kCorruption", 0);
    }
    return;
  }
  CheckRules(**reader);
  ExerciseReader(**reader);
  FailingStore store;
  // The store always fails: no retries, so each input stays fast.
  ferry::chunkstore::ChunkReaderOptions copt;
  copt.memory_bytes = 1 << 20;
  copt.retry.max_attempts = 1;
  copt.fetch_threads = 1;
  ferry::chunkstore::ChunkReader chunks(&store, copt);
  ferry::fs::ImageFs fs(std::move(*reader), &chunks, [](const std::string& msg) { Touch(msg); });
  ExerciseFs(fs);
}

}  // namespace

// An input that starts like a delta object (docs/format.md 12) is also
// applied to a fixed base, with its trailing checksum recomputed so that
// mutations reach the patch parsing; what it makes, if anything, is opened
// and exercised like any object.
void ApplyAndExercise(std::vector<uint8_t> raw) {
  static const std::vector<uint8_t> base = ferry::fuzz::DeltaFuzzBase();
  if (!ferry::fs::IsDelta(raw) || raw.size() < 16) return;
  Store<uint64_t>(raw, raw.size() - 8, XXH3_64bits(raw.data(), raw.size() - 8));
  auto made = ferry::fs::ApplyDelta(raw, base);
  if (!made.ok()) {
    if (made.status().code() != StatusCode::kCorruption) {
      Fail("ApplyDelta refused a delta with a code other than kCorruption", 0);
    }
    return;
  }
  OpenAndExercise(std::move(*made));
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> raw(data, data + size);
  ApplyAndExercise(raw);
  OpenAndExercise(raw);
  if (FixChecksums(raw)) OpenAndExercise(std::move(raw));
  return 0;
}
