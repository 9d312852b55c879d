#include "cli/store_access.h"

#include <sys/stat.h>

#include "chunkstore/store_factory.h"
#include "chunkstore/store_url.h"
#include "fs/image_store.h"

namespace ferry::cli {

Result<std::unique_ptr<chunkstore::ObjectStore>> OpenStore(const std::string& url) {
  return chunkstore::OpenObjectStore(url.empty() ? chunkstore::DefaultStoreUrl() : url);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<std::unique_ptr<fs::ImageReader>> OpenImage(chunkstore::ObjectStore& store,
                                                   const std::string& name, Digest* id_out) {
  ASSIGN_OR_RETURN(Digest id, fs::ResolveImage(store, name));
  if (id_out) *id_out = id;
  return fs::LoadImage(store, id);
}

}  // namespace ferry::cli
