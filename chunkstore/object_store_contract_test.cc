// The ObjectStore contract (object_store.h), one set of checks run against
// every store: file://, and s3:// against a real S3-compatible server
// (s3rver) on loopback, path-style with a prefix and small List pages,
// virtual-hosted at a bucket's root, over TLS, and behind a front that
// checks every SigV4 signature independently of libcurl.
// Run one family with its tag: [file] or [s3].
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "chunkstore/file_store.h"
#include "chunkstore/s3_store.h"
#include "chunkstore/store_factory.h"
#include "tests/s3/test_servers.h"
#include "tests/support/bytes.h"

namespace ferry::chunkstore {
namespace {

using testing::ScopedS3Front;
using testing::ScopedS3rver;
using testing::ScopedTempDir;

// A store under test; each check gets a fresh, empty one.
struct Fixture {
  std::unique_ptr<ScopedTempDir> dir;  // the file store's root, or scratch space
  std::unique_ptr<ObjectStore> store;
};

using testing::Bytes;

using testing::Random;

std::string Text(const Result<std::shared_ptr<const Blob>>& blob) {
  return blob.ok() ? std::string((*blob)->view()) : "<" + blob.status().ToString() + ">";
}

void PutGetSizeRangeOverwrite(Fixture& f) {
  ObjectStore& s = *f.store;
  REQUIRE(s.Put("images/abc", Bytes("hello world")).ok());
  CHECK(Text(s.Get("images/abc")) == "hello world");
  CHECK(s.Size("images/abc").value() == 11);
  std::vector<uint8_t> out(5);
  REQUIRE(s.GetRange("images/abc", 6, out).ok());
  CHECK(std::string(out.begin(), out.end()) == "world");
  std::vector<uint8_t> none;
  CHECK(s.GetRange("images/abc", 3, none).ok());
  REQUIRE(s.Put("images/abc", Bytes("replaced")).ok());
  CHECK(Text(s.Get("images/abc")) == "replaced");
  CHECK(s.Size("images/abc").value() == 8);
  REQUIRE(s.Put("images/empty", {}).ok());
  CHECK(Text(s.Get("images/empty")).empty());
  CHECK(s.Size("images/empty").value() == 0);
}

void NotFoundAndDelete(Fixture& f) {
  ObjectStore& s = *f.store;
  std::vector<uint8_t> out(4);
  CHECK(s.Get("packs/missing").status().code() == StatusCode::kNotFound);
  CHECK(s.Size("packs/missing").status().code() == StatusCode::kNotFound);
  CHECK(s.GetRange("packs/missing", 0, out).code() == StatusCode::kNotFound);
  CHECK(s.Delete("packs/missing").ok());
  REQUIRE(s.Put("packs/x", Bytes("1234")).ok());
  REQUIRE(s.Delete("packs/x").ok());
  CHECK(s.Get("packs/x").status().code() == StatusCode::kNotFound);
  CHECK(s.List("packs/").value().empty());
}

void RangePastEndIsCorruption(Fixture& f) {
  ObjectStore& s = *f.store;
  REQUIRE(s.Put("packs/x", Bytes("12345")).ok());
  std::vector<uint8_t> ten(10), one(1), two(2);
  CHECK(s.GetRange("packs/x", 0, ten).code() == StatusCode::kCorruption);  // runs past the end
  CHECK(s.GetRange("packs/x", 4, two).code() == StatusCode::kCorruption);
  CHECK(s.GetRange("packs/x", 5, one).code() == StatusCode::kCorruption);  // starts at the end
  CHECK(s.GetRange("packs/x", 1000, one).code() == StatusCode::kCorruption);
  REQUIRE(s.GetRange("packs/x", 4, one).ok());
  CHECK(one[0] == '5');
}

void EveryKeyCharacterRoundTrips(Fixture& f) {
  ObjectStore& s = *f.store;
  const std::vector<std::string> keys = {"refs/library/python:3.11", "refs/a@b+c%20d=e-f_g.h",
                                         "refs/%2F%25/x", "refs/deep/er/and/deeper/Z9"};
  for (const auto& k : keys) REQUIRE(s.Put(k, Bytes("v:" + k)).ok());
  for (const auto& k : keys) CHECK(Text(s.Get(k)) == "v:" + k);
  auto listed = s.List("refs/").value();
  auto sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  CHECK(listed == sorted);
  for (std::string bad : {"", "../etc/passwd", "a//b", "a/./b", "/abs", "a/b c", "a/..", ".tmp/x"}) {
    CHECK(s.Put(bad, Bytes("x")).code() == StatusCode::kInvalidArgument);
    CHECK(s.Get(bad).status().code() == StatusCode::kInvalidArgument);
  }
}

void ListIsSortedAndPaged(Fixture& f) {
  ObjectStore& s = *f.store;
  std::vector<std::string> packs;
  for (int i = 24; i >= 0; --i) {  // more than three pages of 7 (the s3 stores' page size)
    char name[32];
    std::snprintf(name, sizeof(name), "packs/%02d", i);
    packs.push_back(name);
    REQUIRE(s.Put(name, Bytes(name)).ok());
  }
  REQUIRE(s.Put("images/one", Bytes("1")).ok());
  REQUIRE(s.Put("packsuffix", Bytes("2")).ok());
  std::sort(packs.begin(), packs.end());
  CHECK(s.List("packs/").value() == packs);
  CHECK(s.List("images/").value() == std::vector<std::string>{"images/one"});
  CHECK(s.List("nothing/").value().empty());
  auto all = s.List("").value();
  CHECK(all.size() == packs.size() + 2);
  CHECK(std::is_sorted(all.begin(), all.end()));
  auto pa = s.List("pa").value();  // a prefix need not end at a '/'
  CHECK(pa.size() == packs.size() + 1);
}

void LargeObjectsAndMultipart(Fixture& f) {
  ObjectStore& s = *f.store;
  auto big = Random((3 << 20) + 12345, 7);  // past the s3 stores' test threshold: multipart
  REQUIRE(s.Put("packs/big", big).ok());
  CHECK(s.Size("packs/big").value() == big.size());
  auto got = s.Get("packs/big");
  REQUIRE(got.ok());
  CHECK(std::equal(big.begin(), big.end(), (*got)->bytes().begin(), (*got)->bytes().end()));
  std::vector<uint8_t> across(300000);  // spans a part boundary
  REQUIRE(s.GetRange("packs/big", (1 << 20) - 1000, across).ok());
  CHECK(std::equal(across.begin(), across.end(), big.begin() + (1 << 20) - 1000));
  std::vector<uint8_t> tail(12345);
  REQUIRE(s.GetRange("packs/big", 3 << 20, tail).ok());
  CHECK(std::equal(tail.begin(), tail.end(), big.begin() + (3 << 20)));
  auto mid = Random(900 << 10, 8);  // below the threshold: one PUT
  REQUIRE(s.Put("packs/mid", mid).ok());
  CHECK(Text(s.Get("packs/mid")) == std::string(mid.begin(), mid.end()));
}

void PutFileTakesTheFile(Fixture& f) {
  ObjectStore& s = *f.store;
  for (size_t size : {size_t{1000}, size_t{(2 << 20) + 77}}) {
    auto data = Random(size, static_cast<uint32_t>(size));
    std::string path = f.dir->path() + "/upload." + std::to_string(size);
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
    std::string key = "packs/file" + std::to_string(size);
    REQUIRE(s.PutFile(key, path).ok());
    CHECK(Text(s.Get(key)) == std::string(data.begin(), data.end()));
    CHECK_FALSE(std::filesystem::exists(path));  // both stores take it: builders rely on that
  }
  CHECK(s.PutFile("packs/nofile", f.dir->path() + "/absent").code() == StatusCode::kNotFound);
}

void ConcurrentCallers(Fixture& f) {
  ObjectStore& s = *f.store;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        std::string key = "refs/t" + std::to_string(t) + "/" + std::to_string(i);
        if (s.Put(key, Bytes(key)).ok() && Text(s.Get(key)) == key) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(ok == 40);
  CHECK(s.List("refs/").value().size() == 40);
}

void UrlOpensTheSameStore(Fixture& f) {
  REQUIRE(f.store->Put("refs/name", Bytes("id\n")).ok());
  auto again = OpenObjectStore(f.store->Url());
  REQUIRE(again.ok());
  CHECK((*again)->Url() == f.store->Url());
  CHECK(Text((*again)->Get("refs/name")) == "id\n");
}

const std::vector<std::pair<const char*, void (*)(Fixture&)>>& Contract() {
  static const std::vector<std::pair<const char*, void (*)(Fixture&)>> checks = {
      {"put, get, size, range, overwrite", PutGetSizeRangeOverwrite},
      {"not found and delete", NotFoundAndDelete},
      {"a range past the end is corruption", RangePastEndIsCorruption},
      {"every key character round-trips", EveryKeyCharacterRoundTrips},
      {"list is sorted, recursive and paged", ListIsSortedAndPaged},
      {"large objects and multipart uploads", LargeObjectsAndMultipart},
      {"PutFile uploads and takes the file", PutFileTakesTheFile},
      {"concurrent callers", ConcurrentCallers},
      {"Url() opens the same store", UrlOpensTheSameStore},
  };
  return checks;
}

void RunContract(const std::function<Fixture()>& make) {
  for (const auto& [name, check] : Contract()) {
    DYNAMIC_SECTION(name) {
      Fixture f = make();
      check(f);
    }
  }
}

ScopedS3rver& SharedS3rver() {
  static ScopedS3rver server;  // one per test process, stopped at exit
  return server;
}

// An s3:// store on `endpoint` under a fresh prefix (or a fresh bucket).
Fixture S3Fixture(const std::string& endpoint, const std::string& options, bool own_bucket = false) {
  static int counter = 0;
  Fixture f;
  f.dir = std::make_unique<ScopedTempDir>("ferry-contract");
  std::string n = std::to_string(getpid()) + "-" + std::to_string(++counter);
  std::string where = ScopedS3rver::kBucket + std::string("/run-") + n;
  if (own_bucket) {
    where = "bucket-" + n;
    SharedS3rver().CreateBucket(where);
  }
  auto store = S3Store::OpenUrl("s3://" + where + "?endpoint=" + endpoint + "&max_keys=7" + options);
  REQUIRE(store.ok());
  (*store)->SetMultipartForTesting(1 << 20, 256 << 10);
  f.store = std::move(*store);
  return f;
}

TEST_CASE("file:// store meets the ObjectStore contract", "[file]") {
  RunContract([] {
    Fixture f;
    f.dir = std::make_unique<ScopedTempDir>("ferry-contract");
    f.store = std::move(OpenObjectStore("file://" + f.dir->path() + "/store").value());
    return f;
  });
}

TEST_CASE("s3:// store meets the contract: path-style, prefix, small pages", "[s3]") {
  testing::UseTestCredentials();
  RunContract([] { return S3Fixture(SharedS3rver().endpoint(), "&path_style=1"); });
}

TEST_CASE("s3:// store meets the contract: virtual-hosted, bucket root", "[s3]") {
  testing::UseTestCredentials();
  std::string endpoint = "http://s3.localhost:" + std::to_string(SharedS3rver().port());
  RunContract([&] { return S3Fixture(endpoint, "&path_style=0", /*own_bucket=*/true); });
}

TEST_CASE("s3:// store meets the contract: every request's signature verifies", "[s3]") {
  testing::UseTestCredentials();
  ScopedS3Front front(SharedS3rver().port());
  RunContract([&] { return S3Fixture(front.endpoint(), ""); });
  auto log = front.Log();
  CHECK(log.size() >= 2);
  for (const auto& line : log) {
    INFO(line);
    CHECK(line.find(" sig=ok ") != std::string::npos);
  }
}

TEST_CASE("s3:// store meets the contract: https", "[s3]") {
  testing::UseTestCredentials();
  static ScopedS3rver tls_server(/*tls=*/true);
  setenv("AWS_CA_BUNDLE", tls_server.cert_file().c_str(), 1);
  RunContract([&] { return S3Fixture(tls_server.endpoint(), ""); });
  unsetenv("AWS_CA_BUNDLE");  // a store opened without it does not trust the server
  auto untrusted = S3Store::OpenUrl("s3://ferry-test?endpoint=" + tls_server.endpoint());
  REQUIRE(untrusted.ok());
  CHECK((*untrusted)->Size("x").status().code() == StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ferry::chunkstore
