// Progress: one status line on a terminal while a build runs; silent when
// stderr is not a terminal or progress is off. Or, given a sink, the same
// figures handed to it (at most 5 times a second, and at each new phase)
// instead: how ferryd reports a snapshot's progress to its client.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace ferry::builder {

double NowSeconds();

struct ProgressReport {
  std::string phase;  // "scanning", "loading store index", "reading", "uploading"
  uint64_t files = 0;  // files read so far
  uint64_t bytes = 0;  // bytes read so far
  double seconds = 0;  // since the build started
};
using ProgressSink = std::function<void(const ProgressReport&)>;

class BuildProgress {
 public:
  explicit BuildProgress(bool enabled, ProgressSink sink = nullptr);
  ~BuildProgress();
  void AddFile() { ++files_; Tick(); }
  void AddBytes(uint64_t n) { bytes_ += n; Tick(); }
  void SetPhase(const std::string& phase) { phase_ = phase; Tick(true); }
  // Clears the line.
  void Done();

 private:
  void Tick(bool force = false);
  bool enabled_;
  ProgressSink sink_;
  std::string phase_ = "scanning";
  uint64_t files_ = 0, bytes_ = 0;
  double start_, last_ = 0;
  bool drawn_ = false;
};

}  // namespace ferry::builder
