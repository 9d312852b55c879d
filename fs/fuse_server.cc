// The FUSE glue: each handler asks ImageFs for an answer and replies to the
// kernel exactly once. Nothing here throws into libfuse: allocation failures
// become ENOMEM.
#define FUSE_USE_VERSION 312
#include "fs/fuse_server.h"

#include <fuse_lowlevel.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

namespace ferry::fs {
namespace {

constexpr double kForever = 86400.0 * 365;  // the image never changes
constexpr char kStatsXattr[] = "user.ferry.stats";

ImageFs* Fs(fuse_req_t req) { return static_cast<ImageFs*>(fuse_req_userdata(req)); }

bool FillEntry(ImageFs* fs, uint64_t ino, struct fuse_entry_param* e) {
  auto st = fs->GetAttr(ino);
  if (!st.ok()) return false;
  std::memset(e, 0, sizeof(*e));
  e->ino = ino;
  e->generation = 1;
  e->attr = *st;
  e->attr_timeout = kForever;
  e->entry_timeout = kForever;
  return true;
}

// Whether the kernel can do without OPEN and OPENDIR requests (Linux 5.1+):
// the first one answered ENOSYS makes it stop sending them, and it then keeps
// the page cache and caches directory listings by default, which is what an
// immutable image wants; opening a file costs no trip to user space.
std::atomic<bool> g_no_open{false}, g_no_opendir{false};

void OnInit(void*, struct fuse_conn_info* conn) {
  g_no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
  g_no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
  conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  conn->want &= ~(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_WRITEBACK_CACHE);
  conn->time_gran = 1;
  conn->max_background = 64;
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ImageFs* fs = Fs(req);
  auto ino = fs->Lookup(parent, name);
  struct fuse_entry_param e;
  if (!ino.ok()) {
    if (ino.status().code() == StatusCode::kNotFound) {
      // A negative entry the kernel may cache: the image never changes.
      std::memset(&e, 0, sizeof(e));
      e.entry_timeout = kForever;
      fuse_reply_entry(req, &e);
      return;
    }
    fuse_reply_err(req, ErrnoFor(ino.status()));
    return;
  }
  if (!FillEntry(fs, *ino, &e)) {
    fuse_reply_err(req, EIO);
    return;
  }
  fuse_reply_entry(req, &e);
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info*) {
  auto st = Fs(req)->GetAttr(ino);
  if (!st.ok()) {
    fuse_reply_err(req, ErrnoFor(st.status()));
    return;
  }
  fuse_reply_attr(req, &*st, kForever);
}

void OnReadlink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Fs(req)->ReadLink(ino);
  if (!target.ok()) {
    fuse_reply_err(req, ErrnoFor(target.status()));
    return;
  }
  fuse_reply_readlink(req, std::string(*target).c_str());
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (g_no_open) {
    // The mount is read-only, so the kernel refuses writable opens itself.
    fuse_reply_err(req, ENOSYS);
    return;
  }
  auto st = Fs(req)->GetAttr(ino);
  if (!st.ok()) {
    fuse_reply_err(req, ErrnoFor(st.status()));
    return;
  }
  if (S_ISDIR(st->st_mode)) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  fi->keep_cache = 1;  // contents never change: keep the page cache across opens
  fi->noflush = 1;
  fuse_reply_open(req, fi);
}

void OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info*) {
  try {
    auto res = Fs(req)->Read(ino, static_cast<uint64_t>(off), size);
    if (!res.ok()) {
      fuse_reply_err(req, ErrnoFor(res.status()));
      return;
    }
    fuse_reply_iov(req, res->iov.data(), static_cast<int>(res->iov.size()));
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  }
}

void OnLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info*) {
  auto res = Fs(req)->Seek(ino, static_cast<uint64_t>(off), whence);
  if (!res.ok()) {
    fuse_reply_err(req, ErrnoFor(res.status()));
    return;
  }
  fuse_reply_lseek(req, static_cast<off_t>(*res));
}

void OnOpendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto st = Fs(req)->GetAttr(ino);
  if (!st.ok()) {
    fuse_reply_err(req, ErrnoFor(st.status()));
    return;
  }
  if (!S_ISDIR(st->st_mode)) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  if (g_no_opendir) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  fi->keep_cache = 1;
  fi->cache_readdir = 1;
  fuse_reply_open(req, fi);
}

// Directory offsets: 1 is ".", 2 is "..", 3 + i is entry i.
void Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  ImageFs* fs = Fs(req);
  const ImageReader& image = fs->image();
  if (!image.IsValidIno(ino) || !S_ISDIR(image.inode(ino).mode)) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  std::vector<char> buf;
  try {
    buf.resize(size);
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  auto entries = image.Dirents(ino);
  size_t used = 0;
  for (uint64_t pos = static_cast<uint64_t>(off); pos < entries.size() + 2; ++pos) {
    std::string name;
    uint64_t child;
    if (pos == 0) {
      name = ".";
      child = ino;
    } else if (pos == 1) {
      name = "..";
      child = image.inode(ino).parent;
    } else {
      name = std::string(image.Name(entries[pos - 2]));
      child = entries[pos - 2].ino;
    }
    size_t n;
    if (plus) {
      struct fuse_entry_param e;
      FillEntry(fs, child, &e);
      if (pos < 2) {
        // The kernel does not take a lookup reference for "." and "..".
        e.ino = child;
        e.entry_timeout = 0;
        e.attr_timeout = 0;
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &e,
                                 static_cast<off_t>(pos + 1));
    } else {
      struct stat st{};
      st.st_ino = child;
      st.st_mode = image.inode(child).mode;
      n = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &st,
                            static_cast<off_t>(pos + 1));
    }
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info*) {
  Readdir(req, ino, size, off, false);
}
void OnReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info*) {
  Readdir(req, ino, size, off, true);
}

void OnStatfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs s = Fs(req)->StatFs();
  fuse_reply_statfs(req, &s);
}

void ReplyXattr(fuse_req_t req, std::string_view value, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (size < value.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void OnGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  ImageFs* fs = Fs(req);
  auto value = fs->GetXattr(ino, name);
  if (!value.ok()) {
    if (value.status().code() == StatusCode::kNotFound) {
      if (ino == FUSE_ROOT_ID && std::strcmp(name, kStatsXattr) == 0) {
        ReplyXattr(req, fs->StatsJson(), size);  // `ferry stats MOUNTPOINT`
        return;
      }
      fuse_reply_err(req, ENODATA);
      return;
    }
    fuse_reply_err(req, ErrnoFor(value.status()));
    return;
  }
  ReplyXattr(req, *value, size);
}

void OnListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto names = Fs(req)->ListXattr(ino);
  if (!names.ok()) {
    fuse_reply_err(req, ErrnoFor(names.status()));
    return;
  }
  ReplyXattr(req, *names, size);
}

void OnAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  fuse_reply_err(req, ErrnoFor(Fs(req)->Access(ino, mask, ctx->uid, ctx->gid)));
}

// Every call that would change the image.
void ErofsSetattr(fuse_req_t req, fuse_ino_t, struct stat*, int, struct fuse_file_info*) { fuse_reply_err(req, EROFS); }
void ErofsMknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { fuse_reply_err(req, EROFS); }
void ErofsMkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { fuse_reply_err(req, EROFS); }
void ErofsUnlink(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void ErofsSymlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void ErofsRename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) { fuse_reply_err(req, EROFS); }
void ErofsLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void ErofsWrite(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, struct fuse_file_info*) { fuse_reply_err(req, EROFS); }
void ErofsSetxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) { fuse_reply_err(req, EROFS); }
void ErofsRemovexattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void ErofsCreate(fuse_req_t req, fuse_ino_t, const char*, mode_t, struct fuse_file_info*) { fuse_reply_err(req, EROFS); }
void ErofsFallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, struct fuse_file_info*) { fuse_reply_err(req, EROFS); }

struct fuse_lowlevel_ops MakeOps() {
  struct fuse_lowlevel_ops ops{};
  ops.init = OnInit;
  ops.lookup = OnLookup;
  ops.getattr = OnGetattr;
  ops.readlink = OnReadlink;
  ops.open = OnOpen;
  ops.read = OnRead;
  ops.lseek = OnLseek;
  ops.opendir = OnOpendir;
  ops.readdir = OnReaddir;
  ops.readdirplus = OnReaddirplus;
  ops.statfs = OnStatfs;
  ops.getxattr = OnGetxattr;
  ops.listxattr = OnListxattr;
  ops.access = OnAccess;
  ops.setattr = ErofsSetattr;
  ops.mknod = ErofsMknod;
  ops.mkdir = ErofsMkdir;
  ops.unlink = ErofsUnlink;
  ops.rmdir = ErofsUnlink;
  ops.symlink = ErofsSymlink;
  ops.rename = ErofsRename;
  ops.link = ErofsLink;
  ops.write = ErofsWrite;
  ops.setxattr = ErofsSetxattr;
  ops.removexattr = ErofsRemovexattr;
  ops.create = ErofsCreate;
  ops.fallocate = ErofsFallocate;
  return ops;
}

}  // namespace

FuseServer::FuseServer(ImageFs* fs, FuseOptions opt) : fs_(fs), opt_(std::move(opt)) {}

FuseServer::~FuseServer() {
  if (se_ != nullptr) {
    if (signals_) fuse_remove_signal_handlers(se_);
    if (mounted_) fuse_session_unmount(se_);
    fuse_session_destroy(se_);
  }
}

Status FuseServer::Mount(const std::string& mountpoint) {
  std::vector<std::string> args = {"ferry", "-o", "ro,default_permissions,fsname=" + opt_.fsname +
                                                      ",subtype=ferry"};
  if (opt_.allow_other) args.back() += ",allow_other";
  if (opt_.debug) args.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  struct fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  static const struct fuse_lowlevel_ops ops = MakeOps();
  se_ = fuse_session_new(&fargs, &ops, sizeof(ops), fs_);
  if (se_ == nullptr) return InternalError("cannot create FUSE session");
  if (fuse_session_mount(se_, mountpoint.c_str()) != 0) {
    return Status(StatusCode::kFailedPrecondition,
                  "cannot mount FUSE at " + mountpoint +
                      " (is /dev/fuse available, the directory present, and are you root or "
                      "allowed to use fusermount3?)");
  }
  mounted_ = true;
  mountpoint_ = mountpoint;
  return Status::Ok();
}

void FuseServer::Detach() {
  if (mounted_) umount2(mountpoint_.c_str(), MNT_DETACH);
}

Status FuseServer::Daemonize() {
  if (fuse_daemonize(0) != 0) return InternalError("cannot detach into the background");
  return Status::Ok();
}

Status FuseServer::Serve() {
  if (opt_.handle_signals && fuse_set_signal_handlers(se_) == 0) signals_ = true;
  struct fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 1);
  fuse_loop_cfg_set_max_threads(cfg, opt_.max_threads);
  fuse_loop_cfg_set_idle_threads(cfg, opt_.idle_threads);
  int rc = fuse_session_loop_mt(se_, cfg);
  fuse_loop_cfg_destroy(cfg);
  if (rc != 0 && !fuse_session_exited(se_)) {
    return InternalError("FUSE loop failed: " + std::string(std::strerror(rc > 0 ? rc : -rc)));
  }
  return Status::Ok();
}

}  // namespace ferry::fs
