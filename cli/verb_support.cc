#include "cli/verb_support.h"

#include <cstdio>

namespace ferry::cli {

int Fail(const Status& st) {
  std::fprintf(stderr, "ferry: %s\n", st.ToString().c_str());
  return st.code() == StatusCode::kNotFound ? 3 : 1;
}

std::string Mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MB", bytes / 1e6);
  return buf;
}

}  // namespace ferry::cli
