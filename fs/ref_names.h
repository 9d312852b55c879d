// What a ref name may be (docs/format.md 7.2), without the store or image
// code: the `ferry` front end checks a tag before it asks ferryd.
#pragma once

#include <cctype>
#include <string>

#include "chunkstore/object_keys.h"

namespace ferry::fs {

// Whether `name` may be used as a ref: 1..200 characters of [A-Za-z0-9._:@+%=-]
// in '/'-separated components, starting with a letter or digit.
inline bool IsValidRefName(const std::string& name) {
  if (name.empty() || name.size() > 200 || !std::isalnum(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  return chunkstore::IsValidKey("refs/" + name);
}

}  // namespace ferry::fs
