// StoreRegistry: one open store and one ChunkReader per object store that
// ferryd reads from, shared by every image of that store.
//
// Stores are kept by canonical URL (the store's own Url()), so that every
// spelling of one store (a trailing slash, options in another order) shares
// one reader, one memory cache and one set of fetch threads; each spelling
// seen is remembered as an alias. Stores live as long as the registry, so
// the pointers it returns stay valid until it is destroyed.
//
// Thread-safe. Opening a store happens outside the lock; two callers that
// open one store at once keep the first one registered.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "chunkstore/chunk_reader.h"
#include "chunkstore/node_cache.h"
#include "chunkstore/object_store.h"

namespace ferry::snapshotter {

// Opens a store from its URL (chunkstore::OpenObjectStore in ferryd; tests
// wrap it to delay or fail calls).
using StoreOpener = std::function<Result<std::unique_ptr<chunkstore::ObjectStore>>(const std::string&)>;

struct StoreRegistryOptions {
  chunkstore::ChunkCache* node_cache = nullptr;  // outlives the registry
  size_t memory_cache_bytes = 64u << 20;         // per store, shared by its images
  unsigned fetch_threads = 32;                   // store requests in parallel, per store
  unsigned prefetch_threads = 0;                 // and for prefetch (0: chosen by the store)
  std::chrono::milliseconds fetch_deadline{30000};  // a read fails (EIO) after this
  StoreOpener open;                              // null: chunkstore::OpenObjectStore
};

struct OpenStore {
  std::string url;  // canonical: the store's Url()
  std::unique_ptr<chunkstore::ObjectStore> store;
  std::unique_ptr<chunkstore::ChunkReader> reader;
};

class StoreRegistry {
 public:
  explicit StoreRegistry(StoreRegistryOptions opt);
  StoreRegistry(const StoreRegistry&) = delete;
  StoreRegistry& operator=(const StoreRegistry&) = delete;

  // The store `url` names, opened on first use. Fails as opening it does
  // (InvalidArgument for an unknown scheme).
  Result<OpenStore*> Get(const std::string& url);

 private:
  StoreRegistryOptions opt_;
  std::mutex mu_;  // a leaf: nothing else is locked while it is held
  std::map<std::string, std::unique_ptr<OpenStore>> stores_;  // by canonical URL, under mu_
  std::map<std::string, std::string> aliases_;  // URL as given -> canonical, under mu_
};

}  // namespace ferry::snapshotter
