// The `ferry` front end: which verbs it runs itself and which it hands to
// ferry-tool. A copy of the front end alone in a directory, with no
// ferry-tool beside it, shows the routing: a command line it hands on
// fails with 127 ("cannot run ferry-tool"), one it runs itself does not.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"

namespace ft = ferry::testing;

namespace {

struct LoneFrontEnd {
  ft::ScopedTempDir dir{"ferry-cli"};
  std::string bin = dir.path() + "/ferry";
  LoneFrontEnd() { std::filesystem::copy_file(ft::FerryBinary(), bin); }
  ft::CommandResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), bin);
    return ft::Run(args);
  }
};

bool HandedOn(const ft::CommandResult& r) {
  return r.exit_code == 127 && r.err.find("cannot run") != std::string::npos &&
         r.err.find("ferry-tool") != std::string::npos;
}

}  // namespace

TEST_CASE("the front end hands every verb that is not its own to ferry-tool") {
  LoneFrontEnd f;
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"ls"},
           {"build", "/nonexistent"},
           {"--store", "file:///nonexistent", "inspect", "x"},
           {"profile", "show", "x"},
           {"profile", "record", "x", "--", "true"},
           {"mount", "--no-daemon", "x", "/nonexistent"},
           {"mount", "x", "/nonexistent", "--foreground"},
           {"bogus"},
           {},
           {"mount", "--help"},
           {"--version"}}) {
    INFO("ferry " << ::Catch::Detail::stringify(args));
    CHECK(HandedOn(f.Run(args)));
  }
}

TEST_CASE("the front end runs its own verbs, and reports their usage errors itself") {
  LoneFrontEnd f;
  ft::ScopedTempDir no_daemon{"ferry-cli-root"};
  // Usage errors of its own verbs: exit 2 from the front end, no hand-over.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"mount"}, {"mount", "x"}, {"umount"}, {"cache"}, {"cache", "prune"},
           {"profile", "start"}, {"mount", "x", "/tmp", "--no-such-option"}}) {
    INFO("ferry " << ::Catch::Detail::stringify(args));
    auto r = f.Run(args);
    CHECK(r.exit_code == 2);
    CHECK_FALSE(HandedOn(r));
  }
  // Its own verbs run: with no daemon at that root, they say so.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"cache", "stats", "--daemon", no_daemon.path()},
           {"--store", "file:///nonexistent", "mount", "x", no_daemon.path(), "--daemon",
            no_daemon.path()},
           {"profile", "stop", no_daemon.path(), "--daemon", no_daemon.path()}}) {
    INFO("ferry " << ::Catch::Detail::stringify(args));
    auto r = f.Run(args);
    CHECK(r.exit_code == 1);
    CHECK_FALSE(HandedOn(r));
    CHECK(r.err.find("ferryd") != std::string::npos);
  }
}
