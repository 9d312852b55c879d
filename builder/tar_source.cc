// The tar source of ImageBuilder: one archive (plain, gzip, zstd, xz, bzip2)
// applied as a layer, contents ingested while the archive streams by.
// Archives are untrusted: every path goes through Tree, which refuses any
// entry that would land outside the image root.
#include <algorithm>
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <memory>

#include "builder/elf_loads.h"
#include "builder/python_imports.h"
#include "builder/image_builder.h"

namespace ferry::builder {
namespace {

// libarchive may fail without setting a message.
std::string ArchiveError(struct archive* a) {
  const char* msg = archive_error_string(a);
  return msg ? msg : "unknown libarchive error";
}

// Larger than any real file; a bigger declared size is hostile or corrupt.
constexpr int64_t kMaxFileSize = int64_t{1} << 50;

struct ArchiveReadCloser {
  void operator()(struct archive* a) const { archive_read_free(a); }
};

std::string EntryName(struct archive_entry* e) {
  const char* p = archive_entry_pathname(e);
  return p ? p : "(unnamed)";
}

}  // namespace

Status ImageBuilder::AddTar(const std::string& path) {
  RETURN_IF_ERROR(LoadIndexOnce());
  std::unique_ptr<struct archive, ArchiveReadCloser> a(archive_read_new());
  if (!a) return InternalError("libarchive: out of memory");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 20) != ARCHIVE_OK) {
    return InvalidArgumentError("cannot open archive " + path + ": " +
                                ArchiveError(a.get()));
  }
  int layer = layers_++;
  tree_.set_layer(layer);
  struct archive_entry* entry;
  for (;;) {
    int rc = archive_read_next_header(a.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) {
      return CorruptionError("archive " + path + ": " + ArchiveError(a.get()));
    }
    std::string name = EntryName(entry);
    std::string where = "archive " + path + ", entry '" + name + "'";
    ASSIGN_OR_RETURN(bool whiteout, tree_.ApplyWhiteout(name, layer));
    if (whiteout) continue;

    if (const char* target = archive_entry_hardlink(entry)) {
      auto node = tree_.Get(target);
      if (!node.ok()) {
        return InvalidArgumentError(where + ": hard link to '" + target +
                                    "': " + node.status().message());
      }
      if (S_ISDIR((*node)->mode)) {
        return InvalidArgumentError(where + ": hard link to a directory");
      }
      RETURN_IF_ERROR(tree_.Put(name, *node).Annotate(path));
      continue;
    }

    auto node = std::make_shared<TreeNode>();
    node->layer = layer;
    node->mode = archive_entry_mode(entry);
    node->uid = static_cast<uint32_t>(archive_entry_uid(entry));
    node->gid = static_cast<uint32_t>(archive_entry_gid(entry));
    node->mtime = {archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)};
    node->atime = archive_entry_atime_is_set(entry)
                      ? timespec{archive_entry_atime(entry), archive_entry_atime_nsec(entry)}
                      : node->mtime;
    node->ctime = archive_entry_ctime_is_set(entry)
                      ? timespec{archive_entry_ctime(entry), archive_entry_ctime_nsec(entry)}
                      : node->mtime;
    if (node->mtime.tv_nsec < 0 || node->mtime.tv_nsec >= 1000000000 ||
        node->atime.tv_nsec < 0 || node->atime.tv_nsec >= 1000000000 ||
        node->ctime.tv_nsec < 0 || node->ctime.tv_nsec >= 1000000000) {
      return InvalidArgumentError(where + ": invalid timestamp");
    }
    archive_entry_xattr_reset(entry);
    const char* xname;
    const void* xvalue;
    size_t xsize;
    while (archive_entry_xattr_next(entry, &xname, &xvalue, &xsize) == ARCHIVE_OK) {
      if (xname == nullptr || *xname == '\0' || std::string_view(xname).size() > 255 ||
          xsize > 65536) {
        return InvalidArgumentError(where + ": invalid extended attribute");
      }
      // libarchive's pax writer stores each attribute twice (LIBARCHIVE.xattr
      // and SCHILY.xattr) and its reader may hand both back: one name is
      // one attribute, and the last value given wins, as on extraction.
      std::string value(static_cast<const char*>(xvalue), xsize);
      auto same = std::find_if(node->xattrs.begin(), node->xattrs.end(),
                               [&](const auto& x) { return x.first == xname; });
      if (same != node->xattrs.end()) {
        same->second = std::move(value);
      } else {
        node->xattrs.emplace_back(xname, std::move(value));
      }
    }
    switch (node->mode & S_IFMT) {
      case S_IFREG: {
        int64_t size = archive_entry_size(entry);
        if (size < 0 || size > kMaxFileSize) {
          return InvalidArgumentError(where + ": absurd file size " + std::to_string(size));
        }
        node->size = static_cast<uint64_t>(size);
        // Check the path before reading the data, so a hostile entry is named
        // before anything else happens.
        RETURN_IF_ERROR(Tree::SplitPath(name).status());
        const void* buf;
        size_t len;
        int64_t offset;
        uint64_t expect = 0;
        bool open = false;
        ElfCollector elf(node->size);
        PyCollector py(name, node->size);
        for (;;) {
          int r = archive_read_data_block(a.get(), &buf, &len, &offset);
          if (r == ARCHIVE_EOF) break;
          if (r < ARCHIVE_WARN) {
            return CorruptionError(where + ": " + ArchiveError(a.get()));
          }
          if (len == 0) continue;
          if (offset < 0 || static_cast<uint64_t>(offset) < expect ||
              static_cast<uint64_t>(offset) > node->size ||
              len > node->size - static_cast<uint64_t>(offset)) {
            return CorruptionError(where + ": data outside the declared file size");
          }
          if (!open || static_cast<uint64_t>(offset) != expect) {
            if (open) RETURN_IF_ERROR(ingester_->EndRegion());
            ingester_->BeginRegion(&node->extents, static_cast<uint64_t>(offset));
            open = true;
          }
          RETURN_IF_ERROR(ingester_->Write({static_cast<const uint8_t*>(buf), len}));
          elf.Add(static_cast<uint64_t>(offset), {static_cast<const uint8_t*>(buf), len});
          py.Add(static_cast<uint64_t>(offset), {static_cast<const uint8_t*>(buf), len});
          progress_->AddBytes(len);
          expect = static_cast<uint64_t>(offset) + len;
        }
        if (open) RETURN_IF_ERROR(ingester_->EndRegion());
        node->elf = elf.Finish();
        node->py = py.Finish();
        break;
      }
      case S_IFLNK: {
        const char* target = archive_entry_symlink(entry);
        if (target == nullptr || *target == '\0' || std::string_view(target).size() > 4095) {
          return InvalidArgumentError(where + ": invalid symlink target");
        }
        node->symlink = target;
        break;
      }
      case S_IFCHR:
      case S_IFBLK:
        node->rdev = archive_entry_rdev(entry);
        break;
      case S_IFDIR:
      case S_IFIFO:
      case S_IFSOCK:
        break;
      default:
        return InvalidArgumentError(where + ": unsupported entry type");
    }
    progress_->AddFile();
    if (S_ISREG(node->mode)) keep_alive_.push_back(node);
    RETURN_IF_ERROR(tree_.Put(name, std::move(node)).Annotate("archive " + path));
  }
  return Status::Ok();
}

}  // namespace ferry::builder
