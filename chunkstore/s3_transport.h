// S3Transport: HTTP(S) requests to one S3 bucket through libcurl, signed
// with AWS SigV4 by libcurl, with connection reuse, deadlines and retries.
//
// Connections: finished easy handles go back to a pool and keep their open
// connections, so a request usually reuses one; all handles share a DNS and
// TLS session cache. Deadlines: a request, its retries included, ends by
// S3Config::timeout_s (kDeadlineExceeded after that); each connection
// attempt by connect_timeout_s. Retries: 500, 502, 503 (SlowDown), 504,
// 408, 429, a 400 RequestTimeout and network errors are tried again, up to
// S3Config::attempts tries in all, after a random sleep in [0, min(5 s,
// 100 ms * 2^n)] ("full jitter"); other answers are final at once. These
// are the only retries of an s3:// store's requests (retry_policy.h): the
// stores and readers above do not repeat a transient error. The deadline
// and the pauses are kept on the transport's clock (curl's own timeouts
// are real time). Thread-safe; one instance serves every thread of a store.
#pragma once

#include <curl/curl.h>

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "chunkstore/clock.h"
#include "chunkstore/retry_policy.h"
#include "chunkstore/s3_config.h"

namespace ferry::chunkstore {

// Sets up libcurl's process-wide state (and OpenSSL's under it), once. The
// first S3Transport does it if nobody has; a daemon calls it at start-up,
// while it has one thread, so that its first mount does not pay for it
// (~13 ms here).
void InitHttpClient();

class S3Transport {
 public:
  // The bytes of a request body: `size` bytes at `offset` of `data`, or of
  // the file `fd` (read with pread, so a retry can send them again). Both
  // must stay valid until the request returns.
  struct Body {
    const uint8_t* data = nullptr;
    int fd = -1;
    uint64_t offset = 0;
    uint64_t size = 0;
  };

  struct Request {
    std::string method;        // GET, HEAD, PUT, POST, DELETE
    std::string object;        // S3 object name; empty for the bucket
    std::string query;         // already in SigV4 canonical form (sorted, encoded)
    std::string range;         // a Range header value, or empty
    std::string content_type;  // for PUT and POST
    const Body* body = nullptr;
    // Where a 2xx body goes: `into` (it must fit: more bytes is an error),
    // else `into_vector`, else Response::body (at most 32 MiB).
    std::span<uint8_t> into;
    std::vector<uint8_t>* into_vector = nullptr;
    // CompleteMultipartUpload may fail with 200 and an <Error> body.
    bool error_may_be_200 = false;
  };

  struct Response {
    long status = 0;
    std::string body;  // error bodies are cut at 64 KiB
    std::string etag;
    std::string content_range;
    int64_t content_length = -1;  // from the header; -1 if absent
    uint64_t received = 0;        // bytes that went to `into`/`into_vector`
    int attempts = 0;
    std::string error_code;  // <Code> and <Message> of an S3 error body
    std::string error_message;
  };

  // `clock` (null: DefaultClock()) must outlive the transport.
  explicit S3Transport(S3Config config, Clock* clock = nullptr);
  ~S3Transport();
  S3Transport(const S3Transport&) = delete;
  S3Transport& operator=(const S3Transport&) = delete;

  const S3Config& config() const { return config_; }
  // The retries of Perform: S3Config::attempts, 100 ms doubling to 5 s,
  // within S3Config::timeout_s.
  const RetryPolicy& retry_policy() const { return retry_; }

  // Runs `req`, retrying as described above. Returns the final answer
  // whatever its HTTP status (callers decide what a 404 means); an error
  // when no final answer came: kUnavailable once retries are used up,
  // kDeadlineExceeded when the deadline passed, kCorruption when the server
  // sent more than `into` holds, kIoError when the body could not be read,
  // kFailedPrecondition for TLS verification failures. Error messages name
  // the method, bucket and object, the attempts made and the last HTTP
  // status or curl error.
  Result<Response> Perform(const Request& req);

  // The Status for a final non-2xx answer: 404 kNotFound (NoSuchBucket is
  // kFailedPrecondition), 403 and 3xx kFailedPrecondition, other 4xx
  // kInvalidArgument, 5xx kUnavailable.
  Status HttpError(const Request& req, const Response& resp) const;

  // "GET s3://bucket/object", for messages.
  std::string Describe(const Request& req) const;

 private:
  std::string UrlFor(const Request& req) const;
  CURL* Acquire();
  void Release(CURL* handle);
  curl_slist* Prepare(CURL* h, const Request& req, const std::string& url,
                      const std::string& payload_sha256, double seconds_left, void* attempt) const;

  const S3Config config_;
  const RetryPolicy retry_;
  Clock* const clock_;
  CURLSH* share_ = nullptr;
  // One lock per kind of shared data (DNS, TLS sessions), for libcurl.
  std::mutex share_mu_[CURL_LOCK_DATA_LAST];
  std::mutex pool_mu_;  // guards idle_
  std::vector<CURL*> idle_;
};

}  // namespace ferry::chunkstore
