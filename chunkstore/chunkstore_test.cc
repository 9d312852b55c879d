// Unit tests for chunkstore: the file store, packs, URL options and the
// fault store (the chunk reader's are in chunk_reader_test.cc).
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>

#include "chunkstore/fault_store.h"
#include "chunkstore/store_factory.h"
#include "chunkstore/test_stores.h"
#include "chunkstore/url_options.h"

namespace ferry::chunkstore {
namespace {

using testing::Bytes;
using testing::Random;

TEST_CASE("pack writer: the file is exactly the frames, the index and the trailer, whatever their sizes") {
  TempStore t;
  std::string path = t.store->TempPath("test-pack");
  auto writer = std::move(PackWriter::Create(path).value());
  // Frames around and beyond the writer's 1 MiB buffer, many small ones
  // (an index over 1 MiB), and one of no bytes; the writer does not look
  // inside frames.
  std::vector<size_t> sizes = {10, (1u << 20) - 10, 11, 1u << 20, 3u << 20, 0, 700000, 700000};
  for (int i = 0; i < 25000; ++i) sizes.push_back(1 + i % 97);
  std::vector<uint8_t> expect;
  std::vector<ChunkLocation> locs;
  uint8_t fill = 0;
  for (size_t n : sizes) {
    std::vector<uint8_t> frame(n);
    for (auto& b : frame) b = fill++;
    ChunkLocation loc;
    loc.digest = Sha256(frame);
    loc.offset = writer->Append(loc.digest, frame, 1).value();
    CHECK(loc.offset == expect.size());
    loc.clen = static_cast<uint32_t>(n);
    expect.insert(expect.end(), frame.begin(), frame.end());
    CHECK(writer->bytes_written() == expect.size());
    locs.push_back(loc);
  }
  Digest id = writer->Finish().value();
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), {});
  CHECK(Sha256(file) == id);
  REQUIRE(file.size() > expect.size());
  CHECK(std::equal(expect.begin(), expect.end(), file.begin()));
  auto index = ParsePackIndex(file, id);
  REQUIRE(index.ok());
  REQUIRE(index->size() == locs.size());
  for (size_t i = 0; i < locs.size(); ++i) {
    CHECK((*index)[i].offset == locs[i].offset);
    CHECK((*index)[i].clen == locs[i].clen);
    CHECK((*index)[i].digest == locs[i].digest);
  }
}

TEST_CASE("file store: put, get, range, size, list, delete") {
  TempStore t;
  FileStore& s = *t.store;
  REQUIRE(s.Put("images/abc", Bytes("hello world")).ok());
  REQUIRE(s.Get("images/abc").value()->view() == "hello world");
  std::vector<uint8_t> out(5);
  REQUIRE(s.GetRange("images/abc", 6, out).ok());
  CHECK(std::string(out.begin(), out.end()) == "world");
  CHECK(s.Size("images/abc").value() == 11);
  REQUIRE(s.Put("images/abc", Bytes("replaced")).ok());
  CHECK(s.Get("images/abc").value()->view() == "replaced");
  REQUIRE(s.Put("refs/library/python:3.11", Bytes("x")).ok());
  auto keys = s.List("refs/").value();
  REQUIRE(keys.size() == 1);
  CHECK(keys[0] == "refs/library/python:3.11");
  REQUIRE(s.Delete("images/abc").ok());
  CHECK(s.Get("images/abc").status().code() == StatusCode::kNotFound);
  CHECK(s.Delete("images/abc").ok());
  // Nothing is left behind in the temporary folder.
  CHECK(std::filesystem::is_empty(t.root + "/.tmp"));
}

