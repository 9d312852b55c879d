// `ferry ls`, `ferry inspect`, `ferry export`: what is in the store and in
// an image.
#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <vector>

#include "builder/exporter.h"
#include "chunkstore/chunk_reader.h"
#include "cli/store_access.h"
#include "cli/verb_support.h"
#include "cli/verbs.h"
#include "fs/image_store.h"
#include "fs/oci_index.h"
#include "fs/image_walk.h"

namespace ferry::cli {

int CmdLs(const std::string& store_url) {
  auto store = OpenStore(store_url);
  if (!store.ok()) return Fail(store.status());
  auto refs = fs::ListRefs(**store);
  if (!refs.ok()) return Fail(refs.status());
  auto images = fs::ListImages(**store);
  if (!images.ok()) return Fail(images.status());
  std::map<Digest, std::vector<std::string>> names;
  for (const auto& [name, id] : *refs) names[id].push_back(name);
  std::printf("%-40s %-14s %-10s %s\n", "NAME", "IMAGE", "METADATA", "SOURCE");
  for (const auto& [name, id] : *refs) {
    auto size = (*store)->Size(fs::ImageKey(id));
    // Where an OCI import came from (fs/oci_index.h); nothing otherwise.
    auto source = fs::GetSource(**store, id);
    std::string from;
    if (!source.ok()) {
      from = "(damaged source record)";
    } else if (source->has_value()) {
      from = (*source)->reference;
      const std::string& digest =
          (*source)->manifest_digest.empty() ? (*source)->config_digest : (*source)->manifest_digest;
      from += " @" + digest.substr(0, 19);
    }
    std::printf("%-40s %-14s %-10s %s\n", name.c_str(), id.Short().c_str(),
                size.ok() ? Mb(*size).c_str() : "(missing)", from.c_str());
  }
  for (const Digest& id : *images) {
    if (names.count(id)) continue;
    auto size = (*store)->Size(fs::ImageKey(id));
    std::printf("%-40s %-14s %-10s\n", "<none>", id.Short().c_str(), size.ok() ? Mb(*size).c_str() : "?");
  }
  return 0;
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
  uint64_t free_inodes = 0;
  std::vector<uint8_t> used(img.chunks().size(), 0);
  for (uint64_t ino = 1; ino <= img.inode_count(); ++ino) {
    const auto& n = img.inode(ino);
    if (S_ISREG(n.mode) && n.nlink == 0) {
      ++free_inodes;  // a snapshot's number no file has any more (docs/format.md 6.1)
    } else if (S_ISREG(n.mode)) {
      ++files;
      bytes += n.size;
      for (const auto& e : img.Extents(ino)) {
        referenced += img.chunks()[e.chunk].ulen;
        used[e.chunk] = 1;
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
  uint64_t unique = 0, compressed = 0, unused = 0;
  for (size_t i = 0; i < img.chunks().size(); ++i) {
    if (!used[i]) {
      ++unused;  // kept by a snapshot's layout over its base
      continue;
    }
    unique += img.chunks()[i].ulen;
    compressed += img.chunks()[i].clen;
  }
  std::printf("image      %s\n", id.Hex().c_str());
  std::printf("metadata   %s (%llu inodes)", Mb(img.object_size()).c_str(),
              (unsigned long long)img.inode_count());
  if (auto stored = (*store)->Size(fs::ImageKey(id)); stored.ok() && *stored != img.object_size()) {
    std::printf(", stored as %s (zstd)", Mb(*stored).c_str());
  }
  if (img.delta_base()) {
    std::printf(", as a delta of image %s", img.delta_base()->Hex().substr(0, 12).c_str());
  }
  std::printf("\n");
  std::printf("entries    %llu files, %llu directories, %llu symlinks, %llu other",
              (unsigned long long)files, (unsigned long long)dirs, (unsigned long long)links,
              (unsigned long long)other);
  if (free_inodes > 0) std::printf(" (and %llu free inode numbers)", (unsigned long long)free_inodes);
  std::printf("\n");
  std::printf("file bytes %s logical, %s in data regions (the rest are holes)\n",
              Mb(bytes).c_str(), Mb(referenced).c_str());
  std::printf("chunks     %zu unique (%llu references), %s unique data, %s compressed",
              img.chunks().size() - unused, (unsigned long long)extents, Mb(unique).c_str(),
              Mb(compressed).c_str());
  if (unused > 0) std::printf(" (and %llu records no file uses)", (unsigned long long)unused);
  std::printf("\n");
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

}  // namespace ferry::cli
