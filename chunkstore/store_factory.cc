#include "chunkstore/store_factory.h"

#include "chunkstore/fault_store.h"
#include "chunkstore/file_store.h"
#include "chunkstore/s3_store.h"
#include "chunkstore/store_url.h"

namespace ferry::chunkstore {
namespace {

// "fault+<inner>?<options>": the options are after the last '?', so that an
// inner s3:// URL keeps its own.
Result<std::unique_ptr<ObjectStore>> OpenFaultStore(const std::string& url) {
  std::string rest = url.substr(std::string("fault+").size());
  size_t q = rest.rfind('?');
  std::string inner_url = q == std::string::npos ? rest : rest.substr(0, q);
  std::string query = q == std::string::npos ? "" : rest.substr(q + 1);
  auto opt = ParseFaultOptions(query);
  if (!opt.ok()) return opt.status().Annotate("store URL '" + url + "'");
  ASSIGN_OR_RETURN(auto inner, OpenObjectStore(inner_url));
  return WrapInFaults(std::move(inner), std::move(*opt), std::move(query));
}

}  // namespace

Result<std::unique_ptr<ObjectStore>> OpenObjectStore(const std::string& url) {
  if (url.rfind("fault+", 0) == 0) return OpenFaultStore(url);
  if (url.rfind("s3://", 0) == 0) {
    ASSIGN_OR_RETURN(auto s3, S3Store::OpenUrl(url));
    return std::unique_ptr<ObjectStore>(std::move(s3));
  }
  if (url.find("://") != std::string::npos && url.rfind("file://", 0) != 0) {
    return InvalidArgumentError("unsupported store URL '" + url +
                                "' (supported: file:///path, a plain path, s3://bucket/prefix?options, "
                                "fault+URL?options)");
  }
  ASSIGN_OR_RETURN(auto store, FileStore::Open(AbsoluteStoreUrl(url).substr(7)));
  return std::unique_ptr<ObjectStore>(std::move(store));
}

}  // namespace ferry::chunkstore
