// ferryd's state files under ROOT (mounts.json, containerd/snapshots.json):
// written whole to PATH.tmp, fsynced, renamed over PATH, so a crash leaves
// the old file or the new one, never a mix.
#pragma once

#include <string>

#include "chunkstore/status.h"

namespace ferry::snapshotter {

Status SaveStateFile(const std::string& path, const std::string& text);

}  // namespace ferry::snapshotter
