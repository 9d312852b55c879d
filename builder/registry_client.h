// A client of the OCI distribution API (v2) over libcurl, for pulling an
// image's manifests and blobs: `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`.
//
// Authentication as registries do it: a request answered 401 with a
// `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge is
// retried with a token from the realm (asked with the credentials, if any),
// one with a `Basic` challenge with the credentials. Credentials come from
// `--creds USER:PASSWORD` or `~/.docker/config.json` (auths.<host>.auth).
// HTTPS always, except for loopback hosts and `insecure`. Redirects (blob
// storage) are followed; credentials are not sent to another host.
// Bodies are bounded: a manifest past its limit, a blob past its
// descriptor's size is an error, never memory or disk without bound.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "chunkstore/status.h"

namespace ferry::builder {

struct RegistryRef {
  std::string host;        // "127.0.0.1:5000", "registry-1.docker.io"
  std::string repository;  // "library/debian"
  std::string reference;   // a tag, or "sha256:<hex>"
};
// Parses what follows "docker://": [HOST[:PORT]/]REPO[:TAG][@DIGEST]
// (Docker Hub and "library/" when there is no host, "latest" when no tag).
Result<RegistryRef> ParseRegistryRef(const std::string& text);

struct RegistryOptions {
  std::string creds;      // "USER:PASSWORD"; empty: ~/.docker/config.json, else anonymous
  bool insecure = false;  // plain HTTP (loopback hosts always may)
  long connect_timeout_s = 30;
  long stall_timeout_s = 60;  // a transfer that moves nothing for this long fails
};

class RegistryClient {
 public:
  RegistryClient(RegistryRef ref, RegistryOptions options);
  ~RegistryClient();
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  const RegistryRef& ref() const { return ref_; }

  struct Manifest {
    std::string body;
    std::string media_type;  // the Content-Type, or the body's mediaType
    std::string digest;      // the Docker-Content-Digest header, if sent
  };
  // GET /v2/REPO/manifests/REFERENCE (a tag or a digest), at most
  // `max_bytes`, with the Accept header of every manifest and index type.
  Result<Manifest> GetManifest(const std::string& reference, uint64_t max_bytes);
  // GET /v2/REPO/blobs/DIGEST into memory (at most `max_bytes`).
  Result<std::string> GetBlob(const std::string& digest, uint64_t max_bytes);
  // GET /v2/REPO/blobs/DIGEST into the file `path`, failing past `size`
  // bytes. The caller verifies the digest.
  Status GetBlobToFile(const std::string& digest, uint64_t size, const std::string& path);

 private:
  struct Response;
  Result<Response> Get(const std::string& url, const std::string& accept, uint64_t max_bytes, int fd);
  Status Authenticate(const std::string& challenge);
  // URL, redirects, protocols, timeouts and the body sink of one transfer
  // (a CURL* and a Sink*; kept out of this header).
  void SetTransferOptions(void* curl, const std::string& url, void* sink) const;

  RegistryRef ref_;
  RegistryOptions options_;
  std::string scheme_;
  std::string basic_;          // "user:password" or empty
  std::string authorization_;  // the header to send, once known
};

}  // namespace ferry::builder
