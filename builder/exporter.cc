#include "builder/exporter.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

namespace ferry::builder {
namespace {

// libarchive may fail without setting a message.
std::string ArchiveError(struct archive* a) {
  const char* msg = archive_error_string(a);
  return msg ? msg : "unknown libarchive error";
}

struct ArchiveWriteCloser {
  void operator()(struct archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(struct archive_entry* e) const { archive_entry_free(e); }
};

class TarExporter {
 public:
  TarExporter(const fs::ImageReader& image, chunkstore::ChunkReader& chunks, struct archive* a)
      : image_(image), chunks_(chunks), a_(a) {}

  Status Walk(uint64_t dir, const std::string& prefix) {
    for (const fs::DirentRecord& d : image_.Dirents(dir)) {
      std::string path = prefix + std::string(image_.Name(d));
      RETURN_IF_ERROR(WriteEntry(d.ino, path));
      if (S_ISDIR(image_.inode(d.ino).mode)) RETURN_IF_ERROR(Walk(d.ino, path + "/"));
    }
    return Status::Ok();
  }

  Status WriteEntry(uint64_t ino, const std::string& path) {
    const fs::InodeRecord& n = image_.inode(ino);
    if (S_ISSOCK(n.mode)) {
      ++summary.skipped_sockets;
      return Status::Ok();
    }
    std::unique_ptr<struct archive_entry, EntryFree> e(archive_entry_new());
    archive_entry_copy_pathname(e.get(), path.c_str());
    archive_entry_set_mode(e.get(), n.mode);
    archive_entry_set_uid(e.get(), n.uid);
    archive_entry_set_gid(e.get(), n.gid);
    archive_entry_set_mtime(e.get(), n.mtime_sec, n.mtime_nsec);
    archive_entry_set_atime(e.get(), n.atime_sec, n.atime_nsec);
    archive_entry_set_ctime(e.get(), n.ctime_sec, n.ctime_nsec);
    for (const fs::XattrRecord& x : image_.Xattrs(ino)) {
      std::string name(image_.XattrName(x));
      std::string_view value = image_.XattrValue(x);
      archive_entry_xattr_add_entry(e.get(), name.c_str(), value.data(), value.size());
    }
    bool data = false;
    if (!S_ISDIR(n.mode) && n.nlink > 1) {
      // Any non-directory can have several names; later ones are links.
      auto [it, fresh] = first_name_.emplace(ino, path);
      if (!fresh) {
        archive_entry_copy_hardlink(e.get(), it->second.c_str());
        archive_entry_set_size(e.get(), 0);
        return Write(e.get(), path);
      }
    }
    if (S_ISREG(n.mode)) {
      archive_entry_set_size(e.get(), static_cast<la_int64_t>(n.size));
      auto extents = image_.Extents(ino);
      uint64_t covered = 0;
      for (const fs::ExtentRecord& x : extents) covered += image_.Chunk(x.chunk).ulen;
      if (covered < n.size) {
        // Sparse: describe the data regions (adjacent extents merged).
        uint64_t start = 0, end = 0;
        bool open = false;
        for (const fs::ExtentRecord& x : extents) {
          uint64_t len = image_.Chunk(x.chunk).ulen;
          if (open && x.file_offset == end) {
            end += len;
            continue;
          }
          if (open) archive_entry_sparse_add_entry(e.get(), start, end - start);
          start = x.file_offset;
          end = start + len;
          open = true;
        }
        if (open) archive_entry_sparse_add_entry(e.get(), start, end - start);
        else archive_entry_sparse_add_entry(e.get(), 0, 0);
      }
      data = true;
    } else if (S_ISLNK(n.mode)) {
      archive_entry_copy_symlink(e.get(), std::string(image_.SymlinkTarget(ino)).c_str());
    } else if (S_ISCHR(n.mode) || S_ISBLK(n.mode)) {
      archive_entry_set_rdev(e.get(), n.rdev);
    }
    RETURN_IF_ERROR(Write(e.get(), path));
    if (data) RETURN_IF_ERROR(WriteData(ino, path));
    return Status::Ok();
  }

