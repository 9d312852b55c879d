// ObjectStore: the source of truth for packs, images and refs.
//
// Keys are relative, '/'-separated names ("packs/<hex>", "images/<hex>",
// "refs/<name>"); each component is non-empty, not "." or "..", and uses only
// [A-Za-z0-9._:@+%=-]. Objects are written whole and atomically: a reader
// sees the complete old object, the complete new one, or none. Everything a
// store returns is untrusted: callers verify contents against their address.
// A store retries its own transient failures (retry_policy.h): a
// kUnavailable or kDeadlineExceeded it returns is its final answer, and
// callers do not send the request again. Implementations are thread-safe.
#pragma once

#include "chunkstore/object_keys.h"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "chunkstore/status.h"
#include "chunkstore/store_url.h"

namespace ferry::chunkstore {

// Immutable bytes, owned by whatever backs them (a vector or an mmap).
class Blob {
 public:
  virtual ~Blob() = default;
  virtual std::span<const uint8_t> bytes() const = 0;
  std::string_view view() const {
    auto b = bytes();
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
};
std::shared_ptr<const Blob> MakeBlob(std::vector<uint8_t> data);
// Maps a whole local file read-only; the mapping lives as long as the Blob.
Result<std::shared_ptr<const Blob>> MapFile(const std::string& path);

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  // The URL this store was opened with, for messages.
  virtual std::string Url() const = 0;
  // Stores `data` under `key`, replacing any old object, atomically.
  virtual Status Put(const std::string& key, std::span<const uint8_t> data) = 0;
  // Stores the contents of the local file `path` under `key`. The store may
  // take the file over (rename it); afterwards `path` may no longer exist.
  virtual Status PutFile(const std::string& key, const std::string& path) = 0;
  // The whole object. NotFound if absent.
  virtual Result<std::shared_ptr<const Blob>> Get(const std::string& key) = 0;
  // Exactly out.size() bytes at `offset`. A range past the end of the object
  // is kCorruption (the caller's index disagrees with the store).
  virtual Status GetRange(const std::string& key, uint64_t offset,
                          std::span<uint8_t> out) = 0;
  // Size in bytes; NotFound if absent.
  virtual Result<uint64_t> Size(const std::string& key) = 0;
  // Keys starting with `prefix` (a folder such as "packs/"), sorted.
  virtual Result<std::vector<std::string>> List(const std::string& prefix) = 0;
  // Removes the object; OK if it did not exist.
  virtual Status Delete(const std::string& key) = 0;
  // Whether requests are served by this machine's own disk and CPU (a
  // local directory), not across a network: a request then costs no round
  // trip, and many in parallel only queue at the disk. The fetch engine
  // sizes its prefetch by it (PrefetchSettings::ForStore in
  // chunk_reader.h).
  virtual bool IsLocal() const { return false; }
};


}  // namespace ferry::chunkstore
