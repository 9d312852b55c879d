// Multi-buffer SHA-256, written from FIPS 180-4 (section 6.2).
//
// Layout: a scheduler (plain C++) keeps N lanes busy; each lane hashes one
// message: first its whole 64-byte blocks straight from the caller's
// memory, then its one or two padded final blocks from a small per-lane
// buffer. When a lane's message ends, its digest is written out and the lane
// is refilled with the next pending message (longest messages first, so the
// lanes run out of work at about the same time). The SIMD kernel hashes
// `nblocks` consecutive blocks in all lanes at once; the scheduler asks for
// as many blocks as every busy lane has contiguously. Idle lanes hash a busy
// lane's data and their result is thrown away. When no message is pending and
// only a few lanes are still busy, they are finished with a scalar
// compression function, which is then faster than mostly-empty SIMD lanes.

#include "chunkstore/sha256_mb.h"

#include <immintrin.h>
#include <cpuid.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace ferry::chunkstore {
namespace {

constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr uint32_t kIv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t LoadBe32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 |
         uint32_t{p[3]};
}
inline void StoreBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline uint32_t Rotr(uint32_t x, int n) { return x >> n | x << (32 - n); }

// ---------------------------------------------------------------------------
// Compression functions. The round macros below are shared by the scalar
// code and the SIMD kernels, which define ADD, ROR, CH, ... for their types.
// In the SIMD kernels the state is transposed: st[j * N + lane] is word j of a lane.
// ptrs[lane] points at `nblocks` consecutive 64-byte blocks.

// One round, with the working variables renamed instead of moved.
#define FERRY_SHA_ROUND(a, b, c, d, e, f, g, h, k, w) \
  do {                                               \
    auto t1_ = ADD(ADD(ADD(h, BSIG1(e)), ADD(CH(e, f, g), SET1(k))), w); \
    auto t2_ = ADD(BSIG0(a), MAJ(a, b, c));          \
    d = ADD(d, t1_);                                 \
    h = ADD(t1_, t2_);                               \
  } while (0)

// Rounds i..i+7 (i a multiple of 8), message words W(i)..W(i+7).
#define FERRY_SHA_8ROUNDS(i, W)                                  \
  FERRY_SHA_ROUND(a, b, c, d, e, f, g, h, kK[(i) + 0], W(0));    \
  FERRY_SHA_ROUND(h, a, b, c, d, e, f, g, kK[(i) + 1], W(1));    \
  FERRY_SHA_ROUND(g, h, a, b, c, d, e, f, kK[(i) + 2], W(2));    \
  FERRY_SHA_ROUND(f, g, h, a, b, c, d, e, kK[(i) + 3], W(3));    \
  FERRY_SHA_ROUND(e, f, g, h, a, b, c, d, kK[(i) + 4], W(4));    \
  FERRY_SHA_ROUND(d, e, f, g, h, a, b, c, kK[(i) + 5], W(5));    \
  FERRY_SHA_ROUND(c, d, e, f, g, h, a, b, kK[(i) + 6], W(6));    \
  FERRY_SHA_ROUND(b, c, d, e, f, g, h, a, kK[(i) + 7], W(7))

// W[t] for t >= 16, in a ring of 16: w[j] holds W[t-16] and becomes W[t].
#define FERRY_SHA_SCHED(j)                                                 \
  (w[(j) & 15] = ADD(ADD(SSIG1(w[((j) + 14) & 15]), w[((j) + 9) & 15]),   \
                     ADD(SSIG0(w[((j) + 1) & 15]), w[(j) & 15])))

// --- Scalar: 1 lane (finishes the last few lanes of a batch) --------------

#define ADD(x, y) ((x) + (y))
#define SET1(k) (k)
#define ROR(x, n) Rotr(x, n)
#define XOR3(x, y, z) ((x) ^ (y) ^ (z))
#define BSIG0(x) XOR3(ROR(x, 2), ROR(x, 13), ROR(x, 22))
#define BSIG1(x) XOR3(ROR(x, 6), ROR(x, 11), ROR(x, 25))
#define SSIG0(x) XOR3(ROR(x, 7), ROR(x, 18), (x) >> 3)
#define SSIG1(x) XOR3(ROR(x, 17), ROR(x, 19), (x) >> 10)
#define CH(e, f, g) ((((f) ^ (g)) & (e)) ^ (g))
#define MAJ(a, b, c) (((a) & (b)) | (((a) | (b)) & (c)))

