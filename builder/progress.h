// Progress: one status line on a terminal while a build runs; silent when
// stderr is not a terminal or progress is off. Not thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace ferry::builder {

double NowSeconds();

class BuildProgress {
 public:
  explicit BuildProgress(bool enabled);
  ~BuildProgress();
  void AddFile() { ++files_; Tick(); }
  void AddBytes(uint64_t n) { bytes_ += n; Tick(); }
  void SetPhase(const std::string& phase) { phase_ = phase; Tick(true); }
  // Clears the line.
  void Done();

 private:
  void Tick(bool force = false);
  bool enabled_;
  std::string phase_ = "scanning";
  uint64_t files_ = 0, bytes_ = 0;
  double start_, last_ = 0;
  bool drawn_ = false;
};

}  // namespace ferry::builder
