// libFuzzer target: arbitrary bytes as Python source, through the import
// parser the builder runs on every NAME.py it imports
// (builder/python_imports.h). Whatever the bytes, it must return, within
// its bound, and every import it reports must be well formed (a violation
// aborts); the collector must agree with the parser however the bytes are
// split into reads.
//
// Build and run: tests/fuzz/run.sh (which also writes the seed sources).
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "builder/python_imports.h"

namespace {

bool WellFormed(const ferry::builder::PyImport& i) {
  if (i.level < 0 || (i.level == 0 && i.module.empty())) return false;
  if (!i.from && (i.level != 0 || !i.names.empty())) return false;
  if (i.from && i.names.empty()) return false;
  const std::string& m = i.module;
  if (!m.empty() && (m.front() == '.' || m.back() == '.' || m.find("..") != std::string::npos)) return false;
  for (const std::string& n : i.names) {
    if (n.empty() || n.find('.') != std::string::npos) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ferry::builder;
  if (size > kMaxPySourceBytes) return 0;
  std::string_view source(reinterpret_cast<const char*>(data), size);
  auto imports = ParsePythonImports(source);
  if (imports.size() > kMaxPyImports) abort();
  for (const PyImport& i : imports) {
    if (!WellFormed(i)) abort();
  }
  // Fed in two reads, split where the first byte says.
  PyCollector collector("fuzz/module.py", size);
  size_t cut = size == 0 ? 0 : data[0] % (size + 1);
  collector.Add(0, std::span<const uint8_t>(data, cut));
  collector.Add(cut, std::span<const uint8_t>(data + cut, size - cut));
  auto collected = collector.Finish();
  if ((collected == nullptr) != imports.empty()) abort();
  if (collected != nullptr && collected->size() != imports.size()) abort();
  return 0;
}
