#include "chunkstore/s3_transport.h"

#include <tinyxml2.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

#include "chunkstore/digest.h"

namespace ferry::chunkstore {
namespace {

constexpr size_t kMaxXmlBody = 32u << 20;   // listings and upload results
constexpr size_t kMaxErrorBody = 64u << 10;  // what we keep of an error page
constexpr size_t kMaxReserve = 256u << 20;   // a Content-Length we trust for reserve()
constexpr size_t kMaxIdleHandles = 64;
constexpr std::chrono::milliseconds kBackoffBase{100};
constexpr std::chrono::seconds kBackoffCap{5};

// The state of one try of one request, shared with libcurl's callbacks.
struct AttemptState {
  const S3Transport::Request* req = nullptr;
  CURL* handle = nullptr;
  S3Transport::Response resp;
  uint64_t read_pos = 0;  // next byte of the body to send
  int read_errno = 0;
  bool overflow = false;   // more bytes than `into` holds
  bool too_large = false;  // more than kMaxXmlBody, or out of memory
  char error_buf[CURL_ERROR_SIZE] = {0};
};

size_t OnHeader(char* p, size_t size, size_t n, void* user) {
  auto* a = static_cast<AttemptState*>(user);
  std::string line(p, size * n);
  if (line.rfind("HTTP/", 0) == 0) {  // a new status line (after 100 Continue)
    a->resp.etag.clear();
    a->resp.content_range.clear();
    a->resp.content_length = -1;
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  std::string name = line.substr(0, colon);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  size_t b = line.find_first_not_of(" \t", colon + 1);
  size_t e = line.find_last_not_of(" \t\r\n");
  std::string value = b == std::string::npos || e < b ? "" : line.substr(b, e - b + 1);
  if (name == "etag") {
    a->resp.etag = value;
  } else if (name == "content-range") {
    a->resp.content_range = value;
  } else if (name == "content-length") {
    char* end = nullptr;
    long long v = std::strtoll(value.c_str(), &end, 10);
    a->resp.content_length = end != value.c_str() && *end == '\0' && v >= 0 ? v : -1;
  }
  return size * n;
}

size_t OnWrite(char* p, size_t size, size_t n, void* user) {
  auto* a = static_cast<AttemptState*>(user);
  size_t len = size * n;
  long code = 0;
  curl_easy_getinfo(a->handle, CURLINFO_RESPONSE_CODE, &code);
  bool success = code >= 200 && code < 300;
  const auto& req = *a->req;
  try {
    if (success && req.into.data() != nullptr) {
      if (a->resp.received + len > req.into.size()) {
        a->overflow = true;
        return 0;  // aborts the transfer
      }
      std::memcpy(req.into.data() + a->resp.received, p, len);
    } else if (success && req.into_vector != nullptr) {
      if (a->resp.received == 0 && a->resp.content_length > 0) {
        req.into_vector->reserve(std::min<uint64_t>(a->resp.content_length, kMaxReserve));
      }
      req.into_vector->insert(req.into_vector->end(), p, p + len);
    } else {
      size_t cap = success ? kMaxXmlBody : kMaxErrorBody;
      if (a->resp.body.size() + len > cap) {
        if (success) {
          a->too_large = true;
          return 0;
        }
        len = cap - a->resp.body.size();  // keep the start of an error page
        a->resp.body.append(p, len);
        return size * n;
      }
      a->resp.body.append(p, len);
      return len;
    }
  } catch (const std::bad_alloc&) {
    a->too_large = true;
    return 0;
  }
  a->resp.received += len;
  return len;
}

size_t OnRead(char* buf, size_t size, size_t n, void* user) {
  auto* a = static_cast<AttemptState*>(user);
  const S3Transport::Body& body = *a->req->body;
  size_t want = static_cast<size_t>(std::min<uint64_t>(size * n, body.size - a->read_pos));
  if (want == 0) return 0;
  if (body.data != nullptr) {
    std::memcpy(buf, body.data + body.offset + a->read_pos, want);
  } else {
    ssize_t got;
    do {
      got = pread(body.fd, buf, want, static_cast<off_t>(body.offset + a->read_pos));
    } while (got < 0 && errno == EINTR);
    if (got <= 0) {
      a->read_errno = got < 0 ? errno : EIO;  // 0: the file shrank under us
      return CURL_READFUNC_ABORT;
    }
    want = static_cast<size_t>(got);
  }
  a->read_pos += want;
  return want;
}

// libcurl rewinds the body when it must send it again on a new connection.
int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* a = static_cast<AttemptState*>(user);
  if (origin != SEEK_SET || offset < 0 || static_cast<uint64_t>(offset) > a->req->body->size) {
    return CURL_SEEKFUNC_CANTSEEK;
  }
  a->read_pos = static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

Result<std::string> BodySha256(const S3Transport::Body* body) {
  if (body == nullptr) return Sha256(std::string_view()).Hex();
  if (body->data != nullptr) return Sha256({body->data + body->offset, body->size}).Hex();
  Sha256Stream sha;
  std::vector<uint8_t> buf(std::min<uint64_t>(body->size, 1u << 20));
  for (uint64_t done = 0; done < body->size;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), body->size - done));
    ssize_t got = pread(body->fd, buf.data(), want, static_cast<off_t>(body->offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoError("read upload body");
    if (got == 0) return ErrnoError("read upload body (file shrank)", EIO);
    sha.Update({buf.data(), static_cast<size_t>(got)});
    done += static_cast<uint64_t>(got);
  }
  return sha.Finish().Hex();
}

void ParseErrorBody(S3Transport::Response* resp) {
  tinyxml2::XMLDocument doc;
  if (resp->body.empty() || doc.Parse(resp->body.data(), resp->body.size()) != tinyxml2::XML_SUCCESS) return;
  const tinyxml2::XMLElement* root = doc.RootElement();
  if (root == nullptr || std::strcmp(root->Name(), "Error") != 0) return;
  auto text = [&](const char* name) {
    const tinyxml2::XMLElement* e = root->FirstChildElement(name);
    return std::string(e != nullptr && e->GetText() != nullptr ? e->GetText() : "");
  };
  resp->error_code = text("Code");
  resp->error_message = text("Message");
  if (resp->error_code.empty()) resp->error_code = "Error";
}

bool RetryableStatus(const S3Transport::Response& r) {
  switch (r.status) {
    case 408: case 429: case 500: case 502: case 503: case 504: return true;
    case 400: return r.error_code == "RequestTimeout";
    case 200:
      return r.error_code == "InternalError" || r.error_code == "SlowDown" ||
             r.error_code == "ServiceUnavailable";
    default: return false;
  }
}

bool RetryableCurl(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR: case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
      return true;
    default:
      return false;
  }
}

}  // namespace

