#include "chunkstore/file_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

namespace ferry::chunkstore {
namespace {

constexpr size_t kMaxCachedFds = 512;

class VectorBlob final : public Blob {
 public:
  explicit VectorBlob(std::vector<uint8_t> d) : data_(std::move(d)) {}
  std::span<const uint8_t> bytes() const override { return data_; }

 private:
  std::vector<uint8_t> data_;
};

class MappedBlob final : public Blob {
 public:
  MappedBlob(void* addr, size_t size) : addr_(addr), size_(size) {}
  ~MappedBlob() override {
    if (size_ > 0) munmap(addr_, size_);
  }
  std::span<const uint8_t> bytes() const override {
    return {static_cast<const uint8_t*>(addr_), size_};
  }

 private:
  void* addr_;
  size_t size_;
};

Status WriteAll(int fd, std::span<const uint8_t> data, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("write " + what);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status FsyncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + dir);
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return ErrnoError("fsync " + dir, err);
  return Status::Ok();
}

}  // namespace

std::shared_ptr<const Blob> MakeBlob(std::vector<uint8_t> data) {
  return std::make_shared<VectorBlob>(std::move(data));
}

Result<std::shared_ptr<const Blob>> MapFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return ErrnoError("stat " + path, err);
  }
  size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    close(fd);
    return std::shared_ptr<const Blob>(std::make_shared<MappedBlob>(nullptr, 0));
  }
  void* addr = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  close(fd);
  if (addr == MAP_FAILED) return ErrnoError("mmap " + path, err);
  return std::shared_ptr<const Blob>(std::make_shared<MappedBlob>(addr, size));
}

FileStore::OpenFile::~OpenFile() { close(fd); }

Result<std::unique_ptr<FileStore>> FileStore::Open(const std::string& root) {
  if (root.empty() || root[0] != '/') {
    return InvalidArgumentError("file store root must be an absolute path: '" + root + "'");
  }
  std::error_code ec;
  std::filesystem::create_directories(root + "/.tmp", ec);
  if (ec) return ErrnoError("create store directory " + root, ec.value());
  return std::unique_ptr<FileStore>(new FileStore(root));
}

FileStore::~FileStore() = default;

std::string FileStore::TempPath(const std::string& hint) {
  std::lock_guard<std::mutex> lock(mu_);
  return root_ + "/.tmp/" + hint + "." + std::to_string(getpid()) + "." +
         std::to_string(++tmp_counter_);
}

Status FileStore::MakeParents(const std::string& key) {
  auto slash = key.rfind('/');
  if (slash == std::string::npos) return Status::Ok();
  std::error_code ec;
  std::filesystem::create_directories(root_ + "/" + key.substr(0, slash), ec);
  if (ec) return ErrnoError("create directory for " + key, ec.value());
  return Status::Ok();
}

Status FileStore::Publish(const std::string& tmp, const std::string& key) {
  RETURN_IF_ERROR(MakeParents(key));
  std::string final_path = root_ + "/" + key;
  if (rename(tmp.c_str(), final_path.c_str()) != 0) {
    Status st = ErrnoError("rename " + tmp + " -> " + final_path);
    unlink(tmp.c_str());
    return st;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = fds_.find(key);  // an overwritten object must not be read stale
    if (it != fds_.end()) {
      lru_.erase(it->second.second);
      fds_.erase(it);
    }
  }
  return FsyncDir(final_path.substr(0, final_path.rfind('/')));
}

Status FileStore::Put(const std::string& key, std::span<const uint8_t> data) {
  if (!IsValidKey(key)) return InvalidArgumentError("invalid object key '" + key + "'");
  std::string tmp = TempPath("put");
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create " + tmp);
  Status st = WriteAll(fd, data, tmp);
  if (st.ok() && fsync(fd) != 0) st = ErrnoError("fsync " + tmp);
  close(fd);
  if (!st.ok()) {
    unlink(tmp.c_str());
    return st;
  }
  return Publish(tmp, key);
}

