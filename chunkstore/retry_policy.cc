#include "chunkstore/retry_policy.h"

#include <algorithm>
#include <string>

namespace ferry::chunkstore {

std::chrono::microseconds RetryPolicy::Ceiling(int failures) const {
  // Doubling stops well before it could overflow; max_backoff caps it.
  const int doublings = std::clamp(failures - 1, 0, 30);
  const int64_t ceiling = backoff.count() << doublings;
  return std::chrono::microseconds(std::min<int64_t>(ceiling, max_backoff.count()));
}

std::chrono::microseconds RetryPolicy::Pause(int failures, std::mt19937_64& rng) const {
  return std::chrono::microseconds(
      std::uniform_int_distribution<int64_t>(0, std::max<int64_t>(0, Ceiling(failures).count()))(rng));
}

Status RunWithRetries(const RetryPolicy& policy, Clock& clock, const std::function<Status()>& op,
                      const RetryHooks& hooks) {
  thread_local std::mt19937_64 thread_rng(std::random_device{}());
  std::mt19937_64& rng = hooks.rng != nullptr ? *hooks.rng : thread_rng;
  const bool timed = policy.deadline.count() > 0;
  const Clock::TimePoint end = timed ? clock.Now() + policy.deadline : Clock::TimePoint::max();
  Status st;
  for (int attempt = 1;; ++attempt) {
    if (timed && attempt > 1 && clock.Now() >= end) {
      return Status(StatusCode::kDeadlineExceeded,
                    "deadline of " + std::to_string(policy.deadline.count() / 1000) + " ms passed after " +
                        std::to_string(attempt - 1) + " attempt(s); last: " + st.ToString());
    }
    st = op();
    const bool again = hooks.retryable ? hooks.retryable(st) : st.IsRetryable();
    if (st.ok() || !again || attempt >= policy.max_attempts) {
      if (!st.ok() && attempt > 1) return st.Annotate("after " + std::to_string(attempt) + " attempts");
      return st;
    }
    if (hooks.before_retry && !hooks.before_retry()) return st;
    auto pause = policy.Pause(attempt, rng);
    if (timed) pause = std::min(pause, std::chrono::duration_cast<std::chrono::microseconds>(end - clock.Now()));
    clock.SleepFor(std::max(pause, std::chrono::microseconds(0)));
  }
}

}  // namespace ferry::chunkstore
