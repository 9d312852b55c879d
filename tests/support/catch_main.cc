// The main() of unit-test programs.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