void CompressScalar(uint32_t state[8], const uint8_t* p, size_t nblocks) {
  uint32_t a = state[0], b = state[1], c = state[2], d = state[3],
           e = state[4], f = state[5], g = state[6], h = state[7];
  for (; nblocks > 0; --nblocks, p += 64) {
    uint32_t w[16];
    for (int t = 0; t < 16; ++t) w[t] = LoadBe32(p + 4 * t);
    const uint32_t a0 = a, b0 = b, c0 = c, d0 = d, e0 = e, f0 = f, g0 = g,
                   h0 = h;
#define W(j) w[j]
    FERRY_SHA_8ROUNDS(0, W);
#undef W
#define W(j) w[8 + j]
    FERRY_SHA_8ROUNDS(8, W);
#undef W
    for (int i = 16; i < 64; i += 16) {
#define W(j) FERRY_SHA_SCHED(j)
      FERRY_SHA_8ROUNDS(i, W);
#undef W
#define W(j) FERRY_SHA_SCHED(8 + j)
      FERRY_SHA_8ROUNDS(i + 8, W);
#undef W
    }
    a += a0; b += b0; c += c0; d += d0; e += e0; f += f0; g += g0; h += h0;
  }
  state[0] = a; state[1] = b; state[2] = c; state[3] = d;
  state[4] = e; state[5] = f; state[6] = g; state[7] = h;
}

#undef ADD
#undef SET1
#undef ROR
#undef XOR3
#undef BSIG0
#undef BSIG1
#undef SSIG0
#undef SSIG1
#undef CH
#undef MAJ

// --- AVX2: 8 lanes ---------------------------------------------------------

#define ADD(x, y) _mm256_add_epi32(x, y)
#define SET1(k) _mm256_set1_epi32(static_cast<int>(k))
#define ROR(x, n) _mm256_or_si256(_mm256_srli_epi32(x, n), _mm256_slli_epi32(x, 32 - (n)))
#define XOR3(x, y, z) _mm256_xor_si256(_mm256_xor_si256(x, y), z)
#define BSIG0(x) XOR3(ROR(x, 2), ROR(x, 13), ROR(x, 22))
#define BSIG1(x) XOR3(ROR(x, 6), ROR(x, 11), ROR(x, 25))
#define SSIG0(x) XOR3(ROR(x, 7), ROR(x, 18), _mm256_srli_epi32(x, 3))
#define SSIG1(x) XOR3(ROR(x, 17), ROR(x, 19), _mm256_srli_epi32(x, 10))
#define CH(e, f, g) _mm256_xor_si256(_mm256_and_si256(_mm256_xor_si256(f, g), e), g)
#define MAJ(a, b, c) \
  _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(_mm256_or_si256(a, b), c))

