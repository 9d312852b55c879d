// Opening the store and an image in it, as the verbs of the full tool do.
#pragma once

#include <memory>
#include <string>

#include "chunkstore/object_store.h"
#include "fs/image_reader.h"

namespace ferry::cli {

// The store at `url`, or at the default store URL (chunkstore/store_url.h)
// if `url` is empty.
Result<std::unique_ptr<chunkstore::ObjectStore>> OpenStore(const std::string& url);
// The image `name` (a ref, an id or a unique id prefix) in `store`, its
// metadata verified; its id in `*id_out` if not null. NotFound if there is
// no such image.
Result<std::unique_ptr<fs::ImageReader>> OpenImage(chunkstore::ObjectStore& store,
                                                   const std::string& name, Digest* id_out);
bool IsDirectory(const std::string& path);

}  // namespace ferry::cli
