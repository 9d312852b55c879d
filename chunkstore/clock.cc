#include "chunkstore/clock.h"

#include <thread>
#include <vector>

namespace ferry::chunkstore {

Clock::TimePoint SystemClock::Now() const { return std::chrono::steady_clock::now(); }

void SystemClock::SleepFor(Duration d) { std::this_thread::sleep_for(d); }

std::cv_status SystemClock::WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                                      TimePoint deadline) {
  return cv.wait_until(lock, deadline);
}

Clock* DefaultClock() {
  static SystemClock clock;  // stateless: shared by every component given no clock
  return &clock;
}

// Far from the epoch, so that a component subtracting a duration from the
// first reading does not underflow.
ManualClock::ManualClock() : now_(TimePoint() + std::chrono::hours(24 * 365)) {}

ManualClock::~ManualClock() = default;

Clock::TimePoint ManualClock::Now() const {
  std::lock_guard<std::mutex> g(mu_);
  return now_;
}

void ManualClock::SleepFor(Duration d) {
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  const TimePoint until = Now() + d;
  WaitUntil(cv, lock, until, [] { return false; });
}

std::cv_status ManualClock::WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                                      TimePoint deadline) {
  std::list<Waiter>::iterator me;
  {
    std::lock_guard<std::mutex> g(mu_);
    ++waits_;
    changed_.notify_all();
    if (now_ >= deadline) return std::cv_status::timeout;
    me = waiters_.insert(waiters_.end(), Waiter{&cv, lock.mutex(), deadline});
  }
  // Registered while holding `lock`: an Advance that reaches our deadline
  // takes `lock` before it notifies, so it cannot notify before this wait
  // has begun (no lost wake-up).
  cv.wait(lock);
  // An Advance may be about to notify us (it holds none of our locks but
  // uses `cv` and the mutex): leave the list only once it is done, and
  // without `lock`, which it needs.
  lock.unlock();
  bool due;
  {
    std::unique_lock<std::mutex> g(mu_);
    changed_.wait(g, [&] { return me->notifying == 0; });
    waiters_.erase(me);
    due = now_ >= deadline;
  }
  lock.lock();
  return due ? std::cv_status::timeout : std::cv_status::no_timeout;
}

void ManualClock::Advance(Duration d) {
  std::vector<Waiter*> due;
  {
    std::lock_guard<std::mutex> g(mu_);
    now_ += d;
    for (Waiter& w : waiters_) {
      if (w.deadline <= now_) {
        ++w.notifying;
        due.push_back(&w);
      }
    }
  }
  for (Waiter* w : due) {
    std::lock_guard<std::mutex> g(*w->mu);
    w->cv->notify_all();
  }
  std::lock_guard<std::mutex> g(mu_);
  for (Waiter* w : due) --w->notifying;
  changed_.notify_all();
}

std::optional<Clock::Duration> ManualClock::AdvanceToNextDeadline() {
  Duration step;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (waiters_.empty()) return std::nullopt;
    TimePoint first = waiters_.front().deadline;
    for (const Waiter& w : waiters_) first = std::min(first, w.deadline);
    step = std::max(Duration::zero(), first - now_);
  }
  Advance(step);
  return step;
}

uint64_t ManualClock::waits() const {
  std::lock_guard<std::mutex> g(mu_);
  return waits_;
}

size_t ManualClock::waiters() const {
  std::lock_guard<std::mutex> g(mu_);
  return waiters_.size();
}

std::optional<Clock::TimePoint> ManualClock::NextDeadline() const {
  std::lock_guard<std::mutex> g(mu_);
  std::optional<TimePoint> first;
  for (const Waiter& w : waiters_) {
    if (!first || w.deadline < *first) first = w.deadline;
  }
  return first;
}

bool ManualClock::AwaitWaits(uint64_t n, std::chrono::milliseconds limit) const {
  std::unique_lock<std::mutex> g(mu_);
  return changed_.wait_for(g, limit, [&] { return waits_ >= n; });
}

}  // namespace ferry::chunkstore