Status FileStore::PutFile(const std::string& key, const std::string& path) {
  if (!IsValidKey(key)) return InvalidArgumentError("invalid object key '" + key + "'");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + path);
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return ErrnoError("fsync " + path, err);
  // Same filesystem: a rename. Otherwise copy through Put.
  RETURN_IF_ERROR(MakeParents(key));
  std::string tmp = TempPath("putfile");
  if (link(path.c_str(), tmp.c_str()) == 0) {
    unlink(path.c_str());
    return Publish(tmp, key);
  }
  ASSIGN_OR_RETURN(auto blob, MapFile(path));
  RETURN_IF_ERROR(Put(key, blob->bytes()));
  unlink(path.c_str());
  return Status::Ok();
}

Result<std::shared_ptr<FileStore::OpenFile>> FileStore::CachedFile(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = fds_.find(key);
    if (it != fds_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.second);
      return it->second.first;
    }
  }
  std::string path = root_ + "/" + key;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open object " + key + " in " + Url());
  auto file = std::make_shared<OpenFile>(fd);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = fds_.find(key);
  if (it != fds_.end()) return it->second.first;  // another thread won
  lru_.push_front(key);
  fds_.emplace(key, std::make_pair(file, lru_.begin()));
  while (fds_.size() > kMaxCachedFds) {
    fds_.erase(lru_.back());
    lru_.pop_back();
  }
  return file;
}

Result<std::shared_ptr<const Blob>> FileStore::Get(const std::string& key) {
  if (!IsValidKey(key)) return InvalidArgumentError("invalid object key '" + key + "'");
  auto blob = MapFile(root_ + "/" + key);
  if (!blob.ok()) return blob.status().Annotate("object " + key + " in " + Url());
  return blob;
}

Status FileStore::GetRange(const std::string& key, uint64_t offset, std::span<uint8_t> out) {
  if (!IsValidKey(key)) return InvalidArgumentError("invalid object key '" + key + "'");
  ASSIGN_OR_RETURN(auto file, CachedFile(key));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = pread(file->fd, out.data() + done, out.size() - done,
                      static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("read object " + key);
    }
    if (n == 0) {
      return CorruptionError("object " + key + " is shorter than expected: range [" +
                             std::to_string(offset) + ", +" + std::to_string(out.size()) +
                             ") ends past its end");
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<uint64_t> FileStore::Size(const std::string& key) {
  if (!IsValidKey(key)) return InvalidArgumentError("invalid object key '" + key + "'");
  struct stat st;
  if (stat((root_ + "/" + key).c_str(), &st) != 0) return ErrnoError("stat object " + key);
  return static_cast<uint64_t>(st.st_size);
}

Result<std::vector<std::string>> FileStore::List(const std::string& prefix) {
  std::vector<std::string> keys;
  std::string dir = prefix.substr(0, prefix.rfind('/') == std::string::npos ? 0 : prefix.rfind('/'));
  std::string base = root_ + (dir.empty() ? "" : "/" + dir);
  std::error_code ec;
  if (!std::filesystem::exists(base, ec)) return keys;
  std::filesystem::recursive_directory_iterator it(base, ec), end;
  if (ec) return ErrnoError("list " + base, ec.value());
  for (; it != end; it.increment(ec)) {
    if (ec) return ErrnoError("list " + base, ec.value());
    if (!it->is_regular_file(ec)) continue;
    std::string rel = it->path().string().substr(root_.size() + 1);
    if (rel.rfind(".tmp/", 0) == 0) continue;
    if (rel.rfind(prefix, 0) == 0) keys.push_back(rel);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

Status FileStore::Delete(const std::string& key) {
  if (!IsValidKey(key)) return InvalidArgumentError("invalid object key '" + key + "'");
  if (unlink((root_ + "/" + key).c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("delete object " + key);
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = fds_.find(key);
  if (it != fds_.end()) {
    lru_.erase(it->second.second);
    fds_.erase(it);
  }
  return Status::Ok();
}

}  // namespace ferry::chunkstore
