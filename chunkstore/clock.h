// Clock: where chunkstore code reads the time, sleeps and waits with a
// deadline, so that tests can drive time instead of sleeping.
//
// Every wait that can time out goes through Clock::WaitUntil, which waits
// on the caller's condition variable (with the caller's lock held, as
// std::condition_variable::wait_until does) until it is notified or the
// clock reaches the deadline. SystemClock is steady (wall) time: its calls
// are exactly those of std::chrono::steady_clock and std::this_thread.
// ManualClock stands still until a test advances it, and then wakes every
// waiter whose deadline it reached; it also tells a test how many waits
// have begun, so that a test can wait for "the code is now waiting on the
// clock" instead of sleeping.
//
// A component takes a `Clock*` in its options; null means DefaultClock().
// The clock must outlive the component. Clocks are thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>

namespace ferry::chunkstore {

class Clock {
 public:
  using Duration = std::chrono::steady_clock::duration;
  using TimePoint = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  // The current time. Never goes backwards.
  virtual TimePoint Now() const = 0;
  // Returns once Now() has reached Now() + d (at once if d <= 0).
  virtual void SleepFor(Duration d) = 0;
  // Waits on `cv` with `lock` (locked on entry and on return) until `cv`
  // is notified or Now() >= deadline. Returns std::cv_status::timeout iff
  // the deadline has been reached. May return early without either
  // (spurious wake-up, or the lock released and taken again): callers
  // check their condition, as with std::condition_variable.
  virtual std::cv_status WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                                   TimePoint deadline) = 0;

  // Waits until pred() holds (true) or the deadline has been reached with
  // pred() still false (false). pred is evaluated with `lock` held.
  template <typename Predicate>
  bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, TimePoint deadline,
                 Predicate pred) {
    while (!pred()) {
      if (WaitUntil(cv, lock, deadline) == std::cv_status::timeout) return pred();
    }
    return true;
  }
};

// The steady clock of the machine.
class SystemClock final : public Clock {
 public:
  TimePoint Now() const override;
  void SleepFor(Duration d) override;
  std::cv_status WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                           TimePoint deadline) override;
  using Clock::WaitUntil;
};

// The clock components use when given none: one SystemClock for the
// process (it has no state).
Clock* DefaultClock();

// A clock for tests: starts at an arbitrary time point and moves only by
// Advance(). Sleeps and timed waits block (in real time) until a test
// advances the clock past their deadline; untimed notifications wake them
// as usual. Advance must not be called with a lock held that a waiter
// holds around WaitUntil (it takes the waiter's lock to notify it, so that
// no wake-up is lost).
class ManualClock final : public Clock {
 public:
  ManualClock();
  ~ManualClock() override;

  TimePoint Now() const override;
  void SleepFor(Duration d) override;
  std::cv_status WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                           TimePoint deadline) override;
  using Clock::WaitUntil;

  // Moves the clock forward by `d` and wakes every waiter whose deadline
  // is reached. When it returns, each of them has been notified.
  void Advance(Duration d);
  // Advances to the earliest deadline anyone waits for, if anyone waits.
  // Returns how far it moved, or nullopt if nobody was waiting.
  std::optional<Duration> AdvanceToNextDeadline();

  // Sleeps and timed waits begun so far (each call of SleepFor or
  // WaitUntil counts once, also one whose deadline had already passed).
  uint64_t waits() const;
  // Calls waiting on the clock now, and the earliest of their deadlines.
  size_t waiters() const;
  std::optional<TimePoint> NextDeadline() const;
  // Blocks until waits() >= n; false if that took longer than `limit` of
  // real time (a test then fails rather than hangs).
  bool AwaitWaits(uint64_t n, std::chrono::milliseconds limit = std::chrono::seconds(20)) const;

 private:
  struct Waiter {
    std::condition_variable* cv;
    std::mutex* mu;
    TimePoint deadline;
    int notifying = 0;  // Advance calls about to notify it (they hold no lock of ours)
  };

  // Lock order: a waiter's own mutex, then mu_. Advance never holds mu_
  // while it takes a waiter's mutex.
  mutable std::mutex mu_;
  mutable std::condition_variable changed_;  // waits_ grew, or a notify finished
  TimePoint now_;
  uint64_t waits_ = 0;
  std::list<Waiter> waiters_;
};

}  // namespace ferry::chunkstore
