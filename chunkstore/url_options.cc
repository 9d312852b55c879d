#include "chunkstore/url_options.h"

#include <algorithm>
#include <cctype>

namespace ferry::chunkstore {
namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<std::string> PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    int hi = i + 2 < s.size() ? HexValue(s[i + 1]) : -1;
    int lo = hi >= 0 ? HexValue(s[i + 2]) : -1;
    if (lo < 0) return InvalidArgumentError("bad percent-encoding in '" + s + "'");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> ParseUrlOptions(const std::string& query) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos < query.size()) {
    size_t amp = query.find('&', pos);
    std::string item = query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    pos = amp == std::string::npos ? query.size() : amp + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos) return InvalidArgumentError("option '" + item + "' has no value");
    ASSIGN_OR_RETURN(std::string v, PercentDecode(item.substr(eq + 1)));
    out.emplace_back(item.substr(0, eq), std::move(v));
  }
  return out;
}

Result<double> ParseDurationSeconds(const std::string& v) {
  size_t used = 0;
  double x = -1;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
  }
  std::string unit = v.substr(std::min(used, v.size()));
  double scale = unit == "s" || unit.empty() ? 1 : unit == "ms" ? 1e-3 : unit == "us" ? 1e-6 : 0;
  if (used == 0 || !(x >= 0) || scale == 0) {
    return InvalidArgumentError("bad duration '" + v + "' (e.g. 30s, 500ms)");
  }
  return x * scale;
}

Result<double> ParseScaled(const std::string& v, double base) {
  size_t used = 0;
  double x = -1;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = v.substr(std::min(used, v.size()));
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && unit.back() == 'i') unit.pop_back();
  const std::string letters = "kmgt";
  size_t at = unit.size() == 1 ? letters.find(static_cast<char>(std::tolower(unit[0]))) : 0;
  size_t power = unit.empty() ? 0 : at + 1;
  if (used == 0 || !(x >= 0) || unit.size() > 1 || at == std::string::npos) {
    return InvalidArgumentError("bad size '" + v + "' (e.g. 10G, 512M, 65536)");
  }
  for (size_t i = 0; i < power; ++i) x *= base;
  return x;
}

}  // namespace ferry::chunkstore
