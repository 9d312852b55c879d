// S3Config: where an s3:// store lives and how to reach it, from its URL,
// the standard AWS environment variables and the shared AWS files.
//
// URL: s3://BUCKET[/PREFIX][?OPTIONS], options separated by '&':
//   endpoint=URL        http[s]://host[:port] of an S3-compatible service
//   region=NAME         signing region (default: see below)
//   path_style=0|1      1: ENDPOINT/BUCKET/KEY, 0: BUCKET.HOST/KEY
//   timeout=60s         deadline of one request, its retries included
//   connect_timeout=10s deadline of one connection attempt
//   attempts=5          tries per request on transient failures (1..20)
//   max_keys=1000       keys per List page (1..1000)
// Object "KEY" of the store is S3 object "PREFIX/KEY" (or "KEY" without a
// prefix). Durations take s, ms or us.
//
// What the URL leaves out comes from the environment:
//   endpoint   AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else
//              https://s3.REGION.amazonaws.com
//   region     AWS_REGION, AWS_DEFAULT_REGION, `region` of the profile in
//              AWS_CONFIG_FILE (~/.aws/config), else us-east-1
//   path_style 0 for amazonaws.com endpoints, 1 for any other
//   credentials AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN),
//              else the profile AWS_PROFILE (default "default") of
//              AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials); none found
//              means unsigned (anonymous) requests
//   CA bundle  AWS_CA_BUNDLE for https, else the system's
// Credentials never appear in a URL: CanonicalUrl() names everything else,
// so another process given it (with its own credentials) opens the same store.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "chunkstore/status.h"

namespace ferry::chunkstore {

struct S3Credentials {
  std::string access_key_id;  // empty: unsigned requests
  std::string secret_access_key;
  std::string session_token;  // sent as x-amz-security-token when set
};

struct S3Config {
  std::string bucket;
  std::string prefix;    // without leading or trailing '/'; may be empty
  std::string endpoint;  // scheme://host[:port], no trailing '/'
  std::string region;
  bool path_style = true;
  double timeout_s = 60;
  double connect_timeout_s = 10;
  int attempts = 5;
  int max_keys = 1000;
  std::string ca_bundle;  // empty: libcurl's default
  S3Credentials credentials;

  // s3://BUCKET[/PREFIX]?endpoint=..&region=..&path_style=.. plus every
  // tuning option that differs from its default.
  std::string CanonicalUrl() const;
  // The S3 object name of store key `key`.
  std::string ObjectName(const std::string& key) const {
    return prefix.empty() ? key : prefix + "/" + key;
  }
};

// Looks up an environment variable; nullptr if unset. Tests pass their own.
using EnvLookup = std::function<const char*(const char*)>;
EnvLookup ProcessEnv();

// Parses an s3:// URL and fills the rest from `env` and the files it names.
// kInvalidArgument for a malformed URL or option, naming what is wrong.
Result<S3Config> ParseS3Url(const std::string& url, const EnvLookup& env);

// Percent-encodes every byte except A-Z a-z 0-9 - . _ ~ (and '/' when
// `keep_slash`), with upper-case hex: the form SigV4 signs.
std::string UriEncode(const std::string& s, bool keep_slash);

}  // namespace ferry::chunkstore
