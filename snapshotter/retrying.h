// Retrying: how ferryd's session loading repeats the store calls it makes
// itself (resolving a name, fetching a profile and an image's metadata).
// The fetch engine retries chunk reads on its own (chunkstore/chunk_reader.h);
// this is the one other place that retries, kept here until both are
// reconciled into one layer with one budget (issue 22).
#pragma once

#include <chrono>
#include <thread>

#include "chunkstore/status.h"

namespace ferry::snapshotter {

// Store calls that failed for a reason that may pass (a throttled or flaky
// service, bytes damaged on the way) are tried again a few times, waiting
// longer each time; what arrives is verified every time. `fn` returns a
// Result; its last result is returned (after at most 5 attempts, 50 ms to
// 400 ms apart). Blocks the calling thread while it waits.
template <typename Fn>
auto Retrying(Fn fn) -> decltype(fn()) {
  auto delay = std::chrono::milliseconds(50);
  for (int attempt = 1;; ++attempt, delay *= 2) {
    auto r = fn();
    bool again = r.status().IsRetryable() || r.status().code() == StatusCode::kCorruption;
    if (r.ok() || !again || attempt == 5) return r;
    std::this_thread::sleep_for(delay);
  }
}

}  // namespace ferry::snapshotter
