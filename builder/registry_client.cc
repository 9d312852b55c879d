#include "builder/registry_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

namespace ferry::builder {

namespace {

using json = nlohmann::json;

constexpr const char* kDockerHub = "registry-1.docker.io";
constexpr const char* kManifestAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";
constexpr uint64_t kMaxTokenBytes = 1 << 20;

void CurlInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// A loopback address (127.0.0.0/8, ::1) written as one, or "localhost";
// a name that merely starts with "127." is not.
bool IsLoopbackHost(const std::string& host_port) {
  std::string host = host_port;
  if (!host.empty() && host[0] == '[') {
    host = host.substr(1, host.find(']') == std::string::npos ? std::string::npos : host.find(']') - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost") return true;
  unsigned char addr[16];
  if (inet_pton(AF_INET, host.c_str(), addr) == 1) return addr[0] == 127;
  if (inet_pton(AF_INET6, host.c_str(), addr) == 1) {
    static const unsigned char kLoop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::memcmp(addr, kLoop6, 16) == 0;
  }
  return false;
}

std::string Base64Decode(const std::string& in) {
  std::string out((in.size() / 4 + 1) * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return "";
  out.resize(static_cast<size_t>(n));
  size_t pad = 0;
  for (auto it = in.rbegin(); it != in.rend() && *it == '='; ++it) ++pad;
  out.resize(out.size() >= pad ? out.size() - pad : 0);
  return out;
}

// USER:PASSWORD for `host` from ~/.docker/config.json, if any.
std::string DockerConfigCreds(const std::string& host) {
  const char* home = std::getenv("HOME");
  const char* dir = std::getenv("DOCKER_CONFIG");
  std::string path = dir && *dir ? std::string(dir) + "/config.json"
                                 : std::string(home ? home : "") + "/.docker/config.json";
  std::ifstream in(path);
  if (!in) return "";
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return "";
  auto auths = j.find("auths");
  if (auths == j.end() || !auths->is_object()) return "";
  for (const std::string& key : {host, "https://" + host, "http://" + host,
                                 host == kDockerHub ? std::string("https://index.docker.io/v1/") : host}) {
    auto a = auths->find(key);
    if (a == auths->end() || !a->is_object()) continue;
    auto auth = a->find("auth");
    if (auth != a->end() && auth->is_string()) return Base64Decode(auth->get<std::string>());
  }
  return "";
}

// The parameters of a WWW-Authenticate challenge: scheme, and key="value".
struct Challenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};

Challenge ParseChallenge(const std::string& header) {
  Challenge c;
  size_t i = 0;
  while (i < header.size() && header[i] != ' ') {
    c.scheme += static_cast<char>(std::tolower(static_cast<unsigned char>(header[i++])));
  }
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
    size_t eq = header.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = header.substr(i, eq - i);
    i = eq + 1;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      ++i;
      while (i < header.size() && header[i] != '"') {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value += header[i++];
      }
      ++i;
    } else {
      while (i < header.size() && header[i] != ',') value += header[i++];
    }
    c.params[key] = value;
  }
  return c;
}

std::string UrlEscape(CURL* c, const std::string& s) {
  char* e = curl_easy_escape(c, s.data(), static_cast<int>(s.size()));
  std::string out = e ? e : "";
  curl_free(e);
  return out;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

Result<RegistryRef> ParseRegistryRef(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("docker://" + text + ": " + why +
                                " (want docker://[HOST[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST])");
  };
  if (text.empty()) return bad("nothing after docker://");
  RegistryRef r;
  std::string rest = text;
  size_t slash = rest.find('/');
  std::string first = slash == std::string::npos ? "" : rest.substr(0, slash);
  if (!first.empty() && (first.find('.') != std::string::npos || first.find(':') != std::string::npos ||
                         first == "localhost" || first[0] == '[')) {
    r.host = first;
    rest = rest.substr(slash + 1);
  } else {
    r.host = kDockerHub;
  }
  if (auto at = rest.find('@'); at != std::string::npos) {
    r.reference = rest.substr(at + 1);
    rest = rest.substr(0, at);
    if (r.reference.rfind("sha256:", 0) != 0 || r.reference.size() != 71) return bad("a digest must be sha256:<64 hex>");
  }
  if (auto colon = rest.rfind(':'); colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    if (r.reference.empty()) r.reference = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  if (r.reference.empty()) r.reference = "latest";
  if (rest.empty()) return bad("no repository");
  for (char ch : rest) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' || ch == '/';
    if (!ok) return bad("a repository name is lower-case letters, digits and . _ - /");
  }
  for (char ch : r.reference) {
    bool ok = std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-' || ch == ':';
    if (!ok) return bad("a tag is letters, digits and . _ -");
  }
  if (r.host == kDockerHub && rest.find('/') == std::string::npos) rest = "library/" + rest;
  r.repository = rest;
  return r;
}

struct RegistryClient::Response {
  long status = 0;
  std::string body;
  std::string content_type, www_authenticate, docker_digest;
};

RegistryClient::RegistryClient(RegistryRef ref, RegistryOptions options)
    : ref_(std::move(ref)), options_(std::move(options)) {
  CurlInitOnce();
  scheme_ = options_.insecure || IsLoopbackHost(ref_.host) ? "http" : "https";
  basic_ = options_.creds.empty() ? DockerConfigCreds(ref_.host) : options_.creds;
}

RegistryClient::~RegistryClient() = default;

namespace {

struct Sink {
  std::string* body = nullptr;
  int fd = -1;
  uint64_t max = 0, got = 0;
  bool too_big = false;
  int err = 0;
};

size_t WriteBody(char* data, size_t size, size_t n, void* opaque) {
  auto* s = static_cast<Sink*>(opaque);
  const size_t len = size * n;
  if (s->got + len > s->max) {
    s->too_big = true;
    return 0;  // aborts the transfer
  }
  s->got += len;
  if (s->fd >= 0) {
    size_t done = 0;
    while (done < len) {
      ssize_t w = write(s->fd, data + done, len - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        s->err = errno;
        return 0;
      }
      done += static_cast<size_t>(w);
    }
  } else {
    s->body->append(data, len);
  }
  return len;
}

struct Headers {
  std::string content_type, www_authenticate, docker_digest;
};

size_t ReadHeader(char* data, size_t size, size_t n, void* opaque) {
  auto* h = static_cast<Headers*>(opaque);
  std::string line(data, size * n);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) *h = Headers{};  // a new response (after a redirect)
  auto colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  std::string key = line.substr(0, colon);
  for (auto& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  std::string value = line.substr(colon + 1);
  while (!value.empty() && value[0] == ' ') value.erase(0, 1);
  if (key == "content-type") h->content_type = value.substr(0, value.find(';'));
  if (key == "www-authenticate") h->www_authenticate = value;
  if (key == "docker-content-digest") h->docker_digest = value;
  return size * n;
}

}  // namespace

void RegistryClient::SetTransferOptions(void* curl, const std::string& url, void* sink) const {
  CURL* c = static_cast<CURL*>(curl);
  const char* protocols = scheme_ == "https" ? "https" : "http,https";
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protocols);
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, protocols);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options_.stall_timeout_s);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "ferry");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
}

