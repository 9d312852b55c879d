// RetryPolicy: how often and how long a failed store request is tried
// again, in one object, and RunWithRetries, the loop that applies it.
//
// Which layer retries what (each failure is retried by exactly one):
//   - transient store errors (kUnavailable, kDeadlineExceeded): the store's
//     own transport. S3Transport retries HTTP requests (S3Config::attempts,
//     100 ms doubling to 5 s, all within S3Config::timeout_s); FaultStore
//     retries the failures it injects (fault option attempts=, default 4,
//     25 ms doubling), as the transport of the network store it emulates
//     would. A FileStore has no transient errors. Callers of an
//     ObjectStore do not retry transient errors again: the error they get
//     means the store's budget is spent.
//   - bytes that fail verification (kCorruption): the verifying caller,
//     which alone can tell. ChunkReader fetches a chunk again
//     (ChunkReaderOptions::retry, 4 attempts, 25 ms doubling).
// So a request that keeps failing is sent at most `max_attempts` times by
// the layer that owns it, not the product of the attempts of every layer.
//
// Pauses use "full jitter": a uniform random pause in [0, ceiling], the
// ceiling doubling after each failure up to max_backoff. Thread-safe: a
// policy is a value.
#pragma once

#include <chrono>
#include <functional>
#include <random>

#include "chunkstore/clock.h"
#include "chunkstore/status.h"

namespace ferry::chunkstore {

struct RetryPolicy {
  int max_attempts = 4;                                    // tries in all, the first included
  std::chrono::microseconds backoff{25000};                // ceiling of the first pause
  std::chrono::microseconds max_backoff{5'000'000};        // no pause is longer
  std::chrono::microseconds deadline{0};                   // for all tries and pauses; 0: none

  // The ceiling of the pause after `failures` (>= 1) failed tries:
  // min(max_backoff, backoff * 2^(failures - 1)).
  std::chrono::microseconds Ceiling(int failures) const;
  // A pause drawn uniformly from [0, Ceiling(failures)].
  std::chrono::microseconds Pause(int failures, std::mt19937_64& rng) const;
};

struct RetryHooks {
  // Whether a failed status is worth another try; null: Status::IsRetryable.
  std::function<bool(const Status&)> retryable;
  // Called before each pause; false ends the loop with the last status as
  // it is (a component that is shutting down). Counts retries.
  std::function<bool()> before_retry;
  // The generator for pauses; null: one per thread, seeded at random.
  std::mt19937_64* rng = nullptr;
};

// Runs `op` until it succeeds, fails with a status that is not retryable,
// has been tried policy.max_attempts times, or the policy's deadline has
// passed; pauses between tries on `clock`. Returns the last status; a
// failure after more than one try says so ("after 3 attempts"). Past the
// deadline: kDeadlineExceeded naming the attempts and the last status.
Status RunWithRetries(const RetryPolicy& policy, Clock& clock, const std::function<Status()>& op,
                      const RetryHooks& hooks = {});

}  // namespace ferry::chunkstore
