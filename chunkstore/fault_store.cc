#include "chunkstore/fault_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "chunkstore/url_options.h"

namespace ferry::chunkstore {
namespace {

Result<double> ParseProbability(const std::string& v) {
  try {
    size_t used = 0;
    double x = std::stod(v, &used);
    if (used == v.size() && x >= 0 && x <= 1) return x;
  } catch (const std::exception&) {
  }
  return InvalidArgumentError("bad probability '" + v + "' (0..1)");
}

class FaultStore final : public ObjectStore {
 public:
  FaultStore(std::unique_ptr<ObjectStore> inner, FaultOptions opt, std::string query, Clock* clock)
      : inner_(std::move(inner)),
        opt_(std::move(opt)),
        query_(std::move(query)),
        clock_(clock != nullptr ? clock : DefaultClock()),
        rng_(opt_.seed) {}

  // With a latency or a bandwidth limit it stands for a remote store.
  bool IsLocal() const override {
    return inner_->IsLocal() && opt_.latency_s == 0 && opt_.jitter_s == 0 && opt_.bandwidth_bps == 0;
  }
  std::string Url() const override { return "fault+" + inner_->Url() + "?" + query_; }
  Status Put(const std::string& key, std::span<const uint8_t> data) override {
    return Request([&](bool* injected) {
      RETURN_IF_ERROR(Before(data.size(), key, injected));
      return inner_->Put(key, data);
    });
  }
  Status PutFile(const std::string& key, const std::string& path) override {
    return Request([&](bool* injected) {
      struct stat st;
      RETURN_IF_ERROR(Before(stat(path.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0, key, injected));
      return inner_->PutFile(key, path);
    });
  }
  Result<std::shared_ptr<const Blob>> Get(const std::string& key) override {
    std::shared_ptr<const Blob> blob;
    RETURN_IF_ERROR(Request([&](bool* injected) {
      ASSIGN_OR_RETURN(blob, inner_->Get(key));
      return Before(blob->bytes().size(), key, injected);
    }));
    if (!Corrupt() || blob->bytes().empty()) return blob;
    std::vector<uint8_t> copy(blob->bytes().begin(), blob->bytes().end());
    copy[copy.size() / 2] ^= 0x01;
    return MakeBlob(std::move(copy));
  }
  Status GetRange(const std::string& key, uint64_t offset, std::span<uint8_t> out) override {
    // The gate is a file a test creates, not a time: it is polled in real
    // time whatever the clock.
    while (!opt_.gate.empty() && access(opt_.gate.c_str(), F_OK) != 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    RETURN_IF_ERROR(Request([&](bool* injected) {
      RETURN_IF_ERROR(Before(out.size(), key, injected));
      return inner_->GetRange(key, offset, out);
    }));
    if (Corrupt() && !out.empty()) out[out.size() / 2] ^= 0x01;
    return Status::Ok();
  }
  Result<uint64_t> Size(const std::string& key) override {
    uint64_t size = 0;
    RETURN_IF_ERROR(Request([&](bool* injected) {
      RETURN_IF_ERROR(Before(0, key, injected));
      ASSIGN_OR_RETURN(size, inner_->Size(key));
      return Status::Ok();
    }));
    return size;
  }
  Result<std::vector<std::string>> List(const std::string& prefix) override {
    std::vector<std::string> keys;
    RETURN_IF_ERROR(Request([&](bool* injected) {
      RETURN_IF_ERROR(Before(0, prefix, injected));
      ASSIGN_OR_RETURN(keys, inner_->List(prefix));
      return Status::Ok();
    }));
    return keys;
  }
  Status Delete(const std::string& key) override {
    return Request([&](bool* injected) {
      RETURN_IF_ERROR(Before(0, key, injected));
      return inner_->Delete(key);
    });
  }

 private:
  // One request, its injected failures tried again under opt_.retry.
  // `attempt` makes one try and sets *injected when Before failed it:
  // only those are retried here (the inner store retries its own).
  Status Request(const std::function<Status(bool* injected)>& attempt) {
    bool injected = false;
    RetryHooks hooks;
    hooks.retryable = [&](const Status&) { return injected; };
    return RunWithRetries(opt_.retry, *clock_, [&] {
      injected = false;
      return attempt(&injected);
    }, hooks);
  }

  // Waits out latency and bandwidth for a request of `bytes`, then decides
  // whether it fails (and says so in *injected).
  Status Before(size_t bytes, const std::string& key, bool* injected) {
    double wait, fail_draw;
    Clock::TimePoint until;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::uniform_real_distribution<double> u(0, 1);
      wait = opt_.latency_s + opt_.jitter_s * u(rng_);
      fail_draw = u(rng_);
      until = clock_->Now() + std::chrono::duration_cast<Clock::Duration>(
                                  std::chrono::duration<double>(wait));
      if (opt_.bandwidth_bps > 0) {
        // Transfers share the link one after another.
        auto start = std::max(until, link_free_);
        link_free_ = start + std::chrono::duration_cast<Clock::Duration>(
                                 std::chrono::duration<double>(bytes / opt_.bandwidth_bps));
        until = link_free_;
      }
    }
    clock_->SleepFor(until - clock_->Now());
    if (fail_draw < opt_.fail_rate) {
      *injected = true;
      return UnavailableError("injected failure for " + key + " (fault store)");
    }
    return Status::Ok();
  }
  bool Corrupt() {
    if (opt_.corrupt_rate <= 0) return false;
    std::lock_guard<std::mutex> lock(mu_);
    return std::uniform_real_distribution<double>(0, 1)(rng_) < opt_.corrupt_rate;
  }

  std::unique_ptr<ObjectStore> inner_;
  const FaultOptions opt_;
  const std::string query_;
  Clock* const clock_;
  std::mutex mu_;
  std::mt19937_64 rng_;
  Clock::TimePoint link_free_{};
};

}  // namespace

Result<FaultOptions> ParseFaultOptions(const std::string& query) {
  FaultOptions o;
  ASSIGN_OR_RETURN(auto options, ParseUrlOptions(query));
  for (const auto& [k, v] : options) {
    if (k == "latency") {
      ASSIGN_OR_RETURN(o.latency_s, ParseDurationSeconds(v));
    } else if (k == "jitter") {
      ASSIGN_OR_RETURN(o.jitter_s, ParseDurationSeconds(v));
    } else if (k == "bandwidth") {
      ASSIGN_OR_RETURN(o.bandwidth_bps, ParseScaled(v, 1000));
    } else if (k == "fail") {
      ASSIGN_OR_RETURN(o.fail_rate, ParseProbability(v));
    } else if (k == "corrupt") {
      ASSIGN_OR_RETURN(o.corrupt_rate, ParseProbability(v));
    } else if (k == "seed") {
      try {
        o.seed = std::stoull(v);
      } catch (const std::exception&) {
        return InvalidArgumentError("bad seed '" + v + "'");
      }
    } else if (k == "attempts") {
      try {
        o.retry.max_attempts = std::stoi(v);
      } catch (const std::exception&) {
        o.retry.max_attempts = 0;
      }
      if (o.retry.max_attempts < 1 || o.retry.max_attempts > 20) {
        return InvalidArgumentError("bad attempts '" + v + "' (1..20)");
      }
    } else if (k == "backoff") {
      ASSIGN_OR_RETURN(double seconds, ParseDurationSeconds(v));
      o.retry.backoff = std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
    } else if (k == "gate") {
      o.gate = v;
    } else {
      return InvalidArgumentError("unknown fault option '" + k +
                                  "' (latency, jitter, bandwidth, fail, attempts, backoff, corrupt, seed, "
                                  "gate)");
    }
  }
  return o;
}

std::unique_ptr<ObjectStore> WrapInFaults(std::unique_ptr<ObjectStore> inner, FaultOptions opt,
                                          std::string query, Clock* clock) {
  return std::make_unique<FaultStore>(std::move(inner), std::move(opt), std::move(query), clock);
}

}  // namespace ferry::chunkstore
