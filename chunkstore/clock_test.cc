// Tests for the clock (ManualClock wakes waiters exactly when it reaches
// their deadline) and for retries under a RetryPolicy driven by it. No test
// here depends on wall time: the clock moves only when a test moves it.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "chunkstore/clock.h"
#include "chunkstore/fault_store.h"
#include "chunkstore/retry_policy.h"
#include "chunkstore/test_stores.h"

namespace ferry::chunkstore {
namespace {

using std::chrono::milliseconds;

TEST_CASE("manual clock: a timed wait ends when the clock reaches its deadline, not before") {
  ManualClock clock;
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<bool> done{false};
  const auto deadline = clock.Now() + milliseconds(50);
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    CHECK_FALSE(clock.WaitUntil(cv, lock, deadline, [] { return false; }));
    CHECK(clock.Now() >= deadline);
    done = true;
  });
  REQUIRE(clock.AwaitWaits(1));
  CHECK(clock.waiters() == 1);
  CHECK(clock.NextDeadline() == deadline);
  clock.Advance(milliseconds(49));
  CHECK_FALSE(done);  // nobody was due: nobody was woken
  clock.Advance(milliseconds(1));
  waiter.join();
  CHECK(done);
  CHECK(clock.waiters() == 0);
}

TEST_CASE("manual clock: a notification still wakes a timed wait; a passed deadline does not block") {
  ManualClock clock;
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    CHECK(clock.WaitUntil(cv, lock, clock.Now() + std::chrono::hours(1), [&] { return ready; }));
  });
  REQUIRE(clock.AwaitWaits(1));
  {
    std::lock_guard<std::mutex> lock(mu);
    ready = true;
  }
  cv.notify_all();
  waiter.join();
  std::unique_lock<std::mutex> lock(mu);
  const uint64_t before = clock.waits();
  CHECK(clock.WaitUntil(cv, lock, clock.Now()) == std::cv_status::timeout);
  CHECK(clock.waits() == before + 1);
  clock.SleepFor(milliseconds(0));  // returns at once
}

TEST_CASE("manual clock: sleepers wake in deadline order as the clock advances") {
  ManualClock clock;
  std::atomic<int> woke{0};
  std::thread a([&] { clock.SleepFor(milliseconds(10)); woke += 1; });
  std::thread b([&] { clock.SleepFor(milliseconds(30)); woke += 10; });
  REQUIRE(clock.AwaitWaits(2));
  CHECK(clock.AdvanceToNextDeadline() == milliseconds(10));
  a.join();
  CHECK(woke == 1);
  CHECK(clock.AdvanceToNextDeadline() == milliseconds(20));
  b.join();
  CHECK(woke == 11);
  CHECK_FALSE(clock.AdvanceToNextDeadline());
}

TEST_CASE("retry policy: ceilings double up to the cap; pauses stay under them") {
  RetryPolicy p;
  p.backoff = milliseconds(25);
  p.max_backoff = milliseconds(150);
  CHECK(p.Ceiling(1) == milliseconds(25));
  CHECK(p.Ceiling(2) == milliseconds(50));
  CHECK(p.Ceiling(3) == milliseconds(100));
  CHECK(p.Ceiling(4) == milliseconds(150));
  CHECK(p.Ceiling(60) == milliseconds(150));
  std::mt19937_64 rng(1);
  std::chrono::microseconds longest{0};
  for (int i = 0; i < 1000; ++i) {
    auto pause = p.Pause(2, rng);
    CHECK(pause >= std::chrono::microseconds(0));
    CHECK(pause <= milliseconds(50));
    longest = std::max(longest, pause);
  }
  CHECK(longest > milliseconds(45));  // the whole range is used
}

// Runs RunWithRetries on a thread, failing with `fail` for the first
// `failures` tries, and lets the test drive the clock through its pauses.
struct Retried {
  ManualClock clock;
  RetryPolicy policy;
  std::mt19937_64 rng{7};
  std::atomic<int> tries{0};
  int retries = 0;
  Status result;
  std::thread thread;

