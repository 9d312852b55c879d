// Byte helpers for tests: a string's bytes as a span, and reproducible
// pseudo-random data (a linear congruential generator: fast, seeded, not
// compressible in practice).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ferry::testing {

inline std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline std::vector<uint8_t> Random(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) {
    seed = seed * 1103515245 + 12345;
    b = static_cast<uint8_t>(seed >> 16);
  }
  return v;
}

// `n` pseudo-random bytes as a string (xorshift64, seeded): unlike Random,
// whose bytes repeat after 16 MiB, no run repeats within any file a test
// writes, so large files do not deduplicate against themselves.
inline std::string RandomString(size_t n, uint64_t seed) {
  std::string v(n, '\0');
  seed = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& b : v) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    b = static_cast<char>(seed);
  }
  return v;
}

}  // namespace ferry::testing