__attribute__((target("avx2"))) void CompressAvx2(uint32_t* st,
                                                  const uint8_t* const* in,
                                                  size_t nblocks) {
  constexpr int N = 8;
  const uint8_t* p[N];
  for (int l = 0; l < N; ++l) p[l] = in[l];
  const __m256i bswap = _mm256_setr_epi8(
      3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,
      3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
  // (No lambdas here: they would not inherit the target attribute.)
#define LD(j) _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st + (j) * N))
  __m256i a = LD(0), b = LD(1), c = LD(2), d = LD(3), e = LD(4), f = LD(5),
          g = LD(6), h = LD(7);
#undef LD
  for (; nblocks > 0; --nblocks) {
    __m256i w[16];
    // Load and transpose: two 8x8 transposes (words 0..7 and 8..15).
    for (int half = 0; half < 2; ++half) {
      __m256i r[8];
      for (int l = 0; l < N; ++l) {
        r[l] = _mm256_shuffle_epi8(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[l] + 32 * half)),
            bswap);
      }
      __m256i t[8], u[8];
      for (int q = 0; q < 4; ++q) {
        t[2 * q] = _mm256_unpacklo_epi32(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm256_unpackhi_epi32(r[2 * q], r[2 * q + 1]);
      }
      // u[4g + k]: word k (and 4 + k) of rows 4g..4g+3.
      for (int grp = 0; grp < 2; ++grp) {
        __m256i* tt = t + 4 * grp;
        u[4 * grp + 0] = _mm256_unpacklo_epi64(tt[0], tt[2]);
        u[4 * grp + 1] = _mm256_unpackhi_epi64(tt[0], tt[2]);
        u[4 * grp + 2] = _mm256_unpacklo_epi64(tt[1], tt[3]);
        u[4 * grp + 3] = _mm256_unpackhi_epi64(tt[1], tt[3]);
      }
      for (int k = 0; k < 4; ++k) {
        w[8 * half + k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
        w[8 * half + 4 + k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
      }
    }
    for (int l = 0; l < N; ++l) p[l] += 64;
    const __m256i a0 = a, b0 = b, c0 = c, d0 = d, e0 = e, f0 = f, g0 = g,
                  h0 = h;
#define W(j) w[j]
    FERRY_SHA_8ROUNDS(0, W);
#undef W
#define W(j) w[8 + j]
    FERRY_SHA_8ROUNDS(8, W);
#undef W
    for (int i = 16; i < 64; i += 16) {
#define W(j) FERRY_SHA_SCHED(j)
      FERRY_SHA_8ROUNDS(i, W);
#undef W
#define W(j) FERRY_SHA_SCHED(8 + j)
      FERRY_SHA_8ROUNDS(i + 8, W);
#undef W
    }
    a = ADD(a, a0); b = ADD(b, b0); c = ADD(c, c0); d = ADD(d, d0);
    e = ADD(e, e0); f = ADD(f, f0); g = ADD(g, g0); h = ADD(h, h0);
  }
#define STV(j, v) _mm256_storeu_si256(reinterpret_cast<__m256i*>(st + (j) * N), v)
  STV(0, a); STV(1, b); STV(2, c); STV(3, d);
  STV(4, e); STV(5, f); STV(6, g); STV(7, h);
#undef STV
}

#undef ADD
#undef SET1
#undef ROR
#undef XOR3
#undef BSIG0
#undef BSIG1
#undef SSIG0
#undef SSIG1
#undef CH
#undef MAJ

// --- AVX-512: 16 lanes -----------------------------------------------------

// GCC 12 warns about _mm512_undefined_epi32() inside its own intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define ADD(x, y) _mm512_add_epi32(x, y)
#define SET1(k) _mm512_set1_epi32(static_cast<int>(k))
#define ROR(x, n) _mm512_ror_epi32(x, n)
#define XOR3(x, y, z) _mm512_ternarylogic_epi32(x, y, z, 0x96)
#define BSIG0(x) XOR3(ROR(x, 2), ROR(x, 13), ROR(x, 22))
#define BSIG1(x) XOR3(ROR(x, 6), ROR(x, 11), ROR(x, 25))
#define SSIG0(x) XOR3(ROR(x, 7), ROR(x, 18), _mm512_srli_epi32(x, 3))
#define SSIG1(x) XOR3(ROR(x, 17), ROR(x, 19), _mm512_srli_epi32(x, 10))
#define CH(e, f, g) _mm512_ternarylogic_epi32(e, f, g, 0xCA)
#define MAJ(a, b, c) _mm512_ternarylogic_epi32(a, b, c, 0xE8)

__attribute__((target("avx512f,avx512vl,avx512bw"))) void CompressAvx512(
    uint32_t* st, const uint8_t* const* in, size_t nblocks) {
  constexpr int N = 16;
  const uint8_t* p[N];
  for (int l = 0; l < N; ++l) p[l] = in[l];
  const __m512i bswap = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607,
                                          0x00010203);
#define LD(j) _mm512_loadu_si512(st + (j) * N)
  __m512i a = LD(0), b = LD(1), c = LD(2), d = LD(3), e = LD(4), f = LD(5),
          g = LD(6), h = LD(7);
#undef LD
  for (; nblocks > 0; --nblocks) {
    // Load 16 blocks (one per lane) and transpose the 16x16 word matrix.
    __m512i r[16], t[16], u[16], w[16];
    for (int l = 0; l < N; ++l) {
      r[l] = _mm512_shuffle_epi8(_mm512_loadu_si512(p[l]), bswap);
      p[l] += 64;
    }
    for (int q = 0; q < 8; ++q) {
      t[2 * q] = _mm512_unpacklo_epi32(r[2 * q], r[2 * q + 1]);
      t[2 * q + 1] = _mm512_unpackhi_epi32(r[2 * q], r[2 * q + 1]);
    }
    // u[4g + k]: in 128-bit chunk c, word 4c + k of rows 4g..4g+3.
    for (int grp = 0; grp < 4; ++grp) {
      __m512i* tt = t + 4 * grp;
      u[4 * grp + 0] = _mm512_unpacklo_epi64(tt[0], tt[2]);
      u[4 * grp + 1] = _mm512_unpackhi_epi64(tt[0], tt[2]);
      u[4 * grp + 2] = _mm512_unpacklo_epi64(tt[1], tt[3]);
      u[4 * grp + 3] = _mm512_unpackhi_epi64(tt[1], tt[3]);
    }
    // 4x4 transpose of 128-bit chunks across u[k], u[4+k], u[8+k], u[12+k].
    for (int k = 0; k < 4; ++k) {
      __m512i x0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44);
      __m512i x1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
      __m512i x2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44);
      __m512i x3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
      w[k] = _mm512_shuffle_i32x4(x0, x2, 0x88);
      w[4 + k] = _mm512_shuffle_i32x4(x0, x2, 0xDD);
      w[8 + k] = _mm512_shuffle_i32x4(x1, x3, 0x88);
      w[12 + k] = _mm512_shuffle_i32x4(x1, x3, 0xDD);
    }
    const __m512i a0 = a, b0 = b, c0 = c, d0 = d, e0 = e, f0 = f, g0 = g,
                  h0 = h;
#define W(j) w[j]
    FERRY_SHA_8ROUNDS(0, W);
#undef W
#define W(j) w[8 + j]
    FERRY_SHA_8ROUNDS(8, W);
#undef W
    for (int i = 16; i < 64; i += 16) {
#define W(j) FERRY_SHA_SCHED(j)
      FERRY_SHA_8ROUNDS(i, W);
#undef W
#define W(j) FERRY_SHA_SCHED(8 + j)
      FERRY_SHA_8ROUNDS(i + 8, W);
#undef W
    }
    a = ADD(a, a0); b = ADD(b, b0); c = ADD(c, c0); d = ADD(d, d0);
    e = ADD(e, e0); f = ADD(f, f0); g = ADD(g, g0); h = ADD(h, h0);
  }
