#include "chunkstore/store_url.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace ferry::chunkstore {

std::string DefaultStoreUrl() {
  if (const char* env = std::getenv("FERRY_STORE"); env != nullptr && *env != '\0') {
    return env;
  }
  if (geteuid() == 0) return "file:///var/lib/ferry";
  const char* home = std::getenv("HOME");
  return std::string("file://") + (home ? home : "/tmp") + "/.local/share/ferry";
}

std::string AbsoluteStoreUrl(const std::string& url) {
  const std::string fault = "fault+";
  if (url.rfind(fault, 0) == 0) {
    std::string rest = url.substr(fault.size());
    size_t q = rest.rfind('?');
    if (q == std::string::npos) return fault + AbsoluteStoreUrl(rest);
    return fault + AbsoluteStoreUrl(rest.substr(0, q)) + rest.substr(q);
  }
  std::string path;
  if (url.rfind("file://", 0) == 0) {
    path = url.substr(7);
  } else if (url.find("://") == std::string::npos) {
    path = url;
  } else {
    return url;
  }
  if (!path.empty() && path[0] != '/') {
    std::error_code ec;
    path = std::filesystem::absolute(path, ec).string();
  }
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return "file://" + path;
}

}  // namespace ferry::chunkstore
