// FaultStore: wraps an ObjectStore to emulate a network store and its
// faults, for tests and benchmarks: per-request latency (with jitter), a
// shared bandwidth limit, a failure rate (kUnavailable, as a throttled or
// flaky service answers) and a corruption rate (one flipped byte in what a
// read returns), all drawn from a seeded generator so a run can be repeated.
// Like the transport of the network store it stands for (S3Transport), it
// retries the failures it injects, with backoff and jitter on its clock
// (retry_policy.h); failures of the inner store and corrupt bytes are passed
// on as they are (the inner store and the verifying caller retry those).
// Latency, bandwidth and pauses are waited out on the clock.
//
// Selected by URL: "fault+<inner URL>?<options>", options separated by '&':
//   latency=20ms    added to every request (also "2s", "500us")
//   jitter=5ms      plus a uniform random 0..jitter
//   bandwidth=100MB bytes per second over all requests together (K/M/G)
//   fail=0.2        probability that a request fails (kUnavailable)
//   attempts=4      tries per request, the first included (1: no retries)
//   backoff=25ms    ceiling of the first pause between tries, doubling
//   corrupt=0.01    probability that a read returns one flipped byte
//   seed=7          generator seed (default 1)
//   gate=/path      range reads wait until /path exists (for tests that
//                   need a fetch held in flight without timing)
// e.g. fault+file:///var/lib/ferry?latency=20ms&bandwidth=100MB&seed=3
#pragma once

#include <memory>
#include <string>

#include "chunkstore/clock.h"
#include "chunkstore/object_store.h"
#include "chunkstore/retry_policy.h"

namespace ferry::chunkstore {

struct FaultOptions {
  double latency_s = 0;
  double jitter_s = 0;
  double bandwidth_bps = 0;  // 0: unlimited
  double fail_rate = 0;
  RetryPolicy retry;  // of injected failures; attempts= and backoff=
  double corrupt_rate = 0;
  uint64_t seed = 1;
  std::string gate;
};

// Parses the options part of a fault URL (after '?').
Result<FaultOptions> ParseFaultOptions(const std::string& query);
// `inner` with the faults of `opt`; `query` is the options as given, for
// Url(), which is "fault+<inner's Url()>?<query>" so that a daemon given it
// emulates the same faults. OpenObjectStore (store_factory.h) makes these
// from "fault+" URLs; tests wrap a store directly. `clock` (null:
// DefaultClock()) must outlive the store.
std::unique_ptr<ObjectStore> WrapInFaults(std::unique_ptr<ObjectStore> inner, FaultOptions opt,
                                          std::string query, Clock* clock = nullptr);

}  // namespace ferry::chunkstore
