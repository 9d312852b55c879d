// The image metadata object: on-disk records, used in place (mmap).
//
// Byte-level description: docs/format.md. All integers little-endian; every
// section starts 8-byte aligned; records are fixed-size and read in place
// after ImageReader::Open has validated the whole object once.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ferry::fs {

inline constexpr char kImageMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'I', 'M', 'G'};
inline constexpr uint32_t kImageVersion = 1;
inline constexpr size_t kImageHeaderSize = 64;
inline constexpr size_t kSectionEntrySize = 32;
inline constexpr uint32_t kRootIno = 1;
// Upper bounds a reader enforces on a chunk, so that a hostile image cannot
// make one read allocate without bound.
inline constexpr uint32_t kMaxChunkSize = 16u << 20;
inline constexpr uint32_t kMaxFrameSize = kMaxChunkSize + (1u << 20);

enum SectionId : uint32_t {
  kSectionInodes = 1,
  kSectionDirents = 2,
  kSectionExtents = 3,
  kSectionChunks = 4,
  kSectionPacks = 5,
  kSectionXattrs = 6,
  kSectionStrings = 7,
  kSectionLoads = 8,  // optional
  kSectionEarly = 9,  // optional
};
// Sections every image has (1..7); LOADS and EARLY may follow.
inline constexpr uint32_t kSectionCount = 7;

struct ImageHeader {
  char magic[8];
  uint32_t version;
  uint32_t section_count;
  uint64_t inode_count;
  uint64_t object_size;
  uint64_t reserved[3];
  uint64_t header_xxh3;  // XXH3-64 of bytes [0, 64 + table size) with this field zero
};

struct SectionEntry {
  uint32_t id;
  uint32_t record_size;
  uint64_t offset;
  uint64_t size;
  uint64_t xxh3;  // XXH3-64 of the section's bytes
};

struct InodeRecord {
  uint32_t mode;   // type and permission bits as in st_mode
  uint32_t uid;
  uint32_t gid;
  uint32_t nlink;
  uint64_t size;   // regular: file size; symlink: target length; dir: 0
  uint64_t rdev;
  int64_t atime_sec;
  int64_t mtime_sec;
  int64_t ctime_sec;
  uint32_t atime_nsec;
  uint32_t mtime_nsec;
  uint32_t ctime_nsec;
  uint32_t xattr_count;
  uint64_t xattr_first;  // index into XATTRS
  uint64_t data_first;   // dir: DIRENTS index; reg: EXTENTS index; lnk: STRINGS offset
  uint64_t data_count;   // dir: entries; reg: extents; lnk: target length
  uint32_t parent;       // dir: parent directory (root: itself); else 0
  uint32_t reserved;
};

struct DirentRecord {
  uint64_t name_off;  // STRINGS offset
  uint16_t name_len;  // 1..255
  uint16_t reserved;
  uint32_t ino;
};

struct ExtentRecord {
  uint64_t file_offset;
  uint32_t chunk;  // CHUNKS index; the extent's length is that chunk's ulen
  uint32_t reserved;
};

struct ChunkRecord {
  uint8_t digest[32];
  uint64_t pack_offset;
  uint32_t clen;
  uint32_t ulen;
  uint32_t pack;  // PACKS index
  uint32_t reserved;
};

struct PackRecord {
  uint8_t digest[32];
};

struct XattrRecord {
  uint64_t name_off;
  uint64_t value_off;
  uint32_t name_len;
  uint32_t value_len;
};

static_assert(sizeof(ImageHeader) == kImageHeaderSize);
// LOADS: what a program file loads when it runs, found by the builder in
// its ELF headers (the interpreter, /etc/ld.so.cache, the DT_NEEDED
// libraries, transitively), so that the first read of the program can
// fetch them before the loader asks. Sorted by `ino`; the records of one
// `ino` are in load order.
struct LoadRecord {
  uint32_t ino;  // a regular file
  uint32_t dep;  // a regular file it loads
};

// EARLY: byte ranges of a program or library that its loader touches as
// soon as it maps the file, before any code runs (builder/elf_loads.h), so
// that a first miss fetches them ahead of the rest of the file. Sorted by
// (`ino`, `offset`); ranges of one file do not overlap.
struct EarlyRecord {
  uint32_t ino;       // a regular file
  uint32_t reserved;  // 0
  uint64_t offset;
  uint64_t length;    // > 0; offset + length <= the file's size
};

static_assert(sizeof(SectionEntry) == kSectionEntrySize);
static_assert(sizeof(LoadRecord) == 8);
static_assert(sizeof(EarlyRecord) == 24);
static_assert(sizeof(InodeRecord) == 104);
static_assert(sizeof(DirentRecord) == 16);
static_assert(sizeof(ExtentRecord) == 16);
static_assert(sizeof(ChunkRecord) == 56);
static_assert(sizeof(PackRecord) == 32);
static_assert(sizeof(XattrRecord) == 24);

}  // namespace ferry::fs