  Status Write(struct archive_entry* e, const std::string& path) {
    if (archive_write_header(a_, e) < ARCHIVE_WARN) {
      return InternalError("write tar entry '" + path + "': " + ArchiveError(a_));
    }
    ++summary.entries;
    return Status::Ok();
  }

  // Writes the file's full logical contents; libarchive drops the bytes
  // that fall in holes of the sparse map.
  Status WriteData(uint64_t ino, const std::string& path) {
    const fs::InodeRecord& n = image_.inode(ino);
    static const std::vector<uint8_t> zeros(1 << 20, 0);
    uint64_t pos = 0;
    auto put = [&](const uint8_t* p, size_t len) -> Status {
      while (len > 0) {
        la_ssize_t w = archive_write_data(a_, p, len);
        if (w <= 0) {
          return Status(StatusCode::kIoError, "write tar data of '" + path + "': " +
                        ArchiveError(a_));
        }
        p += w;
        len -= static_cast<size_t>(w);
      }
      return Status::Ok();
    };
    auto zero_fill = [&](uint64_t until) -> Status {
      while (pos < until) {
        size_t len = static_cast<size_t>(std::min<uint64_t>(zeros.size(), until - pos));
        RETURN_IF_ERROR(put(zeros.data(), len));
        pos += len;
      }
      return Status::Ok();
    };
    for (const fs::ExtentRecord& x : image_.Extents(ino)) {
      RETURN_IF_ERROR(zero_fill(x.file_offset));
      auto chunk = chunks_.Read(image_.Chunk(x.chunk));
      if (!chunk.ok()) return chunk.status().Annotate("export '" + path + "'");
      RETURN_IF_ERROR(put((*chunk)->data(), (*chunk)->size()));
      pos += (*chunk)->size();
      summary.bytes += (*chunk)->size();
    }
    return zero_fill(n.size);
  }

  ExportSummary summary;

 private:
  const fs::ImageReader& image_;
  chunkstore::ChunkReader& chunks_;
  struct archive* a_;
  std::unordered_map<uint64_t, std::string> first_name_;
};

}  // namespace

Result<ExportSummary> ExportImage(const fs::ImageReader& image, chunkstore::ChunkReader& chunks,
                                  const std::string& out_path) {
  std::unique_ptr<struct archive, ArchiveWriteCloser> a(archive_write_new());
  archive_write_set_format_pax(a.get());
  bool to_stdout = out_path == "-";
  std::string tmp = to_stdout ? "" : out_path + ".partial";
  int rc = to_stdout ? archive_write_open_fd(a.get(), STDOUT_FILENO)
                     : archive_write_open_filename(a.get(), tmp.c_str());
  if (rc != ARCHIVE_OK) {
    return Status(StatusCode::kIoError, "open " + (to_stdout ? "stdout" : tmp) + ": " +
                  ArchiveError(a.get()));
  }
  TarExporter exporter(image, chunks, a.get());
  // The root directory's own metadata goes first, as "./".
  Status st = exporter.WriteEntry(fs::kRootIno, "./");
  if (st.ok()) st = exporter.Walk(fs::kRootIno, "./");
  if (st.ok() && archive_write_close(a.get()) != ARCHIVE_OK) {
    st = Status(StatusCode::kIoError, "finish " + out_path + ": " + ArchiveError(a.get()));
  }
  if (!st.ok()) {
    if (!to_stdout) unlink(tmp.c_str());
    return st;
  }
  if (!to_stdout && rename(tmp.c_str(), out_path.c_str()) != 0) {
    Status err = ErrnoError("rename " + tmp + " -> " + out_path);
    unlink(tmp.c_str());
    return err;
  }
  return exporter.summary;
}

}  // namespace ferry::builder