  void Start(int failures, Status fail) {
    thread = std::thread([this, failures, fail] {
      RetryHooks hooks;
      hooks.rng = &rng;
      hooks.before_retry = [&] { return ++retries > 0; };
      result = RunWithRetries(policy, clock, [&] {
        return ++tries <= failures ? fail : Status::Ok();
      }, hooks);
    });
  }
  // Waits for the pause after `failures` failed tries and checks it against
  // the policy; then advances the clock past it.
  void Pause(int failures) {
    REQUIRE(clock.AwaitWaits(failures));
    CHECK(tries == failures);  // the next try waits for the clock
    auto next = clock.NextDeadline();
    REQUIRE(next);
    CHECK(*next - clock.Now() <= policy.Ceiling(failures));
    clock.Advance(*next - clock.Now());
  }
};

TEST_CASE("retries: transient failures are tried again after the policy's pauses, up to max_attempts") {
  Retried r;
  r.policy.max_attempts = 4;
  r.Start(10, UnavailableError("flaky"));
  for (int k = 1; k < 4; ++k) r.Pause(k);
  r.thread.join();
  CHECK(r.tries == 4);
  CHECK(r.retries == 3);
  CHECK(r.result.code() == StatusCode::kUnavailable);
  CHECK(r.result.message().find("after 4 attempts") != std::string::npos);
}

TEST_CASE("retries: success after a failure ends the loop; a final error is not retried") {
  Retried ok;
  ok.Start(1, UnavailableError("flaky"));
  ok.Pause(1);
  ok.thread.join();
  CHECK(ok.result.ok());
  CHECK(ok.tries == 2);

  Retried gone;
  gone.Start(10, NotFoundError("gone"));
  gone.thread.join();
  CHECK(gone.result.code() == StatusCode::kNotFound);
  CHECK(gone.tries == 1);
  CHECK(gone.clock.waits() == 0);
}

TEST_CASE("retries: the policy's deadline cuts the last pause short and ends the loop") {
  Retried r;
  r.policy.max_attempts = 20;
  r.policy.backoff = milliseconds(100);
  r.policy.deadline = milliseconds(120);
  const auto end = r.clock.Now() + milliseconds(120);
  r.Start(100, UnavailableError("flaky"));
  // Pause until the deadline is reached; no pause goes past it.
  for (int k = 1; r.clock.Now() < end; ++k) {
    REQUIRE(r.clock.AwaitWaits(k));
    auto next = r.clock.NextDeadline();
    if (!next) break;  // done: the loop saw the deadline
    CHECK(*next <= end);
    r.clock.Advance(*next - r.clock.Now());
  }
  r.thread.join();
  CHECK(r.result.code() == StatusCode::kDeadlineExceeded);
  CHECK(r.result.message().find("flaky") != std::string::npos);
  CHECK(r.tries < 20);
}

TEST_CASE("fault store: injected failures are retried with the policy's pauses on its clock") {
  TempStore t;
  REQUIRE(t.store->Put("obj", testing::Bytes("hello")).ok());
  auto opt = ParseFaultOptions("fail=1&attempts=3&backoff=40ms&latency=10ms");
  REQUIRE(opt.ok());
  CHECK(opt->retry.max_attempts == 3);
  CHECK(opt->retry.backoff == milliseconds(40));
  CHECK_FALSE(ParseFaultOptions("attempts=0").ok());
  ManualClock clock;
  auto store = WrapInFaults(std::move(FileStore::Open(t.root).value()), *opt, "fail=1", &clock);
  Status st;
  std::thread request([&] { st = store->Size("obj").status(); });
  // Each try waits out the latency, then fails; between tries, a pause of
  // at most 40 ms, then 80 ms. Every wait is on the clock.
  const std::vector<milliseconds> ceilings = {milliseconds(10), milliseconds(40), milliseconds(10),
                                              milliseconds(80), milliseconds(10)};
  for (size_t k = 0; k < ceilings.size(); ++k) {
    REQUIRE(clock.AwaitWaits(k + 1));
    auto next = clock.NextDeadline();
    if (!next) continue;  // a pause of 0 was drawn
    INFO("wait " << k);
    CHECK(*next - clock.Now() <= ceilings[k]);
    if (k % 2 == 0) CHECK(*next - clock.Now() == ceilings[k]);  // latency, no jitter
    clock.Advance(*next - clock.Now());
  }
  request.join();
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK(st.message().find("after 3 attempts") != std::string::npos);
}

}  // namespace
}  // namespace ferry::chunkstore
