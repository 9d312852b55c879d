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

namespace ferry::builder {

struct ChunkerParams {
  uint32_t min_size = 32 * 1024;
  uint32_t avg_size = 128 * 1024;  // a power of two
  uint32_t max_size = 512 * 1024;
};

// Finds cut points. Stateless after construction; thread-safe.
class Chunker {
 public:
  using Emit = std::function<void(std::span<const uint8_t>)>;
  explicit Chunker(const ChunkerParams& params);

  // Cuts the front of `data` into chunks and emits them in order: all of
  // it if `last` (the end of the data), otherwise only the chunks whose cut
  // point cannot depend on bytes after `data` (while at least max_size
  // bytes are left). Returns the number of bytes emitted; the caller keeps
  // the rest and passes it again, followed by more bytes, next time.
  size_t Cut(std::span<const uint8_t> data, bool last, const Emit& emit) const;

  // Length of the first chunk of `data` (all of it if it is short).
  size_t FindCut(std::span<const uint8_t> data) const;

 private:
  ChunkerParams params_;
  uint64_t mask_small_;  // used before avg_size: harder to match
  uint64_t mask_large_;  // used after avg_size: easier to match
};

}  // namespace ferry::builder
