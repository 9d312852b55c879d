// Profile replay from a start-up pack (and version 3 profiles, which name
// their chunks): which range reads replay issues, and that a start-up pack
// that is missing, damaged or lying costs fetches, never a wrong byte.
// Part of locality_test (the fixtures are in locality_fixture.h).
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <set>

#include "fs/profile.h"
#include "tests/locality_fixture.h"

namespace ferry::testing {
namespace {

// A profile that jumps about the image's pack: pieces of five files, in an
// order unlike the pack's.
std::vector<uint32_t> ScatteredProfile(Fixture& f) {
  std::vector<uint32_t> order;
  for (const char* path : {"pkg/m5", "data/small", "pkg/m1", "pkg/a_sub/x", "data/huge", "pkg/m3"}) {
    auto ext = f.fs->image().Extents(f.Ino(path));
    for (size_t k = 0; k < ext.size() && k < 12; ++k) order.push_back(ext[k].chunk);
  }
  return order;
}

std::vector<chunkstore::ChunkLocation> Locations(const fs::ImageReader& image, const std::vector<uint32_t>& order) {
  std::vector<chunkstore::ChunkLocation> locs;
  for (uint32_t i : order) locs.push_back(image.Chunk(i));
  return locs;
}

// Reads every chunk of `order` through `fs` (by the files that hold them)
// and compares with the source files.
void ReadProfileFiles(Fixture& f, fs::ImageFs& fs) {
  for (const char* path : {"pkg/m5", "data/small", "pkg/m1", "pkg/a_sub/x", "data/huge", "pkg/m3"}) {
    const uint64_t ino = f.Ino(path);
    const uint64_t size = std::min<uint64_t>(fs.image().inode(ino).size, 1u << 20);
    auto r = fs.Read(ino, 0, size);
    INFO(path);
    REQUIRE(r.ok());
    std::string got;
    for (const auto& v : r->iov) got.append(static_cast<const char*>(v.iov_base), v.iov_len);
    std::ifstream in(f.tmp.path() + "/src/" + path, std::ios::binary);
    std::string src(size, '\0');
    in.read(src.data(), static_cast<std::streamsize>(size));
    CHECK(got == src);
  }
}

}  // namespace

TEST_CASE("profile replay from a start-up pack: a few reads of that pack alone, from its start") {
  Fixture f;
  const std::vector<uint32_t> order = ScatteredProfile(f);
  auto profile = fs::MakeStartupPack(*f.store, *f.chunks, order, Locations(f.fs->image(), order));
  REQUIRE(profile.ok());
  REQUIRE(profile->pack.has_value());
  REQUIRE(fs::StoreProfile(*f.store, f.image_id, f.fs->image().chunks().size(), *profile).ok());
  auto loaded = fs::LoadProfile(*f.store, f.image_id, f.fs->image().chunks().size());
  REQUIRE(loaded.ok());
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->chunks == order);
  CHECK((*loaded)->pack == profile->pack);
  CHECK((*loaded)->clens == profile->clens);
  // The start-up pack is a pack like any other: its own index lists the
  // profile's chunks in profile order, frames back to back.
  auto index = chunkstore::ReadPackIndex(*f.store, *profile->pack, chunkstore::StartupPackKey(*profile->pack));
  REQUIRE(index.ok());
  REQUIRE(index->size() == order.size());
  uint64_t offset = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    CHECK((*index)[k].digest == f.fs->image().Chunk(order[k]).digest);
    CHECK((*index)[k].offset == offset);
    CHECK((*index)[k].clen == profile->clens[k]);
    offset += profile->clens[k];
  }

  // Replayed without the pack, the scattered profile takes a read per place.
  auto reads_of = [&](const fs::Profile& p, std::vector<std::string>* keys) {
    Recorded r(f);
    auto& [rec, reader, fs] = r;
    fs.ReplayProfile(p);
    REQUIRE(Arrive(reader, fs, order));
    REQUIRE(reader.WaitIdle());  // the replay's every request is in rec
    ReadProfileFiles(f, fs);
    CHECK(fs.fetch_counters().demand_misses == 0);
    *keys = rec.keys();
    return rec.ranges();
  };
  std::vector<std::string> keys_v1, keys_v2;
  auto v1 = reads_of(fs::Profile{order, {}, {}}, &keys_v1);
  auto v2 = reads_of(*profile, &keys_v2);
  INFO("reads without the pack " << v1.size() << ", with it " << v2.size());
  CHECK(v2.size() < v1.size());
  REQUIRE(!v2.empty());
  CHECK(v2.front().first == 0);  // the profile's first chunk first
  uint64_t total = 0;
  for (size_t k = 0; k < v2.size(); ++k) {
    CHECK(keys_v2[k] == chunkstore::StartupPackKey(*profile->pack));
    total += v2[k].second;
  }
  CHECK(total == offset);  // each frame read once, nothing else
  for (const auto& k : keys_v1) CHECK(k != chunkstore::StartupPackKey(*profile->pack));

  // Recorded again, the profile replaces the old one; removed, it takes its pack along.
  auto again = fs::MakeStartupPack(*f.store, *f.chunks, std::vector<uint32_t>(order.begin(), order.end() - 1),
                                   Locations(f.fs->image(), std::vector<uint32_t>(order.begin(), order.end() - 1)));
  REQUIRE(again.ok());
  REQUIRE(fs::StoreProfile(*f.store, f.image_id, f.fs->image().chunks().size(), *again).ok());
  CHECK(f.store->Size(chunkstore::StartupPackKey(*profile->pack)).status().code() == StatusCode::kNotFound);
  REQUIRE(fs::RemoveProfile(*f.store, f.image_id, f.fs->image().chunks().size()).ok());
  CHECK(f.store->Size(chunkstore::StartupPackKey(*again->pack)).status().code() == StatusCode::kNotFound);
  CHECK(f.store->Size(fs::ProfileKey(f.image_id)).status().code() == StatusCode::kNotFound);
  CHECK(fs::RemoveProfile(*f.store, f.image_id, f.fs->image().chunks().size()).code() == StatusCode::kNotFound);

  // A build never finds chunks in a start-up pack (its copies go when the
  // profile goes): with the image's own packs gone, building the same tree
  // writes every chunk anew, and the image names no start-up pack.
  auto last = fs::MakeStartupPack(*f.store, *f.chunks, order, Locations(f.fs->image(), order));
  REQUIRE(last.ok());
  std::set<Digest> image_packs;
  for (uint32_t i = 0; i < f.fs->image().chunks().size(); ++i) image_packs.insert(f.fs->image().Chunk(i).pack);
  for (const Digest& p : image_packs) REQUIRE(f.store->Delete(chunkstore::PackKey(p)).ok());
  builder::ImageBuilder b(f.store.get(), {});
  REQUIRE(b.AddDirectory(f.tmp.path() + "/src").ok());
  auto rebuilt = b.Finish("");
  REQUIRE(rebuilt.ok());
  CHECK(rebuilt->ingest.new_chunks == f.fs->image().chunks().size());
  auto image = fs::LoadImage(*f.store, rebuilt->image);
  REQUIRE(image.ok());
  for (uint32_t i = 0; i < (*image)->chunks().size(); ++i) {
    const chunkstore::ChunkLocation loc = (*image)->Chunk(i);
    CHECK(loc.pack != *last->pack);
    CHECK(f.store->Size(chunkstore::PackKey(loc.pack)).ok());
  }
}