void InitHttpClient() {
  static std::once_flag global_init;
  std::call_once(global_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

namespace {

RetryPolicy S3RetryPolicy(const S3Config& config) {
  RetryPolicy p;
  p.max_attempts = config.attempts;
  p.backoff = kBackoffBase;
  p.max_backoff = kBackoffCap;
  p.deadline = std::chrono::microseconds(static_cast<int64_t>(config.timeout_s * 1e6));
  return p;
}

}  // namespace

S3Transport::S3Transport(S3Config config, Clock* clock)
    : config_(std::move(config)),
      retry_(S3RetryPolicy(config_)),
      clock_(clock != nullptr ? clock : DefaultClock()) {
  InitHttpClient();
  share_ = curl_share_init();
  auto lock = [](CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<S3Transport*>(user)->share_mu_[data].lock();
  };
  auto unlock = [](CURL*, curl_lock_data data, void* user) {
    static_cast<S3Transport*>(user)->share_mu_[data].unlock();
  };
  curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, static_cast<curl_lock_function>(lock));
  curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, static_cast<curl_unlock_function>(unlock));
  curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

S3Transport::~S3Transport() {
  for (CURL* h : idle_) curl_easy_cleanup(h);
  curl_share_cleanup(share_);
}

CURL* S3Transport::Acquire() {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!idle_.empty()) {
      CURL* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void S3Transport::Release(CURL* handle) {
  std::lock_guard<std::mutex> lock(pool_mu_);
  if (idle_.size() < kMaxIdleHandles) {
    idle_.push_back(handle);
  } else {
    curl_easy_cleanup(handle);
  }
}

std::string S3Transport::UrlFor(const Request& req) const {
  std::string object = UriEncode(req.object, true);
  std::string url;
  if (config_.path_style) {
    url = config_.endpoint + "/" + config_.bucket + (object.empty() ? "" : "/" + object);
  } else {
    size_t host = config_.endpoint.find("://") + 3;
    url = config_.endpoint.substr(0, host) + config_.bucket + "." + config_.endpoint.substr(host) +
          "/" + object;
  }
  return req.query.empty() ? url : url + "?" + req.query;
}

std::string S3Transport::Describe(const Request& req) const {
  return req.method + " s3://" + config_.bucket + "/" + req.object;
}

// Sets `h` up for one try of `req`; the returned headers live until the
// transfer ends.
curl_slist* S3Transport::Prepare(CURL* h, const Request& req, const std::string& url,
                                 const std::string& payload_sha256, double seconds_left,
                                 void* attempt) const {
  auto* a = static_cast<AttemptState*>(attempt);
  const std::string scope = "aws:amz:" + config_.region + ":s3";  // libcurl copies it
  curl_easy_reset(h);  // keeps the handle's open connections
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, ("x-amz-content-sha256: " + payload_sha256).c_str());
  if (!config_.credentials.session_token.empty()) {
    headers = curl_slist_append(headers, ("x-amz-security-token: " + config_.credentials.session_token).c_str());
  }
  if (!req.range.empty()) headers = curl_slist_append(headers, ("Range: " + req.range).c_str());
  if (!req.content_type.empty()) {
    headers = curl_slist_append(headers, ("Content-Type: " + req.content_type).c_str());
  }
  curl_easy_setopt(h, CURLOPT_SHARE, share_);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);  // the path is signed as sent
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_USERAGENT, "ferry/0.1");
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, a->error_buf);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  if (!config_.credentials.access_key_id.empty()) {
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, scope.c_str());
    curl_easy_setopt(h, CURLOPT_USERNAME, config_.credentials.access_key_id.c_str());
    curl_easy_setopt(h, CURLOPT_PASSWORD, config_.credentials.secret_access_key.c_str());
  }
  if (!config_.ca_bundle.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, config_.ca_bundle.c_str());
  long left_ms = std::max(1L, static_cast<long>(seconds_left * 1000));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, left_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   std::min(left_ms, std::max(1L, static_cast<long>(config_.connect_timeout_s * 1000))));
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnWrite);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
  curl_off_t body_size = req.body ? static_cast<curl_off_t>(req.body->size) : 0;
  if (req.body != nullptr) {
    curl_easy_setopt(h, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(h, CURLOPT_READDATA, a);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, OnSeek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, a);
  }
  if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (req.method == "PUT") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, body_size);
  } else if (req.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, body_size);
    if (req.body == nullptr) curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
  } else if (req.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  return headers;
}