#define STV(j, v) _mm512_storeu_si512(st + (j) * N, v)
  STV(0, a); STV(1, b); STV(2, c); STV(3, d);
  STV(4, e); STV(5, f); STV(6, g); STV(7, h);
#undef STV
}

#undef ADD
#undef SET1
#undef ROR
#undef XOR3
#undef BSIG0
#undef BSIG1
#undef SSIG0
#undef SSIG1
#undef CH
#undef MAJ
#pragma GCC diagnostic pop
#undef FERRY_SHA_ROUND
#undef FERRY_SHA_8ROUNDS
#undef FERRY_SHA_SCHED

// ---------------------------------------------------------------------------
// Scheduler.

// When no message is pending and at most this many lanes are busy, the
// scalar code finishes them. Measured (best of many runs, 2.5 GHz Xeon, no
// SHA-NI): OpenSSL ~400 MB/s, CompressScalar ~210 MB/s, one AVX-512 lane
// ~175 MB/s, one AVX2 lane ~150 MB/s; so only a lone busy lane is worth it.
constexpr int kAvx512ScalarFinish = 1;
constexpr int kAvx2ScalarFinish = 1;

// Batches this small go to OpenSSL in Sha256Many: two SIMD lanes are not
// faster than OpenSSL hashing the two messages one after the other.
constexpr size_t kMaxOpenSslBatch = 2;

