// libFuzzer target: untrusted tar layers through ImageBuilder.
//
// Each input is written to a file and imported with ImageBuilder::AddTar
// (any compression libarchive detects) into a fresh FileStore, then, if the
// import succeeded, applied once more as a second layer (layer merging,
// whiteouts of lower-layer content, hard links into the lower layer) and
// finished with Finish(""). Hostile archives must be refused with a Status,
// never crash, hang or grow memory without bound.
//
// When Finish succeeds the result must be a usable image (a violation
// aborts): LoadImage must accept it, and every extent of every regular file
// must read back through ImageFs and a ChunkReader over the same store
// (chunks present in an uploaded pack and matching their digests).
//
// Files: one directory per process, FERRY_FUZZ_TMPDIR (default /dev/shm, else
// $TMPDIR or /tmp) + "/ferry-tar-fuzz.<pid>", holding the input file and the
// store; the store is removed after every input and the directory at exit
// (or, after a crash, by the next run: directories of dead pids are removed).
//
// FERRY_FUZZ_VERBOSE=1 prints the Status of each step.
//
// Build and run: tests/fuzz/run.sh (which also makes the seed archives).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "builder/image_builder.h"
#include "chunkstore/chunk_reader.h"
#include "chunkstore/file_store.h"
#include "fs/image_fs.h"
#include "fs/image_store.h"

namespace {

namespace stdfs = std::filesystem;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "tar_import_fuzz: %s\n", what.c_str());
  std::abort();
}

struct Workspace {
  std::string dir;    // per process
  std::string input;  // dir/input
  std::string store;  // dir/store
};

std::string BaseDir() {
  if (const char* d = std::getenv("FERRY_FUZZ_TMPDIR"); d && *d) return d;
  if (access("/dev/shm", W_OK | X_OK) == 0) return "/dev/shm";  // fsyncs are free
  if (const char* d = std::getenv("TMPDIR"); d && *d) return d;
  return "/tmp";
}

// Removes the directories of earlier processes that no longer run (a crash,
// or an exit that skipped atexit handlers, leaves one behind).
void RemoveStaleWorkspaces(const std::string& base) {
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(base, ec)) {
    std::string name = entry.path().filename().string();
    const std::string prefix = "ferry-tar-fuzz.";
    if (name.rfind(prefix, 0) != 0) continue;
    std::string pid = name.substr(prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (access(("/proc/" + pid).c_str(), F_OK) == 0) continue;  // still running
    stdfs::remove_all(entry.path(), ec);
  }
}

const Workspace& GetWorkspace() {
  static const Workspace* ws = [] {
    auto* w = new Workspace;
    std::string base = BaseDir();
    RemoveStaleWorkspaces(base);
    w->dir = base + "/ferry-tar-fuzz." + std::to_string(getpid());
    w->input = w->dir + "/input";
    w->store = w->dir + "/store";
    std::error_code ec;
    stdfs::remove_all(w->dir, ec);
    if (!stdfs::create_directories(w->dir, ec) || ec) {
      Die("cannot create " + w->dir + ": " + ec.message());
    }
    std::atexit([] {
      std::error_code ec;
      stdfs::remove_all(GetWorkspace().dir, ec);
    });
    return w;
  }();
  return *ws;
}

void WriteInput(const std::string& path, const uint8_t* data, size_t size) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) Die("cannot create " + path);
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) Die("cannot write " + path);
    done += static_cast<size_t>(n);
  }
  close(fd);
}

// The image Finish published must load and every stored extent must read.
void CheckImage(ferry::chunkstore::FileStore& store, const ferry::Digest& id) {
  auto reader = ferry::fs::LoadImage(store, id);
  if (!reader.ok()) Die("built image does not load: " + reader.status().ToString());
  ferry::chunkstore::ChunkReader chunks(&store, 4 << 20);
  std::string log;
  ferry::fs::ImageFs fs(std::move(*reader), &chunks, [&](const std::string& m) { log = m; });
  const ferry::fs::ImageReader& image = fs.image();
  for (uint64_t ino = 1; ino <= image.inode_count(); ++ino) {
    for (const ferry::fs::ExtentRecord& e : image.Extents(ino)) {
      uint32_t len = image.chunks()[e.chunk].ulen;
      auto res = fs.Read(ino, e.file_offset, len);
      if (!res.ok()) {
        Die("inode " + std::to_string(ino) + " offset " + std::to_string(e.file_offset) +
            " does not read back: " + res.status().ToString() + " (" + log + ")");
      }
      if (res->bytes != len) Die("short read of a stored extent");
    }
  }
}

// FERRY_FUZZ_VERBOSE=1: print what became of each input (for reproducers).
bool Verbose() {
  static const bool v = std::getenv("FERRY_FUZZ_VERBOSE") != nullptr;
  return v;
}

bool Step(const char* what, const ferry::Status& st) {
  if (Verbose()) std::fprintf(stderr, "tar_import_fuzz: %s: %s\n", what, st.ToString().c_str());
  return st.ok();
}

void Import(const Workspace& ws) {
  auto store = ferry::chunkstore::FileStore::Open(ws.store);
  if (!store.ok()) Die("cannot open store: " + store.status().ToString());

  ferry::builder::BuildOptions opt;
  opt.progress = false;
  opt.ingest.threads = 1;
  // Small chunks and packs, so that small inputs cut several chunks, dedup
  // within the build and fill more than one pack.
  opt.ingest.chunker.min_size = 64;
  opt.ingest.chunker.avg_size = 256;
  opt.ingest.chunker.max_size = 1024;
  opt.ingest.pack_target_bytes = 4096;
  ferry::builder::ImageBuilder builder(store->get(), opt);

  if (!Step("AddTar (layer 1)", builder.AddTar(ws.input))) return;
  if (!Step("AddTar (layer 2)", builder.AddTar(ws.input))) return;
  auto summary = builder.Finish("");
  if (!Step("Finish", summary.status())) return;
  CheckImage(**store, summary->image);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Workspace& ws = GetWorkspace();
  WriteInput(ws.input, data, size);
  Import(ws);
  std::error_code ec;
  stdfs::remove_all(ws.store, ec);
  if (ec) Die("cannot clean " + ws.store + ": " + ec.message());
  return 0;
}
