// ferry-tool: every `ferry` verb. The `ferry` front end (ferry_front.cc)
// runs the verbs that only talk to ferryd itself and execs this program for
// the rest. This file defines the command line and dispatches; the verbs
// are in files by topic (cli/verbs.h).
//
// Exit codes: 0 success; 1 failure (the message says what and where);
// 2 usage error; 3 not found (no such image or ref).
#include <CLI/CLI.hpp>
#include <sys/resource.h>

#include <cstdio>

#include "builder/image_builder.h"
#include "cli/cli_options.h"
#include "cli/daemon_verbs.h"
#include "cli/profile_verbs.h"
#include "cli/verbs.h"

int main(int argc, char** argv) {
  using namespace ferry;  // NOLINT: main only
  // Deep trees keep one descriptor per level open while scanning.
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  CLI::App app{"ferry: lazy-loading, content-addressed image filesystem"};
  app.require_subcommand(1);
  app.fallthrough();  // subcommands inherit this: `ferry build ... --store URL` works too
  cli::DaemonVerbArgs d;  // the options of the verbs that talk to ferryd
  cli::AddStoreOption(app, &d);
  const std::string& store_url = d.store_url;

  auto* build = app.add_subcommand("build", "build an image from a directory or tar archive(s)");
  std::string source, tag;
  std::vector<std::string> layers;
  bool quiet = false;
  int level = builder::IngestOptions{}.zstd_level;
  std::string platform;
  build->add_option("SOURCE", source,
                    "a directory, a tar archive (plain, gzip, zstd, xz), or an OCI image: "
                    "oci:DIR[:TAG] (an OCI image layout), docker-archive:FILE[:TAG] "
                    "(`docker save` output) or docker://HOST[:PORT]/REPO[:TAG|@DIGEST] (a registry)");
  std::string creds;
  bool insecure = false;
  build->add_option("--creds", creds,
                    "USER:PASSWORD for a docker:// registry (default: ~/.docker/config.json)");
  build->add_flag("--insecure", insecure, "plain HTTP to a docker:// registry (loopback always may)");
  build->add_option("--platform", platform,
                    "for an OCI image index: os/architecture[/variant] (default: this host's)");
  build->add_option("--layer", layers, "a tar layer applied on top, in order (OCI whiteouts)");
  build->add_option("--tag,-t", tag, "name the image (a ref), e.g. python:3.11");
  build->add_flag("--quiet,-q", quiet, "no progress or summary on stderr");
  build->add_option("--zstd-level", level, "compression level for new chunks")->capture_default_str();

  auto* ls = app.add_subcommand("ls", "list named images and images in the store");
  auto* inspect = app.add_subcommand("inspect", "show files, bytes, chunks, packs and dedup of an image");
  std::string image;
  inspect->add_option("IMAGE", image, "image name or id")->required();
  bool list_chunks = false;
  inspect->add_flag("--chunks", list_chunks,
                    "also list every chunk in layout order: pack, offset, sizes, first file using it");
  bool list_loads = false;
  inspect->add_flag("--loads", list_loads,
                    "also list, per program, the files it loads when it runs (found in its ELF "
                    "headers at build time), and per Python module the files of the modules it "
                    "imports (found in its source); fetched with its first read");

  auto* exp = app.add_subcommand("export", "write an image back out as a tar archive");
  std::string out;
  exp->add_option("IMAGE", image, "image name or id")->required();
  exp->add_option("-o,--output", out, "output tar file ('-' for stdout)")->required();

  auto* mount = cli::AddMountCommand(app, &d);
  auto* umount = cli::AddUmountCommand(app, &d);

  auto* stats = app.add_subcommand("stats", "print what a mount has read and fetched (JSON)");
  std::string mountpoint;
  stats->add_option("MOUNTPOINT", mountpoint, "the mount point")->required();

  auto cache = cli::AddCacheCommand(app, &d);

  auto* profile = app.add_subcommand(
      "profile", "start-up profiles: what a workload reads first, prefetched on later mounts");
  profile->require_subcommand(1);
  auto* profile_record = profile->add_subcommand(
      "record", "mount IMAGE here, run the workload in it (chrooted), store the chunks it read");
  std::vector<std::string> workload;
  bool no_chroot = false;
  profile_record->add_option("IMAGE", image, "image name or id")->required();
  profile_record->add_option("COMMAND", workload, "the workload, after --")->required();
  profile_record->add_flag("--no-chroot", no_chroot,
                           "run the workload in the mount as working directory ($FERRY_MOUNT)");
  auto profile_on_mount = cli::AddProfileOnMountCommands(profile, &d);
  auto* profile_show = profile->add_subcommand("show", "summarise an image's profile");
  profile_show->add_option("IMAGE", image, "image name or id")->required();
  profile_show->add_flag("--chunks", list_chunks, "also list the profile's chunks in order, with their files");
  auto* profile_rm = profile->add_subcommand("rm", "remove an image's profile");
  profile_rm->add_option("IMAGE", image, "image name or id")->required();

  cli::SnapshotArgs snap;
  auto* snapshot = cli::AddSnapshotCommand(app, &snap);
  cli::AddDaemonOption({mount, umount, cache.cache, profile_on_mount.start, profile_on_mount.stop}, &d);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*build) return cli::CmdBuild(store_url, source, layers, tag, quiet, level, platform, creds, insecure);
  if (*ls) return cli::CmdLs(store_url);
  if (*inspect) return cli::CmdInspect(store_url, image, list_chunks, list_loads);
  if (*exp) return cli::CmdExport(store_url, image, out);
  if (*mount && (d.no_daemon || d.foreground)) {
    if (d.writable) {
      std::fprintf(stderr, "ferry mount: --writable needs ferryd (drop --no-daemon/--foreground)\n");
      return 2;
    }
    return cli::CmdMount(store_url, d.image, d.mountpoint, d.foreground, d.log_file, d.debug, d.cache_mb);
  }
  if (int rc = cli::RunDaemonVerb(mount, umount, cache, profile_on_mount, d); rc >= 0) return rc;
  if (*profile_record) return cli::ProfileRecord(store_url, image, workload, no_chroot);
  if (*profile_show) return cli::ProfileShow(store_url, image, list_chunks);
  if (*profile_rm) return cli::ProfileRemove(store_url, image);
  if (*stats) return cli::CmdStats(mountpoint);
  if (*snapshot) {
    snap.store_url = store_url;
    return cli::CmdSnapshot(snap);
  }
  return 2;
}