using Kernel = void (*)(uint32_t* st, const uint8_t* const* ptrs,
                        size_t nblocks);

struct Lane {
  size_t msg = 0;            // index into msgs
  bool busy = false;
  const uint8_t* p = nullptr;  // next whole block of the message
  size_t full_left = 0;      // whole message blocks not yet hashed
  int tail_blocks = 0;       // 1 or 2
  int tail_left = 0;         // padded final blocks not yet hashed
  alignas(64) uint8_t tail[128];

  const uint8_t* Next() const {
    return full_left > 0 ? p : tail + 64 * (tail_blocks - tail_left);
  }
  size_t Contiguous() const {
    return full_left > 0 ? full_left : static_cast<size_t>(tail_left);
  }
  void Advance(size_t n) {
    if (full_left > 0) {
      full_left -= n;
      p += 64 * n;
    } else {
      tail_left -= static_cast<int>(n);
    }
  }
  void Start(size_t index, std::span<const uint8_t> m) {
    msg = index;
    busy = true;
    p = m.data();
    full_left = m.size() / 64;
    size_t rem = m.size() % 64;
    tail_blocks = rem < 56 ? 1 : 2;
    tail_left = tail_blocks;
    size_t tail_len = 64 * static_cast<size_t>(tail_blocks);
    std::memset(tail, 0, tail_len);
    if (rem > 0) std::memcpy(tail, m.data() + 64 * full_left, rem);
    tail[rem] = 0x80;
    uint64_t bits = static_cast<uint64_t>(m.size()) * 8;
    for (int i = 0; i < 8; ++i) {
      tail[tail_len - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
    }
  }
};

template <int N>
void RunLanes(Kernel kernel, int scalar_finish,
              std::span<const std::span<const uint8_t>> msgs,
              std::span<std::array<uint8_t, 32>> out) {
  const size_t n = msgs.size();
  // Longest first: lanes then run dry at about the same time.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
    return msgs[x].size() > msgs[y].size();
  });
  size_t next = 0;
  alignas(64) uint32_t st[8 * N];
  Lane lanes[N];
  auto start = [&](int l) {
    size_t idx = order[next++];
    lanes[l].Start(idx, msgs[idx]);
    for (int j = 0; j < 8; ++j) st[j * N + l] = kIv[j];
  };
  auto finish = [&](int l, const uint32_t h[8]) {
    for (int j = 0; j < 8; ++j) StoreBe32(out[lanes[l].msg].data() + 4 * j, h[j]);
    lanes[l].busy = false;
  };
  for (int l = 0; l < N && next < n; ++l) start(l);
  const uint8_t* ptrs[N];
  for (;;) {
    int busy = 0, first = -1;
    size_t nb = SIZE_MAX;
    for (int l = 0; l < N; ++l) {
      if (!lanes[l].busy) continue;
      ++busy;
      if (first < 0) first = l;
      nb = std::min(nb, lanes[l].Contiguous());
    }
    if (busy == 0) break;
    if (next == n && busy <= scalar_finish) {
      for (int l = 0; l < N; ++l) {
        Lane& ln = lanes[l];
        if (!ln.busy) continue;
        uint32_t h[8];
        for (int j = 0; j < 8; ++j) h[j] = st[j * N + l];
        CompressScalar(h, ln.p, ln.full_left);
        CompressScalar(h, ln.tail + 64 * (ln.tail_blocks - ln.tail_left),
                       static_cast<size_t>(ln.tail_left));
        finish(l, h);
      }
      break;
    }
    for (int l = 0; l < N; ++l) {
      ptrs[l] = lanes[l].busy ? lanes[l].Next() : lanes[first].Next();
    }
    kernel(st, ptrs, nb);
    for (int l = 0; l < N; ++l) {
      Lane& ln = lanes[l];
      if (!ln.busy) continue;
      ln.Advance(nb);
      if (ln.full_left == 0 && ln.tail_left == 0) {
        uint32_t h[8];
        for (int j = 0; j < 8; ++j) h[j] = st[j * N + l];
        finish(l, h);
        if (next < n) start(l);
      }
    }
  }
}