Result<RegistryClient::Response> RegistryClient::Get(const std::string& url, const std::string& accept,
                                                     uint64_t max_bytes, int fd) {
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<CURL, CurlDeleter> c(curl_easy_init());
    if (!c) return InternalError("libcurl: out of memory");
    Response resp;
    Sink sink{&resp.body, fd, max_bytes};
    Headers headers;
    std::unique_ptr<curl_slist, SlistDeleter> list;
    auto add = [&](const std::string& h) { list.reset(curl_slist_append(list.release(), h.c_str())); };
    if (!accept.empty()) add("Accept: " + accept);
    if (!authorization_.empty()) add("Authorization: " + authorization_);
    SetTransferOptions(c.get(), url, &sink);
    curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, list.get());
    curl_easy_setopt(c.get(), CURLOPT_HEADERFUNCTION, ReadHeader);
    curl_easy_setopt(c.get(), CURLOPT_HEADERDATA, &headers);
    CURLcode rc = curl_easy_perform(c.get());
    curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &resp.status);
    if (sink.too_big) {
      return InvalidArgumentError(url + ": the registry sent more than the " + std::to_string(max_bytes) +
                                  " bytes allowed");
    }
    if (sink.err) return ErrnoError("writing what " + url + " sent", sink.err);
    if (rc != CURLE_OK) return UnavailableError(url + ": " + curl_easy_strerror(rc));
    resp.content_type = headers.content_type;
    resp.www_authenticate = headers.www_authenticate;
    resp.docker_digest = headers.docker_digest;
    if (resp.status == 401 && attempt == 0 && !resp.www_authenticate.empty()) {
      RETURN_IF_ERROR(Authenticate(resp.www_authenticate));
      if (fd >= 0 && (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)) {
        return ErrnoError("rewinding a download of " + url);
      }
      continue;
    }
    return resp;
  }
}

