// The verbs of the full tool (ferry-tool), by topic. Each returns the
// process exit code (0 success, 1 failure, 2 usage, 3 no such image or ref)
// and prints its own errors, naming the file, entry or object concerned.
// The verbs that talk to ferryd are in daemon_verbs.h, start-up profiles in
// profile_verbs.h.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ferry::cli {

// build_verbs.cc: `ferry build SOURCE [--layer TAR ...] [--tag NAME]`.
// SOURCE may be an OCI image (oci:DIR[:TAG], docker-archive:FILE[:TAG],
// docker://HOST/REPO:TAG), imported with an image per layer prefix and its
// chain IDs indexed (builder/oci_import.h); `platform` chooses in an image
// index; `creds` (USER:PASSWORD) and `insecure` (plain HTTP) are for a
// registry.
// Prints the image id on stdout; progress and a summary on stderr unless
// `quiet`. Nothing is published when the build fails.
int CmdBuild(const std::string& store_url, const std::string& source,
             const std::vector<std::string>& layers, const std::string& tag, bool quiet, int level,
             const std::string& platform = "", const std::string& creds = "", bool insecure = false);

// image_verbs.cc: `ferry ls`, `ferry inspect`, `ferry export`.
int CmdLs(const std::string& store_url);
int CmdInspect(const std::string& store_url, const std::string& name, bool list_chunks,
               bool list_loads);
int CmdExport(const std::string& store_url, const std::string& name, const std::string& out);

// mount_verbs.cc: `ferry mount --no-daemon [--foreground]` serves one image
// from this process (no node cache); without --foreground it returns once
// the mount is ready and a child serves it, logging to `log_file` (or the
// default log). `ferry stats MOUNTPOINT` prints what such a mount read.
int CmdMount(const std::string& store_url, const std::string& name, const std::string& mountpoint,
             bool foreground, std::string log_file, bool debug, size_t cache_mb);
int CmdStats(const std::string& mountpoint);

}  // namespace ferry::cli
