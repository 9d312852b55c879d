// Chunker: content-defined chunking (FastCDC with normalized chunking).
//
// Cut points depend only on the bytes near them, so an insertion shifts the
// boundaries of only the chunks around it and unchanged regions keep their
// chunk addresses. Boundaries are not part of any format: readers never need
// to know how chunks were cut; they only matter for deduplication.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace ferry::builder {

struct ChunkerParams {
  uint32_t min_size = 32 * 1024;
  uint32_t avg_size = 128 * 1024;  // a power of two
  uint32_t max_size = 512 * 1024;
};

// Streams bytes in, calls `emit` with each complete chunk. Not thread-safe.
class Chunker {
 public:
  using Emit = std::function<void(std::span<const uint8_t>)>;
  explicit Chunker(const ChunkerParams& params);

  void Update(std::span<const uint8_t> data, const Emit& emit);
  // Emits what is left (the last, possibly short, chunk) and resets.
  void Finish(const Emit& emit);

  // Length of the first chunk of `data` (all of it if it is short).
  size_t FindCut(std::span<const uint8_t> data) const;

 private:
  ChunkerParams params_;
  uint64_t mask_small_;  // used before avg_size: harder to match
  uint64_t mask_large_;  // used after avg_size: easier to match
  std::vector<uint8_t> buffer_;
};

}  // namespace ferry::builder
