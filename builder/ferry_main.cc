// ferry: the command-line front end. A thin main over the libraries:
// build, ls, inspect, export, mount, umount, stats, cache, profile.
//
// Exit codes: 0 success; 1 failure (the message says what and where);
// 2 usage error; 3 not found (no such image or ref).
#include <CLI/CLI.hpp>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>

#include "builder/cli_options.h"
#include "builder/daemon_cli.h"
#include "builder/exporter.h"
#include "builder/profile_cli.h"
#include "builder/image_builder.h"
#include "chunkstore/chunk_reader.h"
#include "fs/fuse_server.h"
#include "fs/image_store.h"
#include "fs/image_walk.h"

namespace ferry {
namespace {

int Fail(const Status& st) {
  std::fprintf(stderr, "ferry: %s\n", st.ToString().c_str());
  return st.code() == StatusCode::kNotFound ? 3 : 1;
}

std::string Mb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MB", bytes / 1e6);
  return buf;
}

Result<std::unique_ptr<chunkstore::ObjectStore>> OpenStore(const std::string& url) {
  return chunkstore::OpenObjectStore(url.empty() ? chunkstore::DefaultStoreUrl() : url);
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int CmdBuild(const std::string& store_url, const std::string& source,
             const std::vector<std::string>& layers, const std::string& tag, bool quiet,
             int level) {
  auto store = OpenStore(store_url);
  if (!store.ok()) return Fail(store.status());
  if (source.empty() && layers.empty()) {
    std::fprintf(stderr, "ferry build: give a SOURCE directory or archive, or --layer TAR\n");
    return 2;
  }
  if (!tag.empty() && !fs::IsValidRefName(tag)) {
    std::fprintf(stderr, "ferry build: invalid image name '%s' (letters, digits and ._:@+%%=- "
                 "in /-separated parts, starting with a letter or digit)\n", tag.c_str());
    return 2;
  }
  struct stat st;
  if (!source.empty() && stat(source.c_str(), &st) != 0) {
    return Fail(ErrnoError("build source " + source));
  }
  for (const std::string& layer : layers) {
    if (stat(layer.c_str(), &st) != 0) return Fail(ErrnoError("layer " + layer));
  }
  builder::BuildOptions opt;
  opt.progress = !quiet;
  opt.ingest.zstd_level = level;
  builder::ImageBuilder b(store->get(), opt);
  const char* kNothing = "build failed, nothing was published";
  if (!source.empty()) {
    Status st = IsDirectory(source) ? b.AddDirectory(source) : b.AddTar(source);
    if (!st.ok()) return Fail(st.Annotate(kNothing));
  }
  for (const std::string& layer : layers) {
    if (Status st = b.AddTar(layer); !st.ok()) return Fail(st.Annotate(kNothing));
  }
  auto sum = b.Finish(tag);
  if (!sum.ok()) return Fail(sum.status().Annotate(kNothing));
  const auto& in = sum->ingest;
  if (!quiet) {
    std::fprintf(stderr,
                 "built %s in %.2f s: %llu files, %llu dirs, %llu symlinks, %llu other; %s of "
                 "file data (%s stored, %.0f MB/s)\n"
                 "chunks: %llu total, %llu new (%s new data, %s written compressed in %llu "
                 "packs); deduplicated %s against the store, %s within the image\n",
                 tag.empty() ? "image" : tag.c_str(), sum->seconds,
                 (unsigned long long)sum->files, (unsigned long long)sum->directories,
                 (unsigned long long)sum->symlinks, (unsigned long long)sum->others,
                 Mb(sum->logical_bytes).c_str(), Mb(in.bytes_in).c_str(),
                 in.bytes_in / 1e6 / std::max(sum->seconds, 1e-6),
                 (unsigned long long)in.chunks, (unsigned long long)in.new_chunks,
                 Mb(in.new_bytes).c_str(), Mb(in.written_bytes).c_str(),
                 (unsigned long long)in.packs, Mb(in.dedup_store_bytes).c_str(),
                 Mb(in.dedup_build_bytes).c_str());
  }
  std::printf("%s\n", sum->image.Hex().c_str());
  return 0;
}

int CmdLs(const std::string& store_url) {
  auto store = OpenStore(store_url);
  if (!store.ok()) return Fail(store.status());
  auto refs = fs::ListRefs(**store);
  if (!refs.ok()) return Fail(refs.status());
  auto images = fs::ListImages(**store);
  if (!images.ok()) return Fail(images.status());
  std::map<Digest, std::vector<std::string>> names;
  for (const auto& [name, id] : *refs) names[id].push_back(name);
  std::printf("%-40s %-14s %s\n", "NAME", "IMAGE", "METADATA");
  for (const auto& [name, id] : *refs) {
    auto size = (*store)->Size(fs::ImageKey(id));
    std::printf("%-40s %-14s %s\n", name.c_str(), id.Short().c_str(),
                size.ok() ? Mb(*size).c_str() : "(missing)");
  }
  for (const Digest& id : *images) {
    if (names.count(id)) continue;
    auto size = (*store)->Size(fs::ImageKey(id));
    std::printf("%-40s %-14s %s\n", "<none>", id.Short().c_str(),
                size.ok() ? Mb(*size).c_str() : "?");
  }
  return 0;
}

Result<std::unique_ptr<fs::ImageReader>> OpenImage(chunkstore::ObjectStore& store,
                                                   const std::string& name, Digest* id_out) {
  ASSIGN_OR_RETURN(Digest id, fs::ResolveImage(store, name));
  if (id_out) *id_out = id;
  return fs::LoadImage(store, id);
}

int CmdInspect(const std::string& store_url, const std::string& name, bool list_chunks,
               bool list_loads) {
  auto store = OpenStore(store_url);
  if (!store.ok()) return Fail(store.status());
  Digest id;
  auto image = OpenImage(**store, name, &id);
  if (!image.ok()) return Fail(image.status());
  const fs::ImageReader& img = **image;
  uint64_t files = 0, dirs = 0, links = 0, other = 0, bytes = 0, referenced = 0, extents = 0;
  for (uint64_t ino = 1; ino <= img.inode_count(); ++ino) {
    const auto& n = img.inode(ino);
    if (S_ISREG(n.mode)) {
      ++files;
      bytes += n.size;
      for (const auto& e : img.Extents(ino)) {
        referenced += img.chunks()[e.chunk].ulen;
        ++extents;
      }
    } else if (S_ISDIR(n.mode)) {
      ++dirs;
    } else if (S_ISLNK(n.mode)) {
      ++links;
    } else {
      ++other;
    }
  }
  uint64_t unique = 0, compressed = 0;
  for (const auto& c : img.chunks()) {
    unique += c.ulen;
    compressed += c.clen;
  }
  std::printf("image      %s\n", id.Hex().c_str());
  std::printf("metadata   %s (%llu inodes)", Mb(img.object_size()).c_str(),
              (unsigned long long)img.inode_count());
  if (auto stored = (*store)->Size(fs::ImageKey(id)); stored.ok() && *stored != img.object_size()) {
    std::printf(", stored as %s (zstd)", Mb(*stored).c_str());
  }
  std::printf("\n");
  std::printf("entries    %llu files, %llu directories, %llu symlinks, %llu other\n",
              (unsigned long long)files, (unsigned long long)dirs, (unsigned long long)links,
              (unsigned long long)other);
  std::printf("file bytes %s logical, %s in data regions (the rest are holes)\n",
              Mb(bytes).c_str(), Mb(referenced).c_str());
  std::printf("chunks     %zu unique (%llu references), %s unique data, %s compressed\n",
              img.chunks().size(), (unsigned long long)extents, Mb(unique).c_str(),
              Mb(compressed).c_str());
  std::printf("packs      %zu\n", img.packs().size());
  std::printf("dedup      %.2fx (data referenced / unique chunk data)\n",
              unique ? double(referenced) / double(unique) : 1.0);
  // Records are sorted by inode: count the distinct ones.
  auto inodes_in = [](const auto& records) {
    size_t n = 0;
    for (size_t i = 0; i < records.size(); ++i) n += i == 0 || records[i].ino != records[i - 1].ino;
    return n;
  };
  std::printf("loads      %zu files with what they load or import recorded (%zu records)\n", inodes_in(img.loads()),
              img.loads().size());
  uint64_t early_bytes = 0;
  for (const auto& r : img.early()) early_bytes += r.length;
  std::printf("early      %zu ranges of %zu ELF files, %s, fetched first on a file's first read\n",
              img.early().size(), inodes_in(img.early()), Mb(early_bytes).c_str());
  if (list_loads) {
    auto paths = fs::InodePaths(img);
    std::printf("\nfile\tloads\n");
    for (size_t i = 0; i < img.loads().size(); ++i) {
      const auto& r = img.loads()[i];
      std::printf("%s\t%s\n", paths[r.ino - 1].c_str(), paths[r.dep - 1].c_str());
    }
  }
  if (list_chunks) {
    // Layout order: chunk index = place in the packs. Each chunk is shown
    // with the first file (lowest inode, i.e. walk order) that uses it.
    auto owner = fs::ChunkOwners(img);
    auto paths = fs::InodePaths(img);
    std::printf("\nchunk\tpack\tpack_offset\tclen\tulen\tfile_offset\tpath\n");
    for (uint32_t i = 0; i < img.chunks().size(); ++i) {
      const auto& c = img.chunks()[i];
      std::printf("%u\t%u\t%llu\t%u\t%u\t%llu\t%s\n", i, c.pack, (unsigned long long)c.pack_offset,
                  c.clen, c.ulen, (unsigned long long)owner[i].file_offset,
                  owner[i].ino ? paths[owner[i].ino - 1].c_str() : "-");
    }
  }
  return 0;
}

int CmdExport(const std::string& store_url, const std::string& name, const std::string& out) {
  auto store = OpenStore(store_url);
  if (!store.ok()) return Fail(store.status());
  auto image = OpenImage(**store, name, nullptr);
  if (!image.ok()) return Fail(image.status());
  chunkstore::ChunkReader chunks(store->get(), 64u << 20);
  auto sum = builder::ExportImage(**image, chunks, out);
  if (!sum.ok()) return Fail(sum.status());
  std::fprintf(stderr, "exported %llu entries, %s of file data to %s\n",
               (unsigned long long)sum->entries, Mb(sum->bytes).c_str(), out.c_str());
  if (sum->skipped_sockets) {
    std::fprintf(stderr, "note: %llu sockets skipped (tar cannot hold sockets)\n",
                 (unsigned long long)sum->skipped_sockets);
  }
  return 0;
}

std::string DefaultLogFile() {
  if (geteuid() == 0) return "/var/log/ferry/mount.log";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/state/ferry/mount.log";
}

int CmdMount(const std::string& store_url, const std::string& name, const std::string& mountpoint,
             bool foreground, std::string log_file, bool debug, size_t cache_mb) {
  auto store = OpenStore(store_url);
  if (!store.ok()) return Fail(store.status());
  Digest id;
  auto image = OpenImage(**store, name, &id);
  if (!image.ok()) return Fail(image.status().Annotate("cannot mount '" + name + "'"));
  if (!IsDirectory(mountpoint)) {
    return Fail(NotFoundError("mount point " + mountpoint + " is not a directory"));
  }
  FILE* log = stderr;
  if (!foreground) {
    if (log_file.empty()) log_file = DefaultLogFile();
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(log_file).parent_path(), ec);
    log = std::fopen(log_file.c_str(), "a");
    if (log == nullptr) return Fail(ErrnoError("open log file " + log_file));
    setvbuf(log, nullptr, _IOLBF, 0);
  }
  std::string mp = std::filesystem::absolute(mountpoint).lexically_normal().string();
  auto logger = [log, mp](const std::string& msg) {
    char when[32];
    std::time_t now = std::time(nullptr);
    std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
    std::fprintf(log, "%s ferry[%d] %s: %s\n", when, getpid(), mp.c_str(), msg.c_str());
  };
  chunkstore::ChunkReader chunks(store->get(), cache_mb << 20);
  fs::ImageFs imagefs(std::move(*image), &chunks, logger);
  fs::FuseOptions fopt;
  fopt.allow_other = geteuid() == 0;
  fopt.debug = debug;
  fopt.fsname = "ferry:" + id.Short();
  fs::FuseServer server(&imagefs, fopt);
  if (Status st = server.Mount(mp); !st.ok()) return Fail(st);
  logger("mounted image " + id.Hex() + " from " + (*store)->Url());
  if (!foreground) {
    std::printf("mounted %s (%s) at %s; log: %s\n", name.c_str(), id.Short().c_str(), mp.c_str(),
                log_file.c_str());
    std::fflush(stdout);
    // Detach: the parent returns with the mount ready; the child serves.
    if (Status st = server.Daemonize(); !st.ok()) return Fail(st);
  }
  Status st = server.Serve();
  logger("unmounted; stats " + imagefs.StatsJson());
  if (!st.ok()) return Fail(st);
  return 0;
}

int CmdStats(const std::string& mountpoint) {
  std::string value(4096, '\0');
  ssize_t n = getxattr(mountpoint.c_str(), "user.ferry.stats", value.data(), value.size());
  if (n < 0) {
    return Fail(ErrnoError(mountpoint + " is not a ferry mount (no stats)"));
  }
  value.resize(static_cast<size_t>(n));
  std::printf("%s\n", value.c_str());
  return 0;
}

}  // namespace
}  // namespace ferry

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
  build->add_option("SOURCE", source, "a directory, or a tar archive (plain, gzip, zstd, xz)");
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

  cli::AddDaemonOption({mount, umount, cache.cache, profile_on_mount.start, profile_on_mount.stop}, &d);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*build) return CmdBuild(store_url, source, layers, tag, quiet, level);
  if (*ls) return CmdLs(store_url);
  if (*inspect) return CmdInspect(store_url, image, list_chunks, list_loads);
  if (*exp) return CmdExport(store_url, image, out);
  if (*mount && (d.no_daemon || d.foreground)) {
    if (d.writable) {
      std::fprintf(stderr, "ferry mount: --writable needs ferryd (drop --no-daemon/--foreground)\n");
      return 2;
    }
    return CmdMount(store_url, d.image, d.mountpoint, d.foreground, d.log_file, d.debug, d.cache_mb);
  }
  if (int rc = cli::RunDaemonVerb(mount, umount, cache, profile_on_mount, d); rc >= 0) return rc;
  if (*profile_record) return cli::ProfileRecord(store_url, image, workload, no_chroot);
  if (*profile_show) return cli::ProfileShow(store_url, image, list_chunks);
  if (*profile_rm) return cli::ProfileRemove(store_url, image);
  if (*stats) return CmdStats(mountpoint);
  return 2;
}
