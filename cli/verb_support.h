// What every `ferry` verb shares: how a failure is reported and how sizes
// are printed. libc only, so that the front end links it too.
#pragma once

#include <cstdint>
#include <string>

#include "chunkstore/status.h"

namespace ferry::cli {

// Prints "ferry: <status>" on stderr and returns the exit code for it:
// 3 for kNotFound (no such image or ref), 1 for anything else.
int Fail(const Status& st);

// "12.3 MB" (10^6 bytes).
std::string Mb(uint64_t bytes);

}  // namespace ferry::cli
