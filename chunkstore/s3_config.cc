#include "chunkstore/s3_config.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>

#include "chunkstore/object_store.h"
#include "chunkstore/url_options.h"

namespace ferry::chunkstore {
namespace {

const S3Config kDefaults{};

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

Result<double> ParseDuration(const std::string& v) {
  ASSIGN_OR_RETURN(double x, ParseDurationSeconds(v));
  if (!(x > 0)) return InvalidArgumentError("bad duration '" + v + "' (e.g. 30s, 500ms)");
  return x;
}

Result<int> ParseInt(const std::string& name, const std::string& v, int lo, int hi) {
  try {
    size_t used = 0;
    long x = std::stol(v, &used);
    if (used == v.size() && x >= lo && x <= hi) return static_cast<int>(x);
  } catch (const std::exception&) {
  }
  return InvalidArgumentError("bad " + name + " '" + v + "' (" + std::to_string(lo) + ".." +
                              std::to_string(hi) + ")");
}

std::string FormatDuration(double s) {
  long long us = std::llround(s * 1e6);
  if (us % 1000000 == 0) return std::to_string(us / 1000000) + "s";
  if (us % 1000 == 0) return std::to_string(us / 1000) + "ms";
  return std::to_string(us) + "us";
}

// The sections of an INI file such as ~/.aws/credentials: section name ->
// key -> value. A missing or unreadable file is empty.
std::map<std::string, std::map<std::string, std::string>> ReadIni(const std::string& path) {
  std::map<std::string, std::map<std::string, std::string>> sections;
  std::ifstream in(path);
  std::string line, section;
  while (std::getline(in, line)) {
    line = Trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = Trim(line.substr(1, line.size() - 2));
      continue;
    }
    size_t eq = line.find('=');
    if (eq != std::string::npos) sections[section][Trim(line.substr(0, eq))] = Trim(line.substr(eq + 1));
  }
  return sections;
}

std::string EnvOr(const EnvLookup& env, const char* name, const std::string& fallback) {
  const char* v = env(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

Status ValidateEndpoint(std::string* endpoint) {
  std::string& e = *endpoint;
  while (!e.empty() && e.back() == '/') e.pop_back();
  size_t scheme_end = e.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : e.substr(0, scheme_end);
  std::string host = scheme_end == std::string::npos ? "" : e.substr(scheme_end + 3);
  if ((scheme != "http" && scheme != "https") || host.empty() ||
      host.find_first_of("/?#@ ") != std::string::npos) {
    return InvalidArgumentError("bad endpoint '" + e + "' (want http[s]://host[:port])");
  }
  return Status::Ok();
}

bool IsAwsEndpoint(const std::string& endpoint) {
  std::string host = endpoint.substr(endpoint.find("://") + 3);
  host = host.substr(0, host.find(':'));
  const std::string aws = "amazonaws.com";
  return host.size() >= aws.size() && host.compare(host.size() - aws.size(), aws.size(), aws) == 0;
}

bool ValidBucket(const std::string& b) {
  if (b.empty() || b.size() > 255) return false;
  for (char c : b) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

void ResolveCredentials(const EnvLookup& env, S3Config* c) {
  std::string id = EnvOr(env, "AWS_ACCESS_KEY_ID", "");
  std::string secret = EnvOr(env, "AWS_SECRET_ACCESS_KEY", "");
  if (!id.empty() && !secret.empty()) {
    c->credentials = {id, secret, EnvOr(env, "AWS_SESSION_TOKEN", "")};
    return;
  }
  std::string home = EnvOr(env, "HOME", "");
  std::string file = EnvOr(env, "AWS_SHARED_CREDENTIALS_FILE", home + "/.aws/credentials");
  auto ini = ReadIni(file);
  auto& profile = ini[EnvOr(env, "AWS_PROFILE", "default")];
  if (!profile["aws_access_key_id"].empty() && !profile["aws_secret_access_key"].empty()) {
    c->credentials = {profile["aws_access_key_id"], profile["aws_secret_access_key"],
                      profile["aws_session_token"]};
  }
}

std::string RegionFromEnv(const EnvLookup& env) {
  std::string region = EnvOr(env, "AWS_REGION", EnvOr(env, "AWS_DEFAULT_REGION", ""));
  if (!region.empty()) return region;
  std::string home = EnvOr(env, "HOME", "");
  auto ini = ReadIni(EnvOr(env, "AWS_CONFIG_FILE", home + "/.aws/config"));
  std::string profile = EnvOr(env, "AWS_PROFILE", "default");
  region = ini[profile == "default" ? profile : "profile " + profile]["region"];
  return region.empty() ? "us-east-1" : region;
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const char* name) { return static_cast<const char*>(std::getenv(name)); };
}

std::string UriEncode(const std::string& s, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string S3Config::CanonicalUrl() const {
  std::string url = "s3://" + bucket + (prefix.empty() ? "" : "/" + prefix) +
                    "?endpoint=" + endpoint + "&region=" + UriEncode(region, false) +
                    "&path_style=" + (path_style ? "1" : "0");
  if (timeout_s != kDefaults.timeout_s) url += "&timeout=" + FormatDuration(timeout_s);
  if (connect_timeout_s != kDefaults.connect_timeout_s) {
    url += "&connect_timeout=" + FormatDuration(connect_timeout_s);
  }
  if (attempts != kDefaults.attempts) url += "&attempts=" + std::to_string(attempts);
  if (max_keys != kDefaults.max_keys) url += "&max_keys=" + std::to_string(max_keys);
  return url;
}

Result<S3Config> ParseS3Url(const std::string& url, const EnvLookup& env) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("store URL '" + url + "': " + why);
  };
  if (url.rfind("s3://", 0) != 0) return bad("not an s3:// URL");
  std::string rest = url.substr(5);
  size_t q = rest.find('?');
  std::string query = q == std::string::npos ? "" : rest.substr(q + 1);
  rest = rest.substr(0, q);
  S3Config c;
  size_t slash = rest.find('/');
  c.bucket = rest.substr(0, slash);
  if (slash != std::string::npos) c.prefix = rest.substr(slash + 1);
  while (!c.prefix.empty() && c.prefix.back() == '/') c.prefix.pop_back();
  if (!ValidBucket(c.bucket)) return bad("bad bucket name '" + c.bucket + "'");
  if (!c.prefix.empty() && !IsValidKey(c.prefix)) return bad("bad prefix '" + c.prefix + "'");

  bool have_region = false, have_path_style = false;
  auto options = ParseUrlOptions(query);
  if (!options.ok()) return options.status().Annotate("store URL '" + url + "'");
  for (const auto& [k, v] : *options) {
    if (k == "endpoint") {
      c.endpoint = v;
    } else if (k == "region") {
      c.region = v;
      have_region = !v.empty();
    } else if (k == "path_style") {
      if (v != "0" && v != "1") return bad("path_style must be 0 or 1");
      c.path_style = v == "1";
      have_path_style = true;
    } else if (k == "timeout" || k == "connect_timeout") {
      auto d = ParseDuration(v);
      if (!d.ok()) return d.status().Annotate("store URL '" + url + "'");
      (k == "timeout" ? c.timeout_s : c.connect_timeout_s) = *d;
    } else if (k == "attempts" || k == "max_keys") {
      auto n = k == "attempts" ? ParseInt(k, v, 1, 20) : ParseInt(k, v, 1, 1000);
      if (!n.ok()) return n.status().Annotate("store URL '" + url + "'");
      (k == "attempts" ? c.attempts : c.max_keys) = *n;
    } else {
      return bad("unknown option '" + k +
                 "' (endpoint, region, path_style, timeout, connect_timeout, attempts, max_keys)");
    }
  }
  if (!have_region) c.region = RegionFromEnv(env);
  if (c.endpoint.empty()) {
    c.endpoint = EnvOr(env, "AWS_ENDPOINT_URL_S3", EnvOr(env, "AWS_ENDPOINT_URL", ""));
  }
  if (c.endpoint.empty()) c.endpoint = "https://s3." + c.region + ".amazonaws.com";
  if (Status st = ValidateEndpoint(&c.endpoint); !st.ok()) return st.Annotate("store URL '" + url + "'");
  // A bucket with dots, capitals or '_' cannot be (or be covered by a TLS
  // certificate as) one DNS label.
  bool host_safe = c.bucket.find_first_of("._ABCDEFGHIJKLMNOPQRSTUVWXYZ") == std::string::npos;
  if (!have_path_style) c.path_style = !IsAwsEndpoint(c.endpoint) || !host_safe;
  if (!c.path_style && !host_safe) {
    return bad("bucket '" + c.bucket + "' cannot be a host name; use path_style=1");
  }
  c.ca_bundle = EnvOr(env, "AWS_CA_BUNDLE", "");
  ResolveCredentials(env, &c);
  return c;
}

}  // namespace ferry::chunkstore
