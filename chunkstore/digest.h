// Digest: the SHA-256 address of a chunk, pack or image.
//
// Addresses are SHA-256 (OpenSSL) of the uncompressed bytes, so a tenant
// cannot forge a chunk that another tenant's image refers to. Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ferry {

struct Digest {
  static constexpr size_t kSize = 32;
  std::array<uint8_t, kSize> bytes{};

  // Lower-case hex, 64 characters.
  std::string Hex() const;
  // First 12 hex characters, for logs and tables.
  std::string Short() const { return Hex().substr(0, 12); }
  // Parses exactly 64 hex characters; nullopt otherwise.
  static std::optional<Digest> FromHex(std::string_view hex);

  friend bool operator==(const Digest&, const Digest&) = default;
  friend auto operator<=>(const Digest&, const Digest&) = default;
};

// SHA-256 of `data`.
Digest Sha256(std::span<const uint8_t> data);
inline Digest Sha256(std::string_view s) {
  return Sha256(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

// Incremental SHA-256 for objects written piece by piece. Not thread-safe.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(std::span<const uint8_t> data);
  Digest Finish();

 private:
  void* ctx_;  // EVP_MD_CTX*
};

struct DigestHash {
  size_t operator()(const Digest& d) const {
    size_t h;
    std::memcpy(&h, d.bytes.data(), sizeof(h));  // already uniformly random
    return h;
  }
};

}  // namespace ferry
