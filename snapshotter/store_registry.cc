#include "snapshotter/store_registry.h"

#include "chunkstore/store_factory.h"

namespace ferry::snapshotter {

StoreRegistry::StoreRegistry(StoreRegistryOptions opt) : opt_(std::move(opt)) {
  if (!opt_.open) opt_.open = chunkstore::OpenObjectStore;
}

Result<OpenStore*> StoreRegistry::Get(const std::string& url) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto a = aliases_.find(url); a != aliases_.end()) return stores_.at(a->second).get();
  }
  // Opening a file store makes its directories and an s3 one reads its
  // configuration (and a test's may block): not under the lock.
  ASSIGN_OR_RETURN(auto opened, opt_.open(url));
  std::string canonical = opened->Url();
  std::lock_guard<std::mutex> lock(mu_);
  aliases_[url] = canonical;
  auto it = stores_.find(canonical);
  if (it != stores_.end()) return it->second.get();  // `opened` is closed unused
  auto s = std::make_unique<OpenStore>();
  s->url = canonical;
  s->store = std::move(opened);
  chunkstore::ChunkReaderOptions ro;
  ro.memory_bytes = opt_.memory_cache_bytes;
  ro.node_cache = opt_.node_cache;
  ro.fetch_threads = opt_.fetch_threads;
  if (opt_.prefetch_threads != 0) ro.prefetch_threads = opt_.prefetch_threads;  // else the store's
  ro.deadline = opt_.fetch_deadline;
  s->reader = std::make_unique<chunkstore::ChunkReader>(s->store.get(), ro);
  OpenStore* raw = s.get();
  stores_[canonical] = std::move(s);
  return raw;
}

}  // namespace ferry::snapshotter
