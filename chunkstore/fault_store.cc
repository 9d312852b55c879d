#include "chunkstore/fault_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "chunkstore/url_options.h"

namespace ferry::chunkstore {
namespace {

using Clock = std::chrono::steady_clock;

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
  FaultStore(std::unique_ptr<ObjectStore> inner, FaultOptions opt, std::string query)
      : inner_(std::move(inner)), opt_(std::move(opt)), query_(std::move(query)), rng_(opt_.seed) {}

  // With a latency or a bandwidth limit it stands for a remote store.
  bool IsLocal() const override {
    return inner_->IsLocal() && opt_.latency_s == 0 && opt_.jitter_s == 0 && opt_.bandwidth_bps == 0;
  }
  std::string Url() const override { return "fault+" + inner_->Url() + "?" + query_; }
  Status Put(const std::string& key, std::span<const uint8_t> data) override {
    RETURN_IF_ERROR(Before(data.size(), key));
    return inner_->Put(key, data);
  }
  Status PutFile(const std::string& key, const std::string& path) override {
    struct stat st;
    RETURN_IF_ERROR(Before(stat(path.c_str(), &st) == 0 ? static_cast<size_t>(st.st_size) : 0, key));
    return inner_->PutFile(key, path);
  }
  Result<std::shared_ptr<const Blob>> Get(const std::string& key) override {
    ASSIGN_OR_RETURN(auto blob, inner_->Get(key));
    RETURN_IF_ERROR(Before(blob->bytes().size(), key));
    if (!Corrupt() || blob->bytes().empty()) return blob;
    std::vector<uint8_t> copy(blob->bytes().begin(), blob->bytes().end());
    copy[copy.size() / 2] ^= 0x01;
    return MakeBlob(std::move(copy));
  }
  Status GetRange(const std::string& key, uint64_t offset, std::span<uint8_t> out) override {
    while (!opt_.gate.empty() && access(opt_.gate.c_str(), F_OK) != 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    RETURN_IF_ERROR(Before(out.size(), key));
    RETURN_IF_ERROR(inner_->GetRange(key, offset, out));
    if (Corrupt() && !out.empty()) out[out.size() / 2] ^= 0x01;
    return Status::Ok();
  }
  Result<uint64_t> Size(const std::string& key) override {
    RETURN_IF_ERROR(Before(0, key));
    return inner_->Size(key);
  }
  Result<std::vector<std::string>> List(const std::string& prefix) override {
    RETURN_IF_ERROR(Before(0, prefix));
    return inner_->List(prefix);
  }
  Status Delete(const std::string& key) override {
    RETURN_IF_ERROR(Before(0, key));
    return inner_->Delete(key);
  }

 private:
  // Waits out latency and bandwidth for a request of `bytes`, then decides
  // whether it fails.
  Status Before(size_t bytes, const std::string& key) {
    double wait, fail_draw;
    Clock::time_point until;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::uniform_real_distribution<double> u(0, 1);
      wait = opt_.latency_s + opt_.jitter_s * u(rng_);
      fail_draw = u(rng_);
      until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(wait));
      if (opt_.bandwidth_bps > 0) {
        // Transfers share the link one after another.
        auto start = std::max(until, link_free_);
        link_free_ = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(bytes / opt_.bandwidth_bps));
        until = link_free_;
      }
    }
    std::this_thread::sleep_until(until);
    if (fail_draw < opt_.fail_rate) {
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
  std::mutex mu_;
  std::mt19937_64 rng_;
  Clock::time_point link_free_{};
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
    } else if (k == "gate") {
      o.gate = v;
    } else {
      return InvalidArgumentError("unknown fault option '" + k +
                                  "' (latency, jitter, bandwidth, fail, corrupt, seed, gate)");
    }
  }
  return o;
}

std::unique_ptr<ObjectStore> WrapInFaults(std::unique_ptr<ObjectStore> inner, FaultOptions opt,
                                          std::string query) {
  return std::make_unique<FaultStore>(std::move(inner), std::move(opt), std::move(query));
}

}  // namespace ferry::chunkstore
