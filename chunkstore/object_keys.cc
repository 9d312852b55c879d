#include "chunkstore/object_keys.h"

#include <string_view>

namespace ferry::chunkstore {

bool IsValidKey(const std::string& key) {
  if (key.empty() || key.size() > 1024) return false;
  size_t start = 0;
  while (start <= key.size()) {
    size_t end = key.find('/', start);
    if (end == std::string::npos) end = key.size();
    std::string_view comp(key.data() + start, end - start);
    if (comp.empty() || comp == "." || comp == ".." || comp.size() > 255) return false;
    if (start == 0 && comp[0] == '.') return false;  // ".tmp/" belongs to the file store
    for (char c : comp) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
                c == '@' || c == '+' || c == '%' || c == '=' || c == '-';
      if (!ok) return false;
    }
    start = end + 1;
  }
  return true;
}

}  // namespace ferry::chunkstore