TEST_CASE("file store: a range past the end is corruption, bad keys are refused") {
  TempStore t;
  REQUIRE(t.store->Put("packs/x", Bytes("12345")).ok());
  std::vector<uint8_t> out(10);
  CHECK(t.store->GetRange("packs/x", 0, out).code() == StatusCode::kCorruption);
  CHECK(t.store->GetRange("packs/missing", 0, out).code() == StatusCode::kNotFound);
  for (std::string bad : {"", "../etc/passwd", "a//b", "a/./b", "/abs", "a/b c", "a/.."}) {
    CHECK(t.store->Put(bad, Bytes("x")).code() == StatusCode::kInvalidArgument);
  }
  CHECK(OpenObjectStore("gopher://x").status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("pack: index round-trips and detects damage") {
  TempStore t;
  std::vector<std::vector<uint8_t>> chunks = {Random(1000, 1), Random(70000, 2), std::vector<uint8_t>(5000, 'z')};
  auto locs = WritePack(*t.store, chunks);
  auto index = ReadPackIndex(*t.store, locs[0].pack).value();
  REQUIRE(index.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(index[i].digest == locs[i].digest);
    CHECK(index[i].offset == locs[i].offset);
    CHECK(index[i].clen == locs[i].clen);
    std::vector<uint8_t> frame(index[i].clen), out;
    REQUIRE(t.store->GetRange(PackKey(index[i].pack), index[i].offset, frame).ok());
    REQUIRE(DecompressAndVerify(frame, index[i].ulen, index[i].digest, &out).ok());
    CHECK(out == chunks[i]);
    frame[frame.size() / 2] ^= 1;
    CHECK(DecompressAndVerify(frame, index[i].ulen, index[i].digest, &out).code() ==
          StatusCode::kCorruption);
    CHECK(out.empty());
  }
  auto whole = t.store->Get(PackKey(locs[0].pack)).value();
  std::vector<uint8_t> bytes(whole->bytes().begin(), whole->bytes().end());
  CHECK(ParsePackIndex(bytes, locs[0].pack).ok());
  bytes[bytes.size() - kPackTrailerSize - 5] ^= 1;  // inside the index
  CHECK(ParsePackIndex(bytes, locs[0].pack).status().code() == StatusCode::kCorruption);
  bytes.resize(10);
  CHECK(ParsePackIndex(bytes, locs[0].pack).status().code() == StatusCode::kCorruption);
}

TEST_CASE("url options: sizes and durations with units") {
  CHECK(*ParseScaled("10G", 1024) == Approx(10.0 * (1ull << 30)));
  CHECK(*ParseScaled("100MB", 1000) == Approx(100e6));
  CHECK(*ParseScaled("2GiB", 1024) == Approx(2.0 * (1ull << 30)));
  CHECK(*ParseScaled("65536", 1024) == Approx(65536));
  for (const char* bad : {"5X", "abc", "-1", "", "1KK"}) CHECK_FALSE(ParseScaled(bad, 1024).ok());
  CHECK(*ParseDurationSeconds("500ms") == Approx(0.5));
  CHECK_FALSE(ParseDurationSeconds("1parsec").ok());
  auto opts = ParseUrlOptions("a=1&&b=%2Fx");
  REQUIRE(opts.ok());
  REQUIRE(opts->size() == 2);
  CHECK((*opts)[1].second == "/x");
  CHECK_FALSE(ParseUrlOptions("novalue").ok());
}

TEST_CASE("fault store: options, seeded failures, corruption, the URL round trip") {
  TempStore t;
  REQUIRE(t.store->Put("obj", Bytes(std::string(1000, 'x'))).ok());
  CHECK_FALSE(ParseFaultOptions("latency=fast").ok());
  CHECK_FALSE(ParseFaultOptions("fail=2").ok());
  CHECK_FALSE(ParseFaultOptions("colour=red").ok());
  auto o = ParseFaultOptions("latency=20ms&jitter=1ms&bandwidth=100MB&fail=0.2&corrupt=0.5&seed=9");
  REQUIRE(o.ok());
  CHECK(o->latency_s == Approx(0.020));
  CHECK(o->bandwidth_bps == Approx(100e6));
  CHECK(o->seed == 9);

  auto failures = [&](uint64_t seed) {
    // attempts=1: the raw draws, without the store's retries.
    auto s = OpenObjectStore("fault+file://" + t.root + "?fail=0.5&attempts=1&seed=" + std::to_string(seed));
    REQUIRE(s.ok());
    std::string pattern;
    for (int i = 0; i < 200; ++i) {
      auto r = (*s)->Size("obj");
      CHECK((r.ok() || r.status().code() == StatusCode::kUnavailable));
      pattern += r.ok() ? '.' : 'x';
    }
    return pattern;
  };
  std::string a = failures(3);
  CHECK(a == failures(3));  // the same seed fails the same requests
  CHECK(a != failures(4));
  auto fails = std::count(a.begin(), a.end(), 'x');
  CHECK(fails > 50);
  CHECK(fails < 150);

  auto bad = OpenObjectStore("fault+file://" + t.root + "?corrupt=1");
  REQUIRE(bad.ok());
  CHECK((*bad)->Url() == "fault+file://" + t.root + "?corrupt=1");
  std::vector<uint8_t> got(1000);
  REQUIRE((*bad)->GetRange("obj", 0, got).ok());
  CHECK(std::string(got.begin(), got.end()) != std::string(1000, 'x'));
  CHECK_FALSE(OpenObjectStore("fault+file://" + t.root + "?latency=1parsec").ok());
}

}  // namespace
}  // namespace ferry::chunkstore
