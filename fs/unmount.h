// Unmounting a mount point without a daemon (for `ferry umount` of a
// --no-daemon mount, and for the FUSE server itself). Links only libc.
#pragma once

#include <string>

#include "chunkstore/status.h"

namespace ferry::fs {

// Unmounts a ferry mount point: umount2 for root, fusermount3 -u otherwise.
Status Unmount(const std::string& mountpoint);

}  // namespace ferry::fs
