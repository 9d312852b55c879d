// `ferry profile ...`: record which chunks a workload reads during its
// start-up, so that mounts on a host that has not seen the image prefetch
// them (fs/profile.h). Each returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace ferry::cli {

// Mounts the image in this process, runs `command` in it (chrooted into the
// mount, or with `no_chroot` in the mount as working directory with
// $FERRY_MOUNT set), and stores the chunks it read, in order, as the image's
// profile. Nothing is stored if the workload fails.
int ProfileRecord(const std::string& store_url, const std::string& image,
                  const std::vector<std::string>& command, bool no_chroot);
// Summarises the profile; with `list_chunks`, one line per chunk in the
// profile's order: position, chunk index, bytes, file offset, file.
int ProfileShow(const std::string& store_url, const std::string& image, bool list_chunks);
int ProfileRemove(const std::string& store_url, const std::string& image);

}  // namespace ferry::cli