Status RegistryClient::Authenticate(const std::string& header) {
  Challenge ch = ParseChallenge(header);
  if (ch.scheme == "basic") {
    if (basic_.empty()) return FailedPreconditionError(ref_.host + " asks for a user name and password (--creds)");
    std::string enc(4 * ((basic_.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(enc.data()),
                            reinterpret_cast<const unsigned char*>(basic_.data()), static_cast<int>(basic_.size()));
    enc.resize(static_cast<size_t>(n));
    authorization_ = "Basic " + enc;
    return Status::Ok();
  }
  if (ch.scheme != "bearer" || ch.params["realm"].empty()) {
    return FailedPreconditionError(ref_.host + ": unsupported authentication challenge '" + header + "'");
  }
  std::unique_ptr<CURL, CurlDeleter> c(curl_easy_init());
  if (!c) return InternalError("libcurl: out of memory");
  std::string url = ch.params["realm"];
  url += url.find('?') == std::string::npos ? "?" : "&";
  if (!ch.params["service"].empty()) url += "service=" + UrlEscape(c.get(), ch.params["service"]) + "&";
  std::string scope = ch.params["scope"].empty() ? "repository:" + ref_.repository + ":pull" : ch.params["scope"];
  url += "scope=" + UrlEscape(c.get(), scope);
  std::string body;
  Sink sink{&body, -1, kMaxTokenBytes};
  SetTransferOptions(c.get(), url, &sink);
  if (!basic_.empty()) {
    curl_easy_setopt(c.get(), CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c.get(), CURLOPT_USERPWD, basic_.c_str());
  }
  CURLcode rc = curl_easy_perform(c.get());
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK) return UnavailableError("token from " + ch.params["realm"] + ": " + curl_easy_strerror(rc));
  if (status != 200) {
    return FailedPreconditionError("token from " + ch.params["realm"] + ": HTTP " + std::to_string(status) +
                                   (basic_.empty() ? " (no credentials given: --creds USER:PASSWORD)" : ""));
  }
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  std::string token;
  if (j.is_object()) {
    if (auto t = j.find("token"); t != j.end() && t->is_string()) token = *t;
    if (auto t = j.find("access_token"); token.empty() && t != j.end() && t->is_string()) token = *t;
  }
  if (token.empty()) return CorruptionError("token from " + ch.params["realm"] + ": no token in the answer");
  authorization_ = "Bearer " + token;
  return Status::Ok();
}

namespace {

Status HttpError(long status, const std::string& what, const std::string& host) {
  std::string msg = what + ": HTTP " + std::to_string(status) + " from " + host;
  if (status == 404) return NotFoundError(msg);
  if (status == 401 || status == 403) return FailedPreconditionError(msg + " (not allowed: --creds?)");
  if (status == 429 || status >= 500) return UnavailableError(msg);
  return InvalidArgumentError(msg);
}

}  // namespace

Result<RegistryClient::Manifest> RegistryClient::GetManifest(const std::string& reference, uint64_t max_bytes) {
  const std::string url = scheme_ + "://" + ref_.host + "/v2/" + ref_.repository + "/manifests/" + reference;
  ASSIGN_OR_RETURN(Response r, Get(url, kManifestAccept, max_bytes, -1));
  if (r.status != 200) return HttpError(r.status, "manifest " + ref_.repository + ":" + reference, ref_.host);
  Manifest m{std::move(r.body), r.content_type, r.docker_digest};
  if (m.media_type.empty() || m.media_type == "application/json" || m.media_type == "text/plain") {
    json j = json::parse(m.body, nullptr, false);
    if (j.is_object() && j.contains("mediaType") && j["mediaType"].is_string()) m.media_type = j["mediaType"];
  }
  return m;
}

Result<std::string> RegistryClient::GetBlob(const std::string& digest, uint64_t max_bytes) {
  const std::string url = scheme_ + "://" + ref_.host + "/v2/" + ref_.repository + "/blobs/" + digest;
  ASSIGN_OR_RETURN(Response r, Get(url, "", max_bytes, -1));
  if (r.status != 200) return HttpError(r.status, "blob " + digest, ref_.host);
  return std::move(r.body);
}

Status RegistryClient::GetBlobToFile(const std::string& digest, uint64_t size, const std::string& path) {
  const std::string url = scheme_ + "://" + ref_.host + "/v2/" + ref_.repository + "/blobs/" + digest;
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("creating " + path);
  auto r = Get(url, "", size, fd);
  int close_rc = close(fd);
  if (!r.ok()) return r.status().Annotate("blob " + digest);
  if (r->status != 200) return HttpError(r->status, "blob " + digest, ref_.host);
  if (close_rc != 0) return ErrnoError("writing " + path);
  return Status::Ok();
}

}  // namespace ferry::builder
