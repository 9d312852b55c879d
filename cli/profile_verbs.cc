#include "cli/profile_verbs.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "chunkstore/chunk_reader.h"
#include "chunkstore/store_factory.h"
#include "cli/verb_support.h"
#include "fs/fuse_server.h"
#include "fs/image_fs.h"
#include "fs/image_store.h"
#include "fs/image_walk.h"
#include "fs/profile.h"

namespace ferry::cli {
namespace {

struct Opened {
  std::unique_ptr<chunkstore::ObjectStore> store;
  Digest id;
  std::unique_ptr<fs::ImageReader> image;
};

Result<Opened> Open(const std::string& url, const std::string& name) {
  Opened o;
  ASSIGN_OR_RETURN(o.store, chunkstore::OpenObjectStore(url.empty() ? chunkstore::DefaultStoreUrl() : url));
  ASSIGN_OR_RETURN(o.id, fs::ResolveImage(*o.store, name));
  ASSIGN_OR_RETURN(o.image, fs::LoadImage(*o.store, o.id));
  return o;
}

// Runs the workload and returns its wait status.
int RunWorkload(const std::string& mnt, const std::vector<std::string>& command, bool no_chroot) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (no_chroot) {
      setenv("FERRY_MOUNT", mnt.c_str(), 1);
      if (chdir(mnt.c_str()) != 0) _exit(126);
    } else if (chroot(mnt.c_str()) != 0 || chdir("/") != 0) {
      std::fprintf(stderr, "ferry: cannot chroot into %s: %s\n", mnt.c_str(), std::strerror(errno));
      _exit(126);
    }
    std::vector<char*> argv;
    for (const auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "ferry: cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

int ProfileRecord(const std::string& store_url, const std::string& name,
                  const std::vector<std::string>& command, bool no_chroot) {
  if (command.empty()) {
    std::fprintf(stderr, "ferry profile record: give the workload after --\n");
    return 2;
  }
  auto o = Open(store_url, name);
  if (!o.ok()) return Fail(o.status().Annotate("cannot record a profile of '" + name + "'"));
  const uint32_t chunk_count = static_cast<uint32_t>(o->image->chunks().size());
  char tmpl[] = "/tmp/ferry-profile-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Fail(ErrnoError("create a mount point in /tmp"));
  const std::string mnt = tmpl;

  chunkstore::ChunkReader chunks(o->store.get(), 256u << 20);
  fs::ImageFs imagefs(std::move(o->image), &chunks, [](const std::string& l) {
    std::fprintf(stderr, "ferry: %s\n", l.c_str());
  });
  fs::ProfileRecorder recorder(chunk_count);
  imagefs.SetRecorder(&recorder);
  fs::FuseOptions fopt;
  fopt.allow_other = geteuid() == 0;
  fopt.handle_signals = false;
  fopt.fsname = "ferry:" + o->id.Short();
  fs::FuseServer server(&imagefs, fopt);
  if (Status st = server.Mount(mnt); !st.ok()) {
    rmdir(mnt.c_str());
    return Fail(st);
  }
  std::thread serve([&] { server.Serve().IgnoreError(); });
  std::fprintf(stderr, "ferry: recording the start-up of %s on %s (image %s)\n", command[0].c_str(),
               mnt.c_str(), o->id.Short().c_str());
  int status = RunWorkload(mnt, command, no_chroot);
  imagefs.SetRecorder(nullptr);
  server.Detach();
  serve.join();
  rmdir(mnt.c_str());

  std::vector<uint32_t> order = recorder.Take();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "ferry: the workload failed (%s %d); no profile stored\n",
                 WIFEXITED(status) ? "exit status" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return 1;
  }
  uint64_t bytes = 0;
  std::vector<chunkstore::ChunkLocation> locs;
  for (uint32_t i : order) {
    bytes += imagefs.image().chunks()[i].ulen;
    locs.push_back(imagefs.image().Chunk(i));
  }
  if (!order.empty()) {
    std::fprintf(stderr, "ferry: writing the start-up pack: %zu chunks, %.1f MB, zstd level %d\n",
                 order.size(), bytes / 1e6, fs::kStartupPackLevel);
  }
  auto profile = fs::MakeStartupPack(*o->store, chunks, order, locs);
  if (!profile.ok()) return Fail(profile.status().Annotate("no profile stored"));
  if (Status st = fs::StoreProfile(*o->store, o->id, chunk_count, *profile); !st.ok()) return Fail(st);
  uint64_t packed = 0;
  for (uint32_t c : profile->clens) packed += c;
  std::printf("recorded %zu chunks (%.1f MB) read by the workload, in order; stored as %s",
              order.size(), bytes / 1e6, fs::ProfileKey(o->id).c_str());
  if (profile->pack) {
    std::printf(", with start-up pack %s (%.1f MB)", chunkstore::StartupPackKey(*profile->pack).c_str(),
                packed / 1e6);
  }
  std::printf("\n");
  return 0;
}

int ProfileShow(const std::string& store_url, const std::string& name, bool list_chunks) {
  auto o = Open(store_url, name);
  if (!o.ok()) return Fail(o.status());
  auto p = fs::LoadProfileOf(*o->store, o->id, *o->image);
  if (!p.ok()) return Fail(p.status());
  if (!p->has_value()) return Fail(NotFoundError("image " + o->id.Short() + " has no profile"));
  auto own = fs::LoadProfile(*o->store, o->id, static_cast<uint32_t>(o->image->chunks().size()));
  const bool inherited = own.ok() && !own->has_value();
  if (std::string why = fs::MismatchWithImage(**p, o->image->chunks()); !why.empty()) {
    return Fail(CorruptionError(fs::ProfileKey(o->id) + ": not this image's profile: " + why));
  }
  const std::vector<uint32_t>& order = (*p)->chunks;
  uint64_t bytes = 0;
  for (uint32_t i : order) bytes += o->image->chunks()[i].ulen;
  const std::string key = inherited ? fs::ProfileKey(*o->image->delta_base()) +
                                           " (its base's: it is stored as a delta of it)"
                                     : fs::ProfileKey(o->id);
  std::printf("image    %s\nprofile  %s\nchunks   %zu of %zu (%.1f MB of %.1f MB of chunk data)\n",
              o->id.Hex().c_str(), key.c_str(), order.size(),
              o->image->chunks().size(), bytes / 1e6, [&] {
                uint64_t all = 0;
                for (const auto& c : o->image->chunks()) all += c.ulen;
                return all / 1e6;
              }());
  std::printf("version  %d%s\n", !(*p)->pack ? 1 : (*p)->digests.empty() ? 2 : 3,
              (*p)->digests.empty() ? "" : " (with chunk digests: fetched before the image metadata)");
  if ((*p)->pack) {
    uint64_t packed = 0;
    for (uint32_t c : (*p)->clens) packed += c;
    std::printf("pack     %s (%.1f MB compressed, chunks in profile order)\n",
                chunkstore::StartupPackKey(*(*p)->pack).c_str(), packed / 1e6);
  } else {
    std::printf("pack     none (replay reads the image's packs)\n");
  }
  if (list_chunks) {
    const fs::ImageReader& img = *o->image;
    auto owner = fs::ChunkOwners(img);
    auto paths = fs::InodePaths(img);
    std::printf("\nposition\tchunk\tulen\tfile_offset\tpath\n");
    for (size_t pos = 0; pos < order.size(); ++pos) {
      uint32_t i = order[pos];
      std::printf("%zu\t%u\t%u\t%llu\t%s\n", pos, i, img.chunks()[i].ulen,
                  (unsigned long long)owner[i].file_offset,
                  owner[i].ino ? paths[owner[i].ino - 1].c_str() : "-");
    }
  }
  return 0;
}

int ProfileRemove(const std::string& store_url, const std::string& name) {
  auto o = Open(store_url, name);
  if (!o.ok()) return Fail(o.status());
  if (Status st = fs::RemoveProfile(*o->store, o->id, static_cast<uint32_t>(o->image->chunks().size()));
      !st.ok()) {
    return Fail(st);
  }
  std::printf("removed the profile of %s\n", o->id.Short().c_str());
  return 0;
}

}  // namespace ferry::cli
