// The rules for object keys (chunkstore/object_store.h), apart from any
// store: the `ferry` front end checks names with them before it asks ferryd.
#pragma once

#include <string>

namespace ferry::chunkstore {

// Whether `key` is a well-formed object key: 1..1024 characters, '/'-separated
// components, each 1..255 of [A-Za-z0-9._:@+%=-], not "." or "..", the first
// not starting with '.'.
bool IsValidKey(const std::string& key);

}  // namespace ferry::chunkstore
