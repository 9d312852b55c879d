// The options part of a store URL ("?k=v&k2=v2"), shared by the s3:// and
// fault+ stores, and the durations and sizes such options (and command-line
// flags) are written in.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "chunkstore/status.h"

namespace ferry::chunkstore {

// Splits "k=v&k2=v2" into (key, percent-decoded value) pairs, in order;
// empty items are skipped. kInvalidArgument for an item without '=' or a
// bad %-escape.
Result<std::vector<std::pair<std::string, std::string>>> ParseUrlOptions(const std::string& query);
Result<std::string> PercentDecode(const std::string& s);
// "30s", "500ms", "20us" or plain seconds, not negative.
Result<double> ParseDurationSeconds(const std::string& v);
// "10G", "512M", "64k", "1.5T", "100MB", "2GiB" or a plain number, not
// negative; K, M, G, T are powers of `base` (1024 for sizes, 1000 for rates).
Result<double> ParseScaled(const std::string& v, double base);

}  // namespace ferry::chunkstore
