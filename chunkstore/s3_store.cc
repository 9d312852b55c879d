#include "chunkstore/s3_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <tinyxml2.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "chunkstore/s3_transport.h"

namespace ferry::chunkstore {
namespace {

using Request = S3Transport::Request;
using Body = S3Transport::Body;

constexpr uint64_t kMaxParts = 10000;  // S3's limit per multipart upload

bool Success(const S3Transport::Response& r) { return r.status >= 200 && r.status < 300; }

Status CheckKey(const std::string& key) {
  if (IsValidKey(key)) return Status::Ok();
  return InvalidArgumentError("invalid object key '" + key + "'");
}

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string ChildText(const tinyxml2::XMLElement* parent, const char* name) {
  const tinyxml2::XMLElement* e = parent->FirstChildElement(name);
  return e != nullptr && e->GetText() != nullptr ? e->GetText() : "";
}

// Parses an XML answer whose root element must be `root`.
Result<const tinyxml2::XMLElement*> ParseXml(tinyxml2::XMLDocument* doc, const std::string& body,
                                             const char* root, const std::string& what) {
  if (doc->Parse(body.data(), body.size()) != tinyxml2::XML_SUCCESS) {
    return CorruptionError(what + ": the answer is not XML: " + doc->ErrorStr());
  }
  const tinyxml2::XMLElement* e = doc->RootElement();
  if (e == nullptr || std::strcmp(e->Name(), root) != 0) {
    return CorruptionError(what + ": the answer is not a <" + root + ">");
  }
  return e;
}

}  // namespace

S3Store::S3Store(S3Config config)
    : config_(std::move(config)), http_(std::make_unique<S3Transport>(config_)) {}

S3Store::~S3Store() = default;

Result<std::unique_ptr<S3Store>> S3Store::Open(S3Config config) {
  return std::unique_ptr<S3Store>(new S3Store(std::move(config)));
}

Result<std::unique_ptr<S3Store>> S3Store::OpenUrl(const std::string& url) {
  ASSIGN_OR_RETURN(S3Config config, ParseS3Url(url, ProcessEnv()));
  return Open(std::move(config));
}

std::string S3Store::Url() const { return config_.CanonicalUrl(); }

void S3Store::SetMultipartForTesting(uint64_t threshold, uint64_t part_size) {
  multipart_threshold_ = threshold;
  part_size_ = std::max<uint64_t>(1, part_size);
}

Status S3Store::Put(const std::string& key, std::span<const uint8_t> data) {
  RETURN_IF_ERROR(CheckKey(key));
  return Upload(key, -1, data.data(), data.size());
}

Status S3Store::PutFile(const std::string& key, const std::string& path) {
  RETURN_IF_ERROR(CheckKey(key));
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open " + path);
  struct stat st;
  Status result = fstat(fd, &st) == 0 ? Upload(key, fd, nullptr, static_cast<uint64_t>(st.st_size))
                                      : ErrnoError("stat " + path);
  close(fd);
  // The object is stored; a file we could not remove is only litter.
  if (result.ok()) unlink(path.c_str());
  return result;
}

Status S3Store::Upload(const std::string& key, int fd, const uint8_t* data, uint64_t size) {
  std::string object = config_.ObjectName(key);
  if (size > 0 && size >= multipart_threshold_) return PutMultipart(object, fd, data, size);
  return PutSingle(object, fd, data, size);
}

Status S3Store::PutSingle(const std::string& object, int fd, const uint8_t* data, uint64_t size) {
  Body body{data, fd, 0, size};
  Request req{.method = "PUT", .object = object, .content_type = "application/octet-stream", .body = &body};
  ASSIGN_OR_RETURN(auto resp, http_->Perform(req));
  return Success(resp) ? Status::Ok() : http_->HttpError(req, resp);
}

Status S3Store::PutMultipart(const std::string& object, int fd, const uint8_t* data, uint64_t size) {
  Request create{.method = "POST", .object = object, .query = "uploads=",
                 .content_type = "application/octet-stream"};
  ASSIGN_OR_RETURN(auto created, http_->Perform(create));
  if (!Success(created)) return http_->HttpError(create, created);
  tinyxml2::XMLDocument doc;
  ASSIGN_OR_RETURN(auto* root, ParseXml(&doc, created.body, "InitiateMultipartUploadResult",
                                        http_->Describe(create)));
  const std::string upload_id = ChildText(root, "UploadId");
  if (upload_id.empty()) return CorruptionError(http_->Describe(create) + ": no UploadId in the answer");
  const std::string id_query = "uploadId=" + UriEncode(upload_id, false);

  const uint64_t part_size = std::max(part_size_, (size + kMaxParts - 1) / kMaxParts);
  std::string parts_xml = "<CompleteMultipartUpload>";
  Status st;
  for (uint64_t offset = 0, number = 1; offset < size && st.ok(); offset += part_size, ++number) {
    Body body{data, fd, offset, std::min(part_size, size - offset)};
    // Query parameters in SigV4 order: partNumber < uploadId.
    Request part{.method = "PUT", .object = object,
                 .query = "partNumber=" + std::to_string(number) + "&" + id_query, .body = &body};
    auto resp = http_->Perform(part);
    if (!resp.ok()) {
      st = resp.status();
    } else if (!Success(*resp)) {
      st = http_->HttpError(part, *resp);
    } else if (resp->etag.empty()) {
      st = CorruptionError(http_->Describe(part) + ": part " + std::to_string(number) + " has no ETag");
    } else {
      parts_xml += "<Part><PartNumber>" + std::to_string(number) + "</PartNumber><ETag>" +
                   XmlEscape(resp->etag) + "</ETag></Part>";
    }
  }
  if (st.ok()) {
    parts_xml += "</CompleteMultipartUpload>";
    Body body{reinterpret_cast<const uint8_t*>(parts_xml.data()), -1, 0, parts_xml.size()};
    Request complete{.method = "POST", .object = object, .query = id_query,
                     .content_type = "application/xml", .body = &body, .error_may_be_200 = true};
    auto resp = http_->Perform(complete);
    if (!resp.ok()) {
      st = resp.status();
    } else if (resp->status == 404 && resp->error_code == "NoSuchUpload" && resp->attempts > 1) {
      // An earlier try completed the upload but its answer was lost.
      auto stored = Size(object.substr(config_.prefix.empty() ? 0 : config_.prefix.size() + 1));
      if (!stored.ok() || *stored != size) st = http_->HttpError(complete, *resp);
    } else if (!Success(*resp)) {
      st = http_->HttpError(complete, *resp);
    } else if (!resp->error_code.empty()) {
      st = UnavailableError(http_->Describe(complete) + ": " + resp->error_code + ": " +
                            resp->error_message);
    }
  }
  if (!st.ok()) {
    // Best effort: a failed abort leaves parts that the bucket's lifecycle
    // rules (or a later abort) remove; the upload error is what matters.
    Request abort{.method = "DELETE", .object = object, .query = id_query};
    auto aborted = http_->Perform(abort);
    aborted.status().IgnoreError();
  }
  return st;
}

Result<std::shared_ptr<const Blob>> S3Store::Get(const std::string& key) {
  RETURN_IF_ERROR(CheckKey(key));
  std::vector<uint8_t> data;
  Request req{.method = "GET", .object = config_.ObjectName(key), .into_vector = &data};
  ASSIGN_OR_RETURN(auto resp, http_->Perform(req));
  if (!Success(resp)) return http_->HttpError(req, resp);
  if (resp.content_length >= 0 && data.size() != static_cast<uint64_t>(resp.content_length)) {
    return CorruptionError(http_->Describe(req) + ": got " + std::to_string(data.size()) +
                           " bytes, Content-Length said " + std::to_string(resp.content_length));
  }
  return MakeBlob(std::move(data));
}

Status S3Store::GetRange(const std::string& key, uint64_t offset, std::span<uint8_t> out) {
  RETURN_IF_ERROR(CheckKey(key));
  const std::string range = "[" + std::to_string(offset) + ", +" + std::to_string(out.size()) + ")";
  if (out.empty()) {  // HTTP cannot ask for no bytes: check the object instead
    ASSIGN_OR_RETURN(uint64_t size, Size(key));
    if (offset > size) {
      return CorruptionError("s3 object " + key + ": range " + range + " starts past its end");
    }
    return Status::Ok();
  }
  Request req{.method = "GET", .object = config_.ObjectName(key),
              .range = "bytes=" + std::to_string(offset) + "-" + std::to_string(offset + out.size() - 1),
              .into = out};
  ASSIGN_OR_RETURN(auto resp, http_->Perform(req));
  const std::string what = http_->Describe(req) + ": range " + range;
  if (resp.status == 416) return CorruptionError(what + " ends past the end of the object");
  if (!Success(resp)) return http_->HttpError(req, resp);
  if (resp.received != out.size()) {
    return CorruptionError(what + " ends past the end of the object (got " +
                           std::to_string(resp.received) + " bytes)");
  }
  // A service that ignores Range answers 200 with the whole object: right
  // only if the object is exactly the range.
  bool whole = resp.status == 200 && offset == 0 &&
               resp.content_length == static_cast<int64_t>(out.size());
  bool ranged = resp.status == 206 &&
                resp.content_range.rfind("bytes " + std::to_string(offset) + "-", 0) == 0;
  if (!whole && !ranged) {
    return CorruptionError(what + ": answered HTTP " + std::to_string(resp.status) +
                           " with Content-Range '" + resp.content_range + "'");
  }
  return Status::Ok();
}

Result<uint64_t> S3Store::Size(const std::string& key) {
  RETURN_IF_ERROR(CheckKey(key));
  Request req{.method = "HEAD", .object = config_.ObjectName(key)};
  ASSIGN_OR_RETURN(auto resp, http_->Perform(req));
  if (!Success(resp)) return http_->HttpError(req, resp);
  if (resp.content_length < 0) return CorruptionError(http_->Describe(req) + ": no Content-Length");
  return static_cast<uint64_t>(resp.content_length);
}

Result<std::vector<std::string>> S3Store::List(const std::string& prefix) {
  const std::string wanted = config_.ObjectName(prefix);
  const std::string strip = config_.prefix.empty() ? "" : config_.prefix + "/";
  std::vector<std::string> keys;
  std::string token;
  for (;;) {
    // Query parameters in SigV4 order.
    std::string query = (token.empty() ? "" : "continuation-token=" + UriEncode(token, false) + "&") +
                        "list-type=2&max-keys=" + std::to_string(config_.max_keys) +
                        "&prefix=" + UriEncode(wanted, false);
    Request req{.method = "GET", .object = "", .query = query};
    auto resp = http_->Perform(req);
    const std::string what = "list '" + wanted + "'";
    if (!resp.ok()) return resp.status().Annotate(what);
    if (!Success(*resp)) return http_->HttpError(req, *resp).Annotate(what);
    tinyxml2::XMLDocument doc;
    ASSIGN_OR_RETURN(auto* root, ParseXml(&doc, resp->body, "ListBucketResult",
                                          what + ": " + http_->Describe(req)));
    for (auto* c = root->FirstChildElement("Contents"); c != nullptr;
         c = c->NextSiblingElement("Contents")) {
      std::string name = ChildText(c, "Key");
      if (name.size() > strip.size() && name.compare(0, strip.size(), strip) == 0 &&
          name.compare(0, wanted.size(), wanted) == 0) {
        keys.push_back(name.substr(strip.size()));
      }
    }
    if (ChildText(root, "IsTruncated") != "true") break;
    std::string next = ChildText(root, "NextContinuationToken");
    if (next.empty() || next == token) {
      return CorruptionError(what + ": " + http_->Describe(req) +
                             ": a truncated listing without a new continuation token");
    }
    token = std::move(next);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

Status S3Store::Delete(const std::string& key) {
  RETURN_IF_ERROR(CheckKey(key));
  Request req{.method = "DELETE", .object = config_.ObjectName(key)};
  ASSIGN_OR_RETURN(auto resp, http_->Perform(req));
  if (Success(resp) || resp.status == 404) return Status::Ok();
  return http_->HttpError(req, resp);
}

}  // namespace ferry::chunkstore