TEST_CASE("profile replay from a start-up pack that is missing or damaged: reads still return the right bytes") {
  Fixture f;
  const std::vector<uint32_t> order = ScatteredProfile(f);
  auto profile = fs::MakeStartupPack(*f.store, *f.chunks, order, Locations(f.fs->image(), order));
  REQUIRE(profile.ok());
  const std::string pack_key = chunkstore::StartupPackKey(*profile->pack);
  for (const char* how : {"missing", "damaged"}) {
    SECTION(how) {
      Recorded r(f);
      auto& [rec, reader, fs] = r;
      // Slow, then wrong: the workload's reads find the chunks in flight
      // from the start-up pack and must not take its failure as theirs.
      rec.tamper = [&](const std::string& key, Status st, std::span<uint8_t> out) {
        if (key != pack_key) return st;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (std::string(how) == "missing") return NotFoundError(key + " (removed by the test)");
        for (size_t k = 0; k < out.size(); k += 997) out[k] ^= 0x40;
        return st;
      };
      fs.ReplayProfile(*profile);
      // The replay's first request is out (its chunks claimed, in flight).
      const Digest first = fs.image().Chunk(order.front()).digest;
      for (int i = 0; i < 2000 && !reader.Present(first); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      CHECK(reader.Present(first));
      ReadProfileFiles(f, fs);
      CHECK(fs.counters().read_errors == 0);
      CHECK(fs.fetch_counters().demand_misses > 0);  // fetched from the image's packs
    }
  }
}

TEST_CASE("profile version 3: the start-up pack is fetched from the profile alone; a profile that lies costs fetches, never a wrong byte") {
  Fixture f;
  const std::vector<uint32_t> order = ScatteredProfile(f);
  auto profile = fs::MakeStartupPack(*f.store, *f.chunks, order, Locations(f.fs->image(), order));
  REQUIRE(profile.ok());
  REQUIRE(profile->pack.has_value());
  REQUIRE(profile->digests.size() == order.size());
  REQUIRE(profile->ulens.size() == order.size());
  uint64_t pack_bytes = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    CHECK(profile->digests[k] == f.fs->image().Chunk(order[k]).digest);
    CHECK(profile->ulens[k] == f.fs->image().Chunk(order[k]).ulen);
    pack_bytes += profile->clens[k];
  }
  // Stored and loaded, it is still version 3.
  REQUIRE(fs::StoreProfile(*f.store, f.image_id, f.fs->image().chunks().size(), *profile).ok());
  auto loaded = fs::LoadProfile(*f.store, f.image_id, f.fs->image().chunks().size());
  REQUIRE(loaded.ok());
  REQUIRE(loaded->has_value());
  CHECK((*loaded)->digests == profile->digests);
  CHECK((*loaded)->ulens == profile->ulens);

  const std::string pack_key = chunkstore::StartupPackKey(*profile->pack);
  RecordingStore rec(f.store.get());
  chunkstore::ChunkReader reader(&rec, [] {
    chunkstore::ChunkReaderOptions ro;
    ro.fetch_threads = 1;
    return ro;
  }());
  auto counters = std::make_shared<chunkstore::FetchCounters>();
  // Waits until every chunk of `digests` is in memory (or given up on).
  auto settle = [&](const std::vector<Digest>& digests) {
    for (int i = 0; i < 2000; ++i) {
      bool all = true;
      for (const Digest& d : digests) all = all && reader.Present(d);
      if (all) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // In flight counts as present: a read of each waits for its flight.
    for (size_t k = 0; k < order.size(); ++k) CHECK(reader.Read(f.fs->image().Chunk(order[k])).ok());
  };

  SECTION("its own profile") {
    // No image loaded: the profile alone says what to fetch and how to check it.
    REQUIRE(fs::PrefetchStartupPack(reader, *profile, counters));
    settle(profile->digests);
    const auto keys = rec.keys();
    REQUIRE(!keys.empty());
    uint64_t fetched = 0;
    for (const auto& [offset, n] : rec.ranges()) fetched += n;
    for (const auto& k : keys) CHECK(k == pack_key);  // nothing from the image's packs
    CHECK(fetched == pack_bytes);
    CHECK(counters->store_bytes == pack_bytes);
    CHECK(reader.stats().corrupt == 0);

    // Then the image arrives: the replay only takes note, and the reads
    // need nothing more from the store.
    fs::ImageFs fs(std::move(fs::LoadImage(*f.store, f.image_id).value()), &reader,
                   [](const std::string&) {}, counters);
    CHECK(fs.ReplayProfile(*profile, /*fetching=*/true));
    CHECK(fs.profile_chunks() == std::set<uint32_t>(order.begin(), order.end()).size());
    ReadProfileFiles(f, fs);
    CHECK(fs.counters().read_errors == 0);
    CHECK(fs.fetch_counters().demand_misses == 0);
    CHECK(rec.keys().size() == keys.size());
  }
  SECTION("a profile whose digest for one entry is not the image's") {
    fs::Profile lying = *profile;
    lying.digests[1] = Sha256(std::string_view("not that chunk"));
    REQUIRE(fs::PrefetchStartupPack(reader, lying, counters));
    // The lying entry is never present: settle on the others, then on its refusal.
    std::vector<Digest> honest = lying.digests;
    honest.erase(honest.begin() + 1);
    settle(honest);
    for (int i = 0; i < 2000 && reader.stats().corrupt == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // The frame did not hash to the digest the profile gave: refused,
    // never kept under either digest.
    CHECK(reader.stats().corrupt >= 1);
    CHECK(!reader.Present(lying.digests[1]));
    std::vector<std::string> logged;
    fs::ImageFs fs(std::move(fs::LoadImage(*f.store, f.image_id).value()), &reader,
                   [&](const std::string& l) { logged.push_back(l); }, counters);
    CHECK_FALSE(fs.ReplayProfile(lying, /*fetching=*/true));
    CHECK(fs.profile_chunks() == 0);
    REQUIRE(logged.size() == 1);
    CHECK(logged[0].find("not this image's") != std::string::npos);
    ReadProfileFiles(f, fs);  // right bytes, from the image's packs where needed
    CHECK(fs.counters().read_errors == 0);
  }
}

}  // namespace ferry::testing
