// OCI registries for tests: Debian's docker-registry (distribution 2.8) on
// loopback, and tests/oci/registry_front.py in front of one (bearer-token
// authentication, or a registry that cuts manifests short). Both stop with
// the object. Failures throw std::runtime_error.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace ferry::testing {

// A free TCP port on loopback (bound and released).
int FreePort();

class LocalRegistry {
 public:
  // Storage and its request log (`log()`) in `dir`.
  explicit LocalRegistry(const std::string& dir);
  ~LocalRegistry();
  LocalRegistry(const LocalRegistry&) = delete;
  LocalRegistry& operator=(const LocalRegistry&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& log() const { return log_; }
  // skopeo copy oci:LAYOUT_REF docker://HOST/REPO_TAG (--all: every
  // manifest of an index).
  void Push(const std::string& layout_ref, const std::string& repo_tag, bool all = false) const;
  // Where the registry keeps the blob `digest` ("sha256:<hex>").
  std::string BlobData(const std::string& digest) const;
  // GETs of blobs the registry answered so far, and of blobs of `repo`.
  size_t BlobGets(const std::string& repo = "") const;

 private:
  std::string dir_, log_;
  int port_ = 0;
  pid_t pid_ = -1;
};

class RegistryFront {
 public:
  RegistryFront(const std::string& dir, int upstream_port, const std::vector<std::string>& flags);
  ~RegistryFront();
  RegistryFront(const RegistryFront&) = delete;
  RegistryFront& operator=(const RegistryFront&) = delete;
  const std::string& port() const { return port_; }

 private:
  pid_t pid_ = -1;
  std::string port_;
};

}  // namespace ferry::testing
