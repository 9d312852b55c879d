// Little-endian load/store for on-disk formats. All ferry formats are
// little-endian; these compile to plain moves on x86-64 and arm64.
#pragma once

#include <cstdint>
#include <cstring>

namespace ferry {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "ferry's formats are little-endian and read in place");

inline void PutLe32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void PutLe64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
inline uint32_t GetLe32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint64_t GetLe64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

}  // namespace ferry
