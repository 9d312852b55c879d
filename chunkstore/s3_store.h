// S3Store: an ObjectStore in an S3 bucket (AWS S3 or any S3-compatible
// service), selected by "s3://BUCKET[/PREFIX][?options]" (s3_config.h has
// the options, the environment variables and the credentials it reads).
//
// Store key KEY is S3 object PREFIX/KEY. Operations map to S3 calls:
//   Put, PutFile  one PutObject below the multipart threshold (64 MiB);
//                 above it CreateMultipartUpload, UploadPart (16 MiB parts,
//                 more when an object would need over 10,000), then
//                 CompleteMultipartUpload; AbortMultipartUpload on failure.
//                 Either way the object appears whole or not at all. Every
//                 body is sent with its SHA-256 (x-amz-content-sha256), so
//                 the service rejects a body damaged on the way.
//   PutFile       streams from the file and removes it after success, as
//                 the file store does (a failed upload leaves it).
//   Get           GetObject; GetRange a ranged GetObject that must answer
//                 206 with exactly the bytes asked for; a range past the
//                 end (416, or a short answer) is kCorruption.
//   Size          HeadObject.
//   List          ListObjectsV2, page by page (continuation tokens), sorted.
//   Delete        DeleteObject; a missing object is OK.
// Errors: kNotFound for a missing object, kFailedPrecondition for refused
// credentials (403) or a missing bucket, kInvalidArgument for other 4xx,
// kUnavailable when retries are used up, kDeadlineExceeded past the
// deadline; messages name the bucket and the object (s3_transport.h).
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "chunkstore/object_store.h"
#include "chunkstore/s3_config.h"

namespace ferry::chunkstore {

class S3Transport;

class S3Store final : public ObjectStore {
 public:
  // Opens without contacting the service: errors show on the first call.
  static Result<std::unique_ptr<S3Store>> Open(S3Config config);
  // ParseS3Url(url, ProcessEnv()), then Open.
  static Result<std::unique_ptr<S3Store>> OpenUrl(const std::string& url);
  ~S3Store() override;

  // The canonical URL (S3Config::CanonicalUrl): no credentials.
  std::string Url() const override;
  Status Put(const std::string& key, std::span<const uint8_t> data) override;
  Status PutFile(const std::string& key, const std::string& path) override;
  Result<std::shared_ptr<const Blob>> Get(const std::string& key) override;
  Status GetRange(const std::string& key, uint64_t offset, std::span<uint8_t> out) override;
  Result<uint64_t> Size(const std::string& key) override;
  Result<std::vector<std::string>> List(const std::string& prefix) override;
  Status Delete(const std::string& key) override;

  // For tests, to exercise multipart uploads with small objects: objects
  // of at least `threshold` bytes go up in parts of `part_size` bytes (AWS
  // refuses parts under 5 MiB but the last). Call before any upload.
  void SetMultipartForTesting(uint64_t threshold, uint64_t part_size);

 private:
  explicit S3Store(S3Config config);
  Status Upload(const std::string& key, int fd, const uint8_t* data, uint64_t size);
  Status PutSingle(const std::string& object, int fd, const uint8_t* data, uint64_t size);
  Status PutMultipart(const std::string& object, int fd, const uint8_t* data, uint64_t size);

  const S3Config config_;
  std::unique_ptr<S3Transport> http_;
  uint64_t multipart_threshold_ = 64ull << 20;
  uint64_t part_size_ = 16ull << 20;
};

}  // namespace ferry::chunkstore
