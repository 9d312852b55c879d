#include "builder/progress.h"

#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <ctime>

namespace ferry::builder {

double NowSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

BuildProgress::BuildProgress(bool enabled, ProgressSink sink)
    : enabled_(sink != nullptr || (enabled && isatty(STDERR_FILENO))),
      sink_(std::move(sink)),
      start_(NowSeconds()) {}

BuildProgress::~BuildProgress() { Done(); }

void BuildProgress::Tick(bool force) {
  if (!enabled_) return;
  double now = NowSeconds();
  if (!force && now - last_ < 0.2) return;
  last_ = now;
  if (sink_) {
    sink_(ProgressReport{phase_, files_, bytes_, now - start_});
    return;
  }
  double mb = bytes_ / 1e6;
  std::fprintf(stderr, "\r\033[K%s: %llu files, %.1f MB, %.0f MB/s", phase_.c_str(),
               static_cast<unsigned long long>(files_), mb, mb / std::max(now - start_, 1e-3));
  drawn_ = true;
}

void BuildProgress::Done() {
  if (drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

}  // namespace ferry::builder
