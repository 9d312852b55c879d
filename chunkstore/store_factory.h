// OpenObjectStore: the one place a store URL becomes an ObjectStore.
//
//   file:///abs/path, or a plain path      FileStore (file_store.h)
//   s3://BUCKET[/PREFIX][?options]         S3Store (s3_store.h; options,
//                                          environment and credentials in
//                                          s3_config.h; opening does not
//                                          contact the service)
//   fault+<URL>?<options>                  the store of <URL> wrapped in
//                                          fault emulation (fault_store.h)
#pragma once

#include <memory>
#include <string>

#include "chunkstore/object_store.h"

namespace ferry::chunkstore {

// Opens the store `url` names. kInvalidArgument for an unknown scheme or bad
// options (the message names the URL); whatever the backend's Open returns
// otherwise (a file store whose directory cannot be made, for example).
Result<std::unique_ptr<ObjectStore>> OpenObjectStore(const std::string& url);

}  // namespace ferry::chunkstore
