#include "builder/chunker.h"

#include <array>
#include <bit>

namespace ferry::builder {
namespace {

// 256 pseudo-random 64-bit values from splitmix64 with a fixed seed. Changing
// the seed changes every cut point (and so deduplication against old images).
struct GearTable {
  std::array<uint64_t, 256> v;
  constexpr GearTable() : v() {
    uint64_t state = 0x66657272794344ull;  // "ferryCD"
    for (auto& x : v) {
      state += 0x9e3779b97f4a7c15ull;
      uint64_t z = state;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      x = z ^ (z >> 31);
    }
  }
};
constexpr GearTable kGear;

// A mask with `bits` one-bits spread over the high half of the word: with a
// left-shifting gear hash, high bits depend on the most recent ~64 bytes.
constexpr uint64_t SpreadMask(int bits) {
  uint64_t m = 0;
  for (int i = 0; i < bits; ++i) m |= uint64_t{1} << (63 - 2 * i);
  return m;
}

}  // namespace

Chunker::Chunker(const ChunkerParams& params) : params_(params) {
  int bits = std::countr_zero(params.avg_size);
  mask_small_ = SpreadMask(bits + 2);
  mask_large_ = SpreadMask(bits - 2);
}

size_t Chunker::FindCut(std::span<const uint8_t> data) const {
  size_t n = data.size();
  if (n <= params_.min_size) return n;
  size_t normal = std::min<size_t>(n, params_.avg_size);
  size_t end = std::min<size_t>(n, params_.max_size);
  uint64_t fp = 0;
  size_t i = params_.min_size;
  for (; i < normal; ++i) {
    fp = (fp << 1) + kGear.v[data[i]];
    if ((fp & mask_small_) == 0) return i + 1;
  }
  for (; i < end; ++i) {
    fp = (fp << 1) + kGear.v[data[i]];
    if ((fp & mask_large_) == 0) return i + 1;
  }
  return end;
}

size_t Chunker::Cut(std::span<const uint8_t> data, bool last, const Emit& emit) const {
  size_t pos = 0;
  while (pos < data.size() && (last || data.size() - pos >= params_.max_size)) {
    size_t cut = FindCut(data.subspan(pos));
    emit(data.subspan(pos, cut));
    pos += cut;
  }
  return pos;
}

}  // namespace ferry::builder
