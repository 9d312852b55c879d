// Unit tests for multi-buffer SHA-256: every implementation against OpenSSL.
// The [.bench] test (hidden; run with `chunkstore_test [.bench]`) prints
// MB/s per implementation.
#include <catch2/catch.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "chunkstore/sha256_mb.h"

namespace ferry::chunkstore {
namespace {

using internal::Sha256Impl;
using Out = std::array<uint8_t, 32>;
using Msg = std::span<const uint8_t>;

Out Reference(Msg m) {
  Out d{};
  unsigned int len = 0;
  REQUIRE(EVP_Digest(m.data(), m.size(), d.data(), &len, EVP_sha256(),
                     nullptr) == 1);
  return d;
}

std::string Hex(const Out& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : d) {
    s += kHex[b >> 4];
    s += kHex[b & 15];
  }
  return s;
}

Msg AsMsg(std::string_view s) {
  return Msg(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// All implementations this CPU supports, plus the public entry point
// (represented by std::nullopt).
std::vector<std::optional<Sha256Impl>> Impls() {
  std::vector<std::optional<Sha256Impl>> v = {std::nullopt};
  for (Sha256Impl i : {Sha256Impl::kScalar, Sha256Impl::kAvx2,
                       Sha256Impl::kAvx512}) {
    if (internal::Sha256ImplSupported(i)) v.push_back(i);
  }
  return v;
}

std::string Name(std::optional<Sha256Impl> impl) {
  return impl ? internal::Sha256ImplName(*impl) : "Sha256Many";
}

std::vector<Out> Run(std::optional<Sha256Impl> impl,
                     const std::vector<Msg>& msgs) {
  std::vector<Out> out(msgs.size());
  if (impl) {
    internal::Sha256ManyWith(*impl, msgs, out);
  } else {
    Sha256Many(msgs, out);
  }
  return out;
}

// Hashes `msgs` with every implementation and compares with OpenSSL.
void CheckAll(const std::vector<Msg>& msgs) {
  std::vector<Out> want;
  for (Msg m : msgs) want.push_back(Reference(m));
  for (auto impl : Impls()) {
    INFO("implementation " << Name(impl) << ", batch of " << msgs.size());
    std::vector<Out> got = Run(impl, msgs);
    for (size_t i = 0; i < msgs.size(); ++i) {
      INFO("message " << i << " of length " << msgs[i].size());
      REQUIRE(Hex(got[i]) == Hex(want[i]));
    }
  }
}

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST_CASE("Sha256Many reports its implementation", "[sha256_mb]") {
  std::string impl = Sha256ManyImplementation();
  CHECK((impl == "avx512" || impl == "avx2" || impl == "scalar"));
  CHECK(internal::Sha256ImplSupported(Sha256Impl::kScalar));
  WARN("Sha256Many uses " << impl);
}

TEST_CASE("Sha256Many matches the FIPS 180-4 examples", "[sha256_mb]") {
  const std::string abc = "abc";
  const std::string two_block =
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  const std::string empty;
  std::vector<Msg> msgs = {AsMsg(abc), AsMsg(two_block), AsMsg(empty)};
  for (auto impl : Impls()) {
    INFO("implementation " << Name(impl));
    std::vector<Out> got = Run(impl, msgs);
    CHECK(Hex(got[0]) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(Hex(got[1]) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(Hex(got[2]) ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  }
  // Many copies, so that every lane of every kernel sees them.
  std::vector<Msg> many;
  for (int i = 0; i < 20; ++i) many.insert(many.end(), msgs.begin(), msgs.end());
  CheckAll(many);
}

TEST_CASE("Sha256Many hashes every length from 0 to 300", "[sha256_mb]") {
  std::vector<uint8_t> buf = RandomBytes(400, 1);
  std::vector<Msg> msgs;
  for (size_t len = 0; len <= 300; ++len) {
    msgs.push_back(Msg(buf.data() + len % 7, len));  // also unaligned
  }
  CheckAll(msgs);
  // Also each length alone and in small batches, so each one reaches the
  // scalar finishing path as well as the SIMD lanes.
  for (size_t len = 0; len <= 300; ++len) {
    CheckAll({msgs[len]});
    CheckAll({msgs[len], msgs[300 - len]});
  }
}

TEST_CASE("Sha256Many handles very mixed lengths", "[sha256_mb]") {
  std::mt19937 rng(42);
  const size_t kMax = size_t{1} << 20;
  std::vector<uint8_t> buf = RandomBytes(kMax + 64, 2);
  for (int round = 0; round < 3; ++round) {
    std::vector<Msg> msgs;
    for (int i = 0; i < 70; ++i) {
      // Log-uniform between 1 B and 1 MiB, sometimes exactly 1 MiB.
      size_t len = rng() % 8 == 0
                       ? kMax
                       : std::max<size_t>(
                             1, static_cast<size_t>(std::exp2(
                                    std::uniform_real_distribution<double>(
                                        0, 20)(rng))));
      size_t off = rng() % 64;
      msgs.push_back(Msg(buf.data() + off, len));
    }
    CheckAll(msgs);
  }
}

TEST_CASE("Sha256Many handles batch sizes 1 to 40", "[sha256_mb]") {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf = RandomBytes(20000, 3);
  for (size_t batch = 1; batch <= 40; ++batch) {
    std::vector<Msg> msgs;
    for (size_t i = 0; i < batch; ++i) {
      size_t len = rng() % 10000;
      msgs.push_back(Msg(buf.data() + rng() % 10000, len));
    }
    CheckAll(msgs);
  }
  CheckAll({});
}

TEST_CASE("Sha256Many handles messages that alias one buffer", "[sha256_mb]") {
  std::vector<uint8_t> buf = RandomBytes(100000, 4);
  std::vector<Msg> msgs;
  for (int i = 0; i < 25; ++i) {
    msgs.push_back(Msg(buf.data(), buf.size()));       // identical
    msgs.push_back(Msg(buf.data() + i, 50000 + 997 * i));  // overlapping
    msgs.push_back(Msg(buf.data() + 3 * i, 64 * i));
  }
  CheckAll(msgs);
}

TEST_CASE("Sha256Many rejects mismatched sizes", "[sha256_mb]") {
  std::vector<Msg> msgs(3);
  std::vector<Out> out(2);
  CHECK_THROWS_AS(Sha256Many(msgs, out), std::invalid_argument);
  for (auto impl : Impls()) {
    if (impl) {
      CHECK_THROWS_AS(internal::Sha256ManyWith(*impl, msgs, out),
                      std::invalid_argument);
    }
  }
}

TEST_CASE("Sha256Many throughput", "[.bench]") {
  // 2000 messages of 32 KiB..512 KiB (like chunks), from one buffer.
  std::mt19937 rng(1);
  std::vector<uint8_t> buf = RandomBytes(size_t{1} << 20, 5);
  std::vector<Msg> msgs;
  size_t total = 0;
  for (int i = 0; i < 2000; ++i) {
    size_t len = (32 << 10) + rng() % ((512 - 32) << 10);
    msgs.push_back(Msg(buf.data() + rng() % (buf.size() - len), len));
    total += len;
  }
  std::vector<Out> out(msgs.size());
  for (auto impl : Impls()) {
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      if (impl) {
        internal::Sha256ManyWith(*impl, msgs, out);
      } else {
        Sha256Many(msgs, out);
      }
      auto t1 = std::chrono::steady_clock::now();
      best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
    }
    std::printf("sha256_mb %-10s %8.0f MB/s (%zu messages, %.0f MB)\n",
                Name(impl).c_str(), total / best / 1e6, msgs.size(),
                total / 1e6);
  }
}

}  // namespace
}  // namespace ferry::chunkstore
