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

}  // namespace ferry::testing
