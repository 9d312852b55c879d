// FileStore: the embedded default ObjectStore, a directory on local disk.
//
// Layout: ROOT/<key> for every object, ROOT/.tmp/ for objects being written.
// Put writes to a temporary file, fsyncs it, renames it into place and fsyncs
// the directory, so a crash leaves either the old object or the new one.
// Open file descriptors of recently read objects are kept (objects are
// immutable) so that ranged reads cost one pread.
#pragma once

#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "chunkstore/object_store.h"

namespace ferry::chunkstore {

class FileStore final : public ObjectStore {
 public:
  // Creates ROOT (and ROOT/.tmp) if needed.
  static Result<std::unique_ptr<FileStore>> Open(const std::string& root);
  ~FileStore() override;

  std::string Url() const override { return "file://" + root_; }
  bool IsLocal() const override { return true; }
  Status Put(const std::string& key, std::span<const uint8_t> data) override;
  Status PutFile(const std::string& key, const std::string& path) override;
  Result<std::shared_ptr<const Blob>> Get(const std::string& key) override;
  Status GetRange(const std::string& key, uint64_t offset,
                  std::span<uint8_t> out) override;
  Result<uint64_t> Size(const std::string& key) override;
  Result<std::vector<std::string>> List(const std::string& prefix) override;
  Status Delete(const std::string& key) override;

  // A fresh path under ROOT/.tmp for a caller that builds an object in place
  // before PutFile (same filesystem, so PutFile is a rename).
  std::string TempPath(const std::string& hint);

 private:
  explicit FileStore(std::string root) : root_(std::move(root)) {}
  struct OpenFile {
    explicit OpenFile(int f) : fd(f) {}
    OpenFile(const OpenFile&) = delete;
    OpenFile& operator=(const OpenFile&) = delete;
    ~OpenFile();
    const int fd;
  };
  Result<std::shared_ptr<OpenFile>> CachedFile(const std::string& key);
  Status MakeParents(const std::string& key);
  Status Publish(const std::string& tmp, const std::string& key);

  const std::string root_;
  std::mutex mu_;  // guards fds_, lru_, tmp_counter_
  std::unordered_map<std::string,
                     std::pair<std::shared_ptr<OpenFile>, std::list<std::string>::iterator>>
      fds_;
  std::list<std::string> lru_;  // most recent first
  uint64_t tmp_counter_ = 0;
};

}  // namespace ferry::chunkstore