Result<S3Transport::Response> S3Transport::Perform(const Request& req) {
  auto sha = BodySha256(req.body);
  if (!sha.ok()) return sha.status().Annotate(Describe(req));
  const std::string url = UrlFor(req);
  const auto start = clock_->Now();
  const auto deadline = start + retry_.deadline;
  auto deadline_error = [&](int attempts, const std::string& last) {
    char limit[32];
    std::snprintf(limit, sizeof(limit), "%g s", config_.timeout_s);
    return Status(StatusCode::kDeadlineExceeded,
                  Describe(req) + ": deadline of " + limit + " passed after " +
                      std::to_string(attempts) + " attempt(s); last: " + last);
  };
  std::string last = "none";
  for (int attempt = 1;; ++attempt) {
    double left = std::chrono::duration<double>(deadline - clock_->Now()).count();
    if (left <= 0) return deadline_error(attempt - 1, last);
    if (req.into_vector != nullptr) req.into_vector->clear();  // a retry starts over
    AttemptState a;
    a.req = &req;
    a.handle = Acquire();
    if (a.handle == nullptr) return InternalError("curl_easy_init failed");
    CURL* h = a.handle;
    curl_slist* headers = Prepare(h, req, url, *sha, left, &a);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    Release(h);

    if (rc == CURLE_OK) {
      a.resp.status = status;
      a.resp.attempts = attempt;
      if (status < 200 || status >= 300 || req.error_may_be_200) ParseErrorBody(&a.resp);
      if (!RetryableStatus(a.resp)) return std::move(a.resp);
      last = "HTTP " + std::to_string(status) + " " + a.resp.error_code +
             (a.resp.error_message.empty() ? "" : ": " + a.resp.error_message);
    } else {
      std::string what = Describe(req) + " (attempt " + std::to_string(attempt) + ")";
      if (a.overflow) return CorruptionError(what + ": the server sent more bytes than asked for");
      if (a.too_large) return CorruptionError(what + ": the answer is too large");
      if (a.read_errno != 0) return ErrnoError(what + ": read the request body", a.read_errno);
      last = std::string("curl error ") + std::to_string(rc) + " (" + curl_easy_strerror(rc) + ")" +
             (a.error_buf[0] != '\0' ? ": " + std::string(a.error_buf) : "");
      if (rc == CURLE_OPERATION_TIMEDOUT && clock_->Now() >= deadline) return deadline_error(attempt, last);
      if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE) {
        return FailedPreconditionError(what + ": " + last + " (check AWS_CA_BUNDLE)");
      }
      if (!RetryableCurl(rc)) return UnavailableError(what + ": " + last);
    }
    if (attempt >= retry_.max_attempts) {
      return UnavailableError(Describe(req) + ": gave up after " + std::to_string(attempt) +
                              " attempt(s); last: " + last);
    }
    // Full jitter: a random sleep in [0, min(cap, base * 2^(attempt-1))]
    // (RetryPolicy::Pause), cut short by the deadline.
    thread_local std::mt19937_64 rng(std::random_device{}());
    auto pause = retry_.Pause(attempt, rng);
    auto remaining = std::chrono::duration_cast<std::chrono::microseconds>(deadline - clock_->Now());
    clock_->SleepFor(std::max(std::chrono::microseconds(0), std::min(pause, remaining)));
  }
}

Status S3Transport::HttpError(const Request& req, const Response& resp) const {
  std::string what = Describe(req) + ": HTTP " + std::to_string(resp.status) +
                     (resp.error_code.empty() ? "" : " " + resp.error_code) +
                     (resp.error_message.empty() ? "" : ": " + resp.error_message);
  if (resp.attempts > 1) what += " (after " + std::to_string(resp.attempts) + " attempts)";
  if (resp.status == 404) {
    if (resp.error_code == "NoSuchBucket") return FailedPreconditionError(what + " (no such bucket)");
    return NotFoundError(what);
  }
  if (resp.status == 403) {
    return FailedPreconditionError(what + " (check the credentials: AWS_ACCESS_KEY_ID and "
                                          "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; and the region)");
  }
  if (resp.status >= 300 && resp.status < 400) {
    return FailedPreconditionError(what + " (wrong endpoint or region?)");
  }
  if (resp.status >= 400 && resp.status < 500) return InvalidArgumentError(what);
  if (resp.error_code == "NotImplemented") return FailedPreconditionError(what);
  return UnavailableError(what);
}

}  // namespace ferry::chunkstore
