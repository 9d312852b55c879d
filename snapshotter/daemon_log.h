// How ferryd's parts write a log line: "ferryd: LINE" on stderr, which the
// supervisor (or `ferry mount --start-daemon`) keeps as the daemon's log.
// Thread-safe (one fprintf per line).
#pragma once

#include <cstdio>
#include <string>

namespace ferry::snapshotter {

inline void Log(const std::string& line) { std::fprintf(stderr, "ferryd: %s\n", line.c_str()); }

}  // namespace ferry::snapshotter
