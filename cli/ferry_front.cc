// `ferry`: the front end. It runs the verbs that only talk to ferryd
// (kOwnVerbs) itself, and hands every other command line, and every --help,
// unchanged to the full tool, ferry-tool, installed next to it.
//
// Why two programs: the full tool links gRPC, libcurl, libarchive, RocksDB
// and libfuse (95 shared libraries), and on a cold host loading them takes
// ~0.12 s, more than ferryd needs to mount an image. `ferry mount` is on
// the cold-start path of every sandbox, so it must not pay that. This one
// links libc, libstdc++ and header-only libraries, and speaks to ferryd's
// control socket (snapshotter/api/control_client.h). The options are
// defined once, in cli_options.h, for both programs, so a command line
// this program parses means the same in both, and its usage errors are the
// ones the tool would give.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "cli/cli_options.h"

namespace {

// The verbs (with their sub-verb, where they have one) that this program
// runs; `mount` only through ferryd (--no-daemon and --foreground serve
// from the process that mounts, which is the tool).
constexpr std::string_view kOwnVerbs[] = {"mount", "umount", "cache", "profile start",
                                          "profile stop", "snapshot"};

[[noreturn]] void ExecTool(char** argv) {
  std::string tool = ferry::cli::ProgramBesideThis("ferry-tool");
  if (tool.empty()) tool = "ferry-tool";
  // argv[0] stays what the user typed, so usage lines read "ferry ...".
  execv(tool.c_str(), argv);
  std::fprintf(stderr, "ferry: cannot run %s: %s\n", tool.c_str(), std::strerror(errno));
  std::exit(127);
}

// The verb a command line names: its first word that is not an option
// (skipping the value of the one global option, --store), and for
// `profile` the word after it. "" if there is none.
std::string VerbOf(int argc, char** argv) {
  std::string verb;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--store") {
      ++i;
      continue;
    }
    if (a.starts_with("-")) continue;
    if (verb.empty()) {
      verb = a;
      if (verb != "profile") return verb;
    } else {
      return verb + " " + std::string(a);
    }
  }
  return verb;
}

bool IsOwnVerb(const std::string& verb) {
  for (std::string_view own : kOwnVerbs) {
    if (verb == own) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ferry;  // NOLINT: main only
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help" || a == "--help-all" || a == "--" || a == "--version") ExecTool(argv);
  }
  if (!IsOwnVerb(VerbOf(argc, argv))) ExecTool(argv);
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
  cli::SnapshotArgs snap;
  auto* snapshot = cli::AddSnapshotCommand(app, &snap);
  cli::AddDaemonOption({mount, umount, cache.cache, profile_on_mount.start, profile_on_mount.stop}, &d);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*mount && (d.no_daemon || d.foreground)) ExecTool(argv);
  if (*snapshot) {
    snap.store_url = d.store_url;
    return cli::CmdSnapshot(snap);
  }
  int rc = cli::RunDaemonVerb(mount, umount, cache, profile_on_mount, d);
  return rc < 0 ? 2 : rc;
}
