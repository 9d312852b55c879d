// `ferry`: the front end. It runs the verbs that only talk to ferryd
// (mount through the daemon, umount, cache stats|prune, profile
// start|stop) itself, and hands every other command line, and every
// --help, unchanged to the full tool, ferry-tool, installed next to it.
//
// Why two programs: the full tool links gRPC, libcurl, libarchive, RocksDB
// and libfuse (95 shared libraries), and on a cold host loading them takes
// ~0.12 s, more than ferryd needs to mount an image. `ferry mount` is on
// the cold-start path of every sandbox, so it must not pay that. This one
// links libc, libstdc++ and header-only libraries, and speaks to ferryd's
// control socket (fs/control_client.h). The options are defined once, in
// cli_options.h, for both programs.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "builder/cli_options.h"

namespace {

[[noreturn]] void ExecTool(char** argv) {
  std::string tool = ferry::cli::ProgramBesideThis("ferry-tool");
  if (tool.empty()) tool = "ferry-tool";
  // argv[0] stays what the user typed, so usage lines read "ferry ...".
  execv(tool.c_str(), argv);
  std::fprintf(stderr, "ferry: cannot run %s: %s\n", tool.c_str(), std::strerror(errno));
  std::exit(127);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ferry;  // NOLINT: main only
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help" || a == "--help-all" || a == "--" || a == "--version") ExecTool(argv);
  }
  CLI::App app{"ferry"};
  app.require_subcommand(1);
  app.fallthrough();
  cli::DaemonVerbArgs d;
  cli::AddStoreOption(app, &d);
  auto* mount = cli::AddMountCommand(app, &d);
  auto* umount = cli::AddUmountCommand(app, &d);
  auto cache = cli::AddCacheCommand(app, &d);
  auto* profile = app.add_subcommand("profile");
  profile->require_subcommand(1);
  auto profile_on_mount = cli::AddProfileOnMountCommands(profile, &d);
  cli::AddDaemonOption({mount, umount, cache.cache, profile_on_mount.start, profile_on_mount.stop}, &d);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError&) {
    ExecTool(argv);  // another verb, or a mistake the full tool explains
  }
  int rc = cli::RunDaemonVerb(mount, umount, cache, profile_on_mount, d);
  if (rc < 0) ExecTool(argv);  // mount --no-daemon or --foreground
  return rc;
}
