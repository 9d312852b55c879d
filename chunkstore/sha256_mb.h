// Multi-buffer SHA-256: hashes many independent messages at once.
//
// On a CPU without SHA-NI (some of the machines ferry has been built and
// tested on have none), single-message SHA-256 runs at roughly 200 MB/s per
// core. Hashing several messages side by side in SIMD lanes (8 with AVX2, 16
// with AVX-512) gives several times that per core. With SHA-NI (others, an
// AMD EPYC among them, have it: OpenSSL 1.1 GB/s for 128 KiB messages)
// OpenSSL is faster still, and is what Sha256Many uses there.
// The kernel is chosen at run time from the CPU's features; the rest of
// ferry is built without -mavx flags.
//
// Thread-safety: every function here is thread-safe; the only shared state
// is read-only (constant tables, and the CPU-feature choice, which is
// computed once under the C++ static-initialisation guarantee).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace ferry::chunkstore {

// Computes out[i] = SHA-256(msgs[i]) for every i.
//
// Messages may have any length (including 0; no 64 KiB limit), may overlap
// or alias each other, and need no alignment. Throws std::invalid_argument
// if out.size() != msgs.size(). Throughput is best with many messages per
// call (at least as many as the kernel has lanes); batches of one or two
// messages are hashed with OpenSSL, which is as fast for them. Thread-safe.
void Sha256Many(std::span<const std::span<const uint8_t>> msgs,
                std::span<std::array<uint8_t, 32>> out);

// Which implementation Sha256Many uses on this CPU: "avx512", "avx2" or
// "scalar" (OpenSSL, one message at a time). Thread-safe.
const char* Sha256ManyImplementation();

// How many messages that implementation hashes side by side (1 for
// "scalar"): fewer in one call leave lanes idle. Thread-safe.
size_t Sha256ManyLanes();

namespace internal {

// For tests and benchmarks: run one implementation explicitly.
enum class Sha256Impl { kScalar, kAvx2, kAvx512 };

// "scalar", "avx2" or "avx512".
const char* Sha256ImplName(Sha256Impl impl);

// Whether this CPU (and OS) can run `impl`. kScalar is always supported.
bool Sha256ImplSupported(Sha256Impl impl);

// Like Sha256Many, but with the given implementation (which must be
// supported; otherwise throws std::invalid_argument), and without the
// small-batch shortcut to OpenSSL.
void Sha256ManyWith(Sha256Impl impl,
                    std::span<const std::span<const uint8_t>> msgs,
                    std::span<std::array<uint8_t, 32>> out);

}  // namespace internal
}  // namespace ferry::chunkstore
