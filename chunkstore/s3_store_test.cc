// Tests of the s3:// store beyond the shared contract: its URL and
// environment ([config]), retries, deadlines and connection reuse against a
// scripted front ([retry]), and interoperability with the AWS CLI
// ([awscli]). The contract itself is object_store_contract_test.cc.
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "chunkstore/clock.h"
#include "chunkstore/s3_store.h"
#include "chunkstore/s3_transport.h"
#include "tests/s3/test_servers.h"
#include "tests/support/ferry_cli.h"

namespace ferry::chunkstore {
namespace {

using testing::ScopedS3Front;
using testing::ScopedS3rver;
using testing::ScopedTempDir;

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

EnvLookup FakeEnv(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_CASE("s3 URL: options, defaults from the environment, canonical URL", "[config]") {
  auto c = ParseS3Url("s3://bkt/some/prefix/?endpoint=http://127.0.0.1:9000&region=eu-west-1"
                      "&timeout=1500ms&attempts=3&max_keys=10", FakeEnv({}));
  REQUIRE(c.ok());
  CHECK(c->bucket == "bkt");
  CHECK(c->prefix == "some/prefix");
  CHECK(c->endpoint == "http://127.0.0.1:9000");
  CHECK(c->path_style);  // not AWS: path-style unless told otherwise
  CHECK(c->timeout_s == Approx(1.5));
  CHECK(c->ObjectName("packs/x") == "some/prefix/packs/x");
  CHECK(c->CanonicalUrl() == "s3://bkt/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1"
                             "&path_style=1&timeout=1500ms&attempts=3&max_keys=10");
  auto again = ParseS3Url(c->CanonicalUrl(), FakeEnv({{"AWS_REGION", "ignored"}}));
  REQUIRE(again.ok());
  CHECK(again->CanonicalUrl() == c->CanonicalUrl());

  auto aws = ParseS3Url("s3://bkt", FakeEnv({{"AWS_DEFAULT_REGION", "ap-south-1"}}));
  REQUIRE(aws.ok());
  CHECK(aws->endpoint == "https://s3.ap-south-1.amazonaws.com");
  CHECK_FALSE(aws->path_style);
  CHECK(aws->ObjectName("refs/x") == "refs/x");
  CHECK(ParseS3Url("s3://b.with.dots", FakeEnv({}))->path_style);  // not a DNS label
  auto env = ParseS3Url("s3://bkt/p", FakeEnv({{"AWS_ENDPOINT_URL", "http://minio:9000/"},
                                                {"AWS_REGION", "r1"}}));
  CHECK(env->CanonicalUrl() == "s3://bkt/p?endpoint=http://minio:9000&region=r1&path_style=1");

  for (std::string bad : {"s3://", "s3://b/../x", "s3://b?colour=red", "s3://b?timeout=soon",
                          "s3://b?attempts=0", "s3://b?max_keys=5000", "s3://b?endpoint=ftp://x",
                          "s3://b?endpoint=http://h/path", "s3://B_x?path_style=0", "s3://b?path_style=2"}) {
    INFO(bad);
    CHECK(ParseS3Url(bad, FakeEnv({})).status().code() == StatusCode::kInvalidArgument);
  }
}

TEST_CASE("s3 credentials: environment first, then the shared files; never in the URL", "[config]") {
  ScopedTempDir dir("ferry-s3test");
  std::ofstream(dir.path() + "/credentials") << "# comment\n[default]\naws_access_key_id = DEF\n"
                                                "aws_secret_access_key = defsecret\n\n"
                                                "[work]\naws_access_key_id=WORK\n"
                                                "aws_secret_access_key=worksecret\naws_session_token=tok\n";
  std::ofstream(dir.path() + "/config") << "[profile work]\nregion = eu-north-1\n";
  std::map<std::string, std::string> vars = {{"HOME", dir.path() + "/nohome"},
                                             {"AWS_SHARED_CREDENTIALS_FILE", dir.path() + "/credentials"},
                                             {"AWS_CONFIG_FILE", dir.path() + "/config"}};
  auto def = ParseS3Url("s3://b", FakeEnv(vars)).value();
  CHECK(def.credentials.access_key_id == "DEF");
  CHECK(def.credentials.secret_access_key == "defsecret");
  CHECK(def.region == "us-east-1");
  vars["AWS_PROFILE"] = "work";
  auto work = ParseS3Url("s3://b", FakeEnv(vars)).value();
  CHECK(work.credentials.access_key_id == "WORK");
  CHECK(work.credentials.session_token == "tok");
  CHECK(work.region == "eu-north-1");
  vars["AWS_ACCESS_KEY_ID"] = "ENVKEY";
  vars["AWS_SECRET_ACCESS_KEY"] = "envsecret";
  auto env = ParseS3Url("s3://b", FakeEnv(vars)).value();
  CHECK(env.credentials.access_key_id == "ENVKEY");
  CHECK(env.credentials.session_token.empty());
  CHECK_FALSE(Contains(env.CanonicalUrl(), "ENVKEY"));
  CHECK_FALSE(Contains(env.CanonicalUrl(), "secret"));
  auto anonymous = ParseS3Url("s3://b", FakeEnv({{"HOME", dir.path() + "/nohome"}})).value();
  CHECK(anonymous.credentials.access_key_id.empty());
  CHECK(UriEncode("a/b:c%d e~", true) == "a/b%3Ac%25d%20e~");
  CHECK(UriEncode("a/b", false) == "a%2Fb");
}

// A store on the in-memory front with `options`, holding "obj".
std::unique_ptr<S3Store> FrontStore(const ScopedS3Front& front, const std::string& options = "") {
  testing::UseTestCredentials();
  auto store = S3Store::OpenUrl("s3://ferry-test/p?endpoint=" + front.endpoint() + options);
  REQUIRE(store.ok());
  REQUIRE((*store)->Put("obj", Bytes("payload")).ok());
  return std::move(*store);
}

// Requests the front saw after the first `skip`.
std::vector<std::string> Since(const ScopedS3Front& front, size_t skip) {
  auto log = front.Log();
  return {log.begin() + static_cast<long>(std::min(skip, log.size())), log.end()};
}

TEST_CASE("s3 signatures: the front accepts ours and refuses a wrong secret", "[retry]") {
  ScopedS3Front front;
  auto store = FrontStore(front);
  CHECK(Contains(front.Log().back(), "sig=ok"));
  setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret", 1);
  auto wrong = S3Store::OpenUrl("s3://ferry-test/p?endpoint=" + front.endpoint());
  testing::UseTestCredentials();
  REQUIRE(wrong.ok());
  CHECK((*wrong)->Size("obj").status().code() == StatusCode::kFailedPrecondition);
  CHECK(Contains(front.Log().back(), "sig=bad:signature"));
}

TEST_CASE("s3 retries: 503 SlowDown twice, then the answer", "[retry]") {
  ScopedS3Front front;
  auto store = FrontStore(front);
  size_t before = front.Log().size();
  front.ScriptFaults({"503 SlowDown", "503 SlowDown"});
  CHECK(std::string(store->Get("obj").value()->view()) == "payload");
  auto seen = Since(front, before);
  REQUIRE(seen.size() == 3);
  CHECK(Contains(seen[0], "-> 503"));
  CHECK(Contains(seen[1], "-> 503"));
  CHECK(Contains(seen[2], "-> 200"));
}

TEST_CASE("s3 retries: the pauses between tries are the policy's, kept on the transport's clock", "[retry]") {
  ScopedS3Front front;
  auto store = FrontStore(front);
  auto config = ParseS3Url("s3://ferry-test/p?endpoint=" + front.endpoint(), ProcessEnv());
  REQUIRE(config.ok());
  ManualClock clock;
  S3Transport transport(*config, &clock);
  size_t before = front.Log().size();
  front.ScriptFaults({"503 SlowDown", "503 SlowDown"});
  S3Transport::Request req;
  req.method = "GET";
  req.object = config->ObjectName("obj");
  Result<S3Transport::Response> resp = InternalError("not run");
  std::thread request([&] { resp = transport.Perform(req); });
  for (int failures = 1; failures <= 2; ++failures) {
    REQUIRE(clock.AwaitWaits(failures));  // the next try waits for the clock
    auto next = clock.NextDeadline();
    if (!next) continue;  // a pause of 0 was drawn
    CHECK(*next - clock.Now() <= transport.retry_policy().Ceiling(failures));
    clock.Advance(*next - clock.Now());
  }
  request.join();
  REQUIRE(resp.ok());
  CHECK(resp->status == 200);
  CHECK(resp->body == "payload");
  CHECK(resp->attempts == 3);
  CHECK(Since(front, before).size() == 3);
}

TEST_CASE("s3 retries: 403 is final at once and names the object", "[retry]") {
  ScopedS3Front front;
  auto store = FrontStore(front);
  size_t before = front.Log().size();
  front.ScriptFaults({"403 AccessDenied"});
  auto r = store->Get("obj");
  CHECK(r.status().code() == StatusCode::kFailedPrecondition);
  CHECK(Contains(r.status().message(), "s3://ferry-test/p/obj"));
  CHECK(Contains(r.status().message(), "403 AccessDenied"));
  CHECK(Since(front, before).size() == 1);
  before = front.Log().size();
  front.ScriptFaults({"400 InvalidArgument"});
  CHECK(store->Size("obj").status().code() == StatusCode::kInvalidArgument);
  CHECK(Since(front, before).size() == 1);
}

TEST_CASE("s3 retries: bounded attempts end in Unavailable with the last status", "[retry]") {
  ScopedS3Front front;
  auto store = FrontStore(front, "&attempts=3");
  size_t before = front.Log().size();
  front.ScriptFaults({"500 InternalError", "502 BadGateway", "500 InternalError", "500 InternalError"});
  auto st = store->Put("obj2", Bytes("x"));
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK(Contains(st.message(), "gave up after 3 attempt(s)"));
  CHECK(Contains(st.message(), "HTTP 500 InternalError"));
  CHECK(Contains(st.message(), "s3://ferry-test/p/obj2"));
  CHECK(Since(front, before).size() == 3);
  front.ScriptFaults({});
}

TEST_CASE("s3 retries: a dropped connection is retried; requests share a connection", "[retry]") {
  ScopedS3Front front;
  auto store = FrontStore(front);
  size_t before = front.Log().size();
  front.ScriptFaults({"drop"});
  CHECK(store->Size("obj").value() == 7);
  CHECK(Since(front, before).size() == 2);
  before = front.Log().size();
  for (int i = 0; i < 10; ++i) REQUIRE(store->Size("obj").ok());
  std::set<std::string> connections;
  for (const auto& line : Since(front, before)) connections.insert(line.substr(line.find("conn=")));
  CHECK(connections.size() == 1);
}

TEST_CASE("s3 deadlines: a request that hangs ends in DeadlineExceeded", "[retry]") {
  ScopedS3Front front;
  auto store = FrontStore(front, "&timeout=1s");
  front.ScriptFaults({"hang 3"});
  auto r = store->Size("obj");
  CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
  CHECK(Contains(r.status().message(), "s3://ferry-test/p/obj"));
}

TEST_CASE("s3 retries: nothing listening is Unavailable after the attempts", "[retry]") {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  close(fd);  // a port that was free a moment ago
  testing::UseTestCredentials();
  auto store = S3Store::OpenUrl("s3://ferry-test?attempts=2&endpoint=http://127.0.0.1:" +
                                std::to_string(ntohs(addr.sin_port)));
  REQUIRE(store.ok());
  auto r = (*store)->Get("obj");
  CHECK(r.status().code() == StatusCode::kUnavailable);
  CHECK(Contains(r.status().message(), "gave up after 2 attempt(s)"));
  CHECK(Contains(r.status().message(), "curl error 7"));
}

// The AWS CLI, preferring Debian's awscli over others on PATH.
std::string AwsCli() {
  if (access("/usr/bin/aws", X_OK) == 0) return "/usr/bin/aws";
  auto r = testing::Run({"sh", "-c", "command -v aws"});
  if (r.exit_code != 0) testing::SkipOrFail("the awscli test needs aws (Debian package awscli)");
  return r.out.substr(0, r.out.find('\n'));
}

testing::CommandResult Aws(const ScopedS3rver& server, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"env", "AWS_ACCESS_KEY_ID=S3RVER", "AWS_SECRET_ACCESS_KEY=S3RVER",
                                   "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true",
                                   "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
                                   "AWS_PAGER=", AwsCli(), "--endpoint-url", server.endpoint()};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::Run(argv);
}

TEST_CASE("s3 interop: objects ferry writes, aws s3 cp reads, and the reverse", "[awscli]") {
  AwsCli();  // skip before starting anything
  testing::UseTestCredentials();
  ScopedS3rver server;
  ScopedTempDir dir("ferry-s3test");
  auto store = S3Store::OpenUrl("s3://ferry-test/interop?endpoint=" + server.endpoint());
  REQUIRE(store.ok());
  (*store)->SetMultipartForTesting(1 << 20, 512 << 10);
  std::string small = "ferry wrote this\n";
  std::string large((3 << 20) + 5, '\0');  // multipart on ferry's side
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>((i * 2654435761u) >> 13);
  REQUIRE((*store)->Put("refs/a%b:c", Bytes(small)).ok());
  REQUIRE((*store)->Put("packs/large", Bytes(large)).ok());
  for (const auto& [key, want] : {std::pair{"refs/a%b:c", small}, std::pair{"packs/large", large}}) {
    std::string out = dir.path() + "/out";
    auto r = Aws(server, {"s3", "cp", "s3://ferry-test/interop/" + std::string(key), out});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    std::ifstream in(out, std::ios::binary);
    CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == want);
  }
  // aws s3 cp uploads over 8 MiB in parts: one small and one multipart object.
  std::string theirs(9 << 20, '\0');
  for (size_t i = 0; i < theirs.size(); ++i) theirs[i] = static_cast<char>((i * 40503u) >> 7);
  std::ofstream(dir.path() + "/theirs", std::ios::binary) << theirs;
  std::ofstream(dir.path() + "/note") << "aws wrote this\n";
  for (const auto& [file, key] : {std::pair{"theirs", "packs/theirs"}, std::pair{"note", "refs/note"}}) {
    auto r = Aws(server, {"s3", "cp", dir.path() + "/" + file, "s3://ferry-test/interop/" + std::string(key)});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  }
  CHECK(std::string((*store)->Get("refs/note").value()->view()) == "aws wrote this\n");
  CHECK((*store)->Get("packs/theirs").value()->view() == theirs);
  std::vector<uint8_t> part(1000);
  REQUIRE((*store)->GetRange("packs/theirs", (8 << 20) - 500, part).ok());
  CHECK(std::string(part.begin(), part.end()) == theirs.substr((8 << 20) - 500, 1000));
  CHECK((*store)->List("").value() ==
        std::vector<std::string>{"packs/large", "packs/theirs", "refs/a%b:c", "refs/note"});
}

}  // namespace
}  // namespace ferry::chunkstore