void Sha256OpenSsl(std::span<const std::span<const uint8_t>> msgs,
                   std::span<std::array<uint8_t, 32>> out) {
  for (size_t i = 0; i < msgs.size(); ++i) {
    unsigned int len = 0;
    // EVP_Digest only fails on allocation failure inside OpenSSL.
    if (EVP_Digest(msgs[i].data(), msgs[i].size(), out[i].data(), &len,
                   EVP_sha256(), nullptr) != 1) {
      throw std::bad_alloc();
    }
  }
}

// SHA-NI (CPUID leaf 7, EBX bit 29): OpenSSL then hashes one message at
// about 1.5 GB/s per core, faster than 8 or 16 SIMD lanes together
// (measured on a 2-core Xeon with SHA-NI and AVX2: OpenSSL 1540 MB/s for
// batches of 1 to 16 chunks of 64-256 KiB, AVX2 lanes 260 MB/s for one
// chunk and 1120 MB/s for 16).
bool HasShaNi() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ebx & (1u << 29)) != 0;
}

bool HasAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw");
}

internal::Sha256Impl DetectImpl() {
  __builtin_cpu_init();
  if (HasShaNi()) return internal::Sha256Impl::kScalar;  // OpenSSL
  if (HasAvx512()) return internal::Sha256Impl::kAvx512;
  if (__builtin_cpu_supports("avx2")) return internal::Sha256Impl::kAvx2;
  return internal::Sha256Impl::kScalar;
}

internal::Sha256Impl BestImpl() {
  static const internal::Sha256Impl impl = DetectImpl();
  return impl;
}

void CheckSizes(std::span<const std::span<const uint8_t>> msgs,
                std::span<std::array<uint8_t, 32>> out) {
  if (out.size() != msgs.size()) {
    throw std::invalid_argument("Sha256Many: out.size() != msgs.size()");
  }
}

}  // namespace

namespace internal {

const char* Sha256ImplName(Sha256Impl impl) {
  switch (impl) {
    case Sha256Impl::kAvx512: return "avx512";
    case Sha256Impl::kAvx2: return "avx2";
    case Sha256Impl::kScalar: break;
  }
  return "scalar";
}

bool Sha256ImplSupported(Sha256Impl impl) {
  switch (impl) {
    case Sha256Impl::kAvx512: return HasAvx512();
    case Sha256Impl::kAvx2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2");
    case Sha256Impl::kScalar: break;
  }
  return true;
}

void Sha256ManyWith(Sha256Impl impl,
                    std::span<const std::span<const uint8_t>> msgs,
                    std::span<std::array<uint8_t, 32>> out) {
  CheckSizes(msgs, out);
  if (!Sha256ImplSupported(impl)) {
    throw std::invalid_argument("Sha256ManyWith: implementation not supported");
  }
  switch (impl) {
    case Sha256Impl::kAvx512:
      RunLanes<16>(CompressAvx512, kAvx512ScalarFinish, msgs, out);
      return;
    case Sha256Impl::kAvx2:
      RunLanes<8>(CompressAvx2, kAvx2ScalarFinish, msgs, out);
      return;
    case Sha256Impl::kScalar: break;
  }
  Sha256OpenSsl(msgs, out);
}

}  // namespace internal

void Sha256Many(std::span<const std::span<const uint8_t>> msgs,
                std::span<std::array<uint8_t, 32>> out) {
  CheckSizes(msgs, out);
  internal::Sha256Impl impl = BestImpl();
  if (msgs.size() <= kMaxOpenSslBatch) impl = internal::Sha256Impl::kScalar;
  internal::Sha256ManyWith(impl, msgs, out);
}

const char* Sha256ManyImplementation() {
  return internal::Sha256ImplName(BestImpl());
}

size_t Sha256ManyLanes() {
  switch (BestImpl()) {
    case internal::Sha256Impl::kAvx512: return 16;
    case internal::Sha256Impl::kAvx2: return 8;
    case internal::Sha256Impl::kScalar: break;
  }
  return 1;
}

}  // namespace ferry::chunkstore
