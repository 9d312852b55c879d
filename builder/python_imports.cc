#include "builder/python_imports.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <set>


namespace ferry::builder {
namespace {

// Calls on_line(indent, text) for each logical line that is not blank: its
// indentation and its text with every string literal replaced by "" and
// comments removed; brackets and backslashes join physical lines. One pass,
// runs of ordinary characters copied at once (about 1 GB/s: the builder
// reads every .py on its feeding thread).
template <typename OnLine>
void LogicalLines(std::string_view s, OnLine on_line) {
  static const auto kSpecial = [] {
    std::array<bool, 256> t{};
    for (unsigned char c : std::string_view("#'\"\\\n\r()[]{}")) t[c] = true;
    return t;
  }();
  std::string text;
  int indent = 0;
  bool at_start = true;  // at the start of a logical line: measuring indent
  int depth = 0;
  size_t i = 0;
  auto end_line = [&] {
    if (text.find_first_not_of(' ') != std::string::npos) on_line(indent, std::string_view(text));
    text.clear();
    indent = 0;
    at_start = true;
    depth = 0;
  };
  while (i < s.size()) {
    char c = s[i];
    if (at_start) {
      if (c == ' ') {
        ++indent;
        ++i;
        continue;
      }
      if (c == '\t') {
        indent = (indent / 8 + 1) * 8;
        ++i;
        continue;
      }
      if (c == '\f') {
        indent = 0;
        ++i;
        continue;
      }
      at_start = false;
    }
    if (!kSpecial[static_cast<unsigned char>(c)]) {
      size_t j = i + 1;
      while (j < s.size() && !kSpecial[static_cast<unsigned char>(s[j])]) ++j;
      text.append(s.substr(i, j - i));
      i = j;
      continue;
    }
    if (c == '#') {
      size_t nl = s.find('\n', i);
      i = nl == std::string_view::npos ? s.size() : nl;
      continue;
    }
    if (c == '\\') {
      if (i + 1 < s.size() && (s[i + 1] == '\n' || s[i + 1] == '\r')) {
        i += 2;
        if (i < s.size() && s[i - 1] == '\r' && s[i] == '\n') ++i;
        text += ' ';
      } else {
        text += c;
        ++i;
      }
      continue;
    }
    if (c == '\n' || c == '\r') {
      ++i;
      if (depth > 0) {
        text += ' ';
      } else {
        end_line();
      }
      continue;
    }
    if (c == '\'' || c == '"') {
      bool triple = i + 2 < s.size() && s[i + 1] == c && s[i + 2] == c;
      i += triple ? 3 : 1;
      while (i < s.size()) {
        if (s[i] == '\\') {
          i += 2;
          continue;
        }
        if (!triple && (s[i] == '\n' || s[i] == '\r')) break;  // unterminated
        if (s[i] == c && (!triple || (i + 2 < s.size() && s[i + 1] == c && s[i + 2] == c))) {
          i += triple ? 3 : 1;
          break;
        }
        ++i;
      }
      text += "\"\"";
      continue;
    }
    if (c == '(' || c == '[' || c == '{') ++depth;
    if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
    text += c;
    ++i;
  }
  end_line();
}

bool IsIdent(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Words of a statement: identifiers (dotted names are split at the dots),
// and single punctuation characters; spaces dropped.
std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    if (s[i] == ' ' || s[i] == '\t') {
      ++i;
    } else if (IsIdent(s[i]) || static_cast<unsigned char>(s[i]) >= 0x80) {
      size_t j = i;
      while (j < s.size() && (IsIdent(s[j]) || static_cast<unsigned char>(s[j]) >= 0x80)) ++j;
      out.emplace_back(s.substr(i, j - i));
      i = j;
    } else {
      out.emplace_back(1, s[i]);
      ++i;
    }
  }
  return out;
}

bool IsName(const std::string& w) {
  return !w.empty() && (IsIdent(w[0]) || static_cast<unsigned char>(w[0]) >= 0x80) &&
         !std::isdigit(static_cast<unsigned char>(w[0]));
}

// A dotted name at w[*i]: "a . b . c" -> "a.b.c"; empty if none.
std::string DottedName(const std::vector<std::string>& w, size_t* i) {
  std::string name;
  while (*i < w.size() && IsName(w[*i])) {
    name += w[(*i)++];
    if (*i + 1 < w.size() && w[*i] == "." && IsName(w[*i + 1])) {
      name += '.';
      ++*i;
    } else {
      break;
    }
  }
  return name;
}

// One simple statement; appends what it imports.
void ParseStatement(std::string_view stmt, std::vector<PyImport>* out) {
  std::vector<std::string> w = Words(stmt);
  if (w.empty()) return;
  size_t i = 1;
  if (w[0] == "import") {
    while (i < w.size()) {
      PyImport imp;
      imp.module = DottedName(w, &i);
      if (imp.module.empty()) return;
      out->push_back(std::move(imp));
      if (i < w.size() && w[i] == "as") i += 2;
      if (i < w.size() && w[i] == ",") {
        ++i;
        continue;
      }
      return;
    }
  } else if (w[0] == "from") {
    PyImport imp;
    imp.from = true;
    while (i < w.size() && w[i] == ".") {
      ++imp.level;
      ++i;
    }
    if (i < w.size() && w[i] != "import") imp.module = DottedName(w, &i);
    if (i >= w.size() || w[i] != "import" || (imp.level == 0 && imp.module.empty())) return;
    ++i;
    for (; i < w.size(); ++i) {
      if (w[i] == "(" || w[i] == ")" || w[i] == ",") continue;
      if (w[i] == "*") {
        imp.names.push_back("*");
        continue;
      }
      if (!IsName(w[i])) break;
      imp.names.push_back(w[i]);
      if (i + 2 < w.size() && w[i + 1] == "as") i += 2;
    }
    if (!imp.names.empty()) out->push_back(std::move(imp));
  }
}

bool StartsWithWord(std::string_view s, std::string_view word) {
  return s.substr(0, word.size()) == word && (s.size() == word.size() || !IsIdent(s[word.size()]));
}

}  // namespace

std::vector<PyImport> ParsePythonImports(std::string_view source) {
  std::vector<PyImport> out;
  // Open blocks: (indent of the header, whether its body runs on import).
  std::vector<std::pair<int, bool>> blocks;
  size_t not_run = 0;  // open blocks whose bodies do not run on import
  bool full = false;
  LogicalLines(source, [&](int indent, std::string_view text) {
    if (full) return;
    while (!blocks.empty() && blocks.back().first >= indent) {
      not_run -= blocks.back().second ? 0 : 1;
      blocks.pop_back();
    }
    text.remove_prefix(std::min(text.find_first_not_of(' '), text.size()));
    while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
    static constexpr std::string_view kHeaders[] = {"def", "async", "class", "if", "elif", "else", "try",
                                                    "except", "finally", "for", "while", "with", "match", "case"};
    bool header = text.ends_with(':') &&
                  std::any_of(std::begin(kHeaders), std::end(kHeaders),
                              [&](std::string_view h) { return StartsWithWord(text, h); });
    if (header) {
      std::string_view after_async = text.substr(std::min<size_t>(5, text.size()));
      after_async.remove_prefix(std::min(after_async.find_first_not_of(' '), after_async.size()));
      bool runs = !StartsWithWord(text, "def") &&
                  !(StartsWithWord(text, "async") && StartsWithWord(after_async, "def"));
      if (StartsWithWord(text, "if") &&
          (text.find("TYPE_CHECKING") != std::string_view::npos || text.find("__name__") != std::string_view::npos)) {
        runs = false;
      }
      blocks.emplace_back(indent, runs);
      not_run += runs ? 0 : 1;
      return;
    }
    if (not_run > 0) return;
    // Simple statements separated by ';' (strings are gone, so each ';' is one).
    size_t start = 0;
    while (start <= text.size() && out.size() < kMaxPyImports) {
      size_t semi = text.find(';', start);
      std::string_view stmt = text.substr(start, semi == std::string_view::npos ? std::string_view::npos : semi - start);
      stmt.remove_prefix(std::min(stmt.find_first_not_of(' '), stmt.size()));
      if (StartsWithWord(stmt, "import") || StartsWithWord(stmt, "from")) ParseStatement(stmt, &out);
      if (semi == std::string_view::npos) break;
      start = semi + 1;
    }
    if (out.size() >= kMaxPyImports) {
      out.resize(kMaxPyImports);
      full = true;
    }
  });
  return out;
}

PyCollector::PyCollector(std::string_view name, uint64_t size)
    : keep_(name.size() > 3 && name.ends_with(".py") && size > 0 && size <= kMaxPySourceBytes) {}

void PyCollector::Add(uint64_t offset, std::span<const uint8_t> data) {
  if (!keep_) return;
  if (offset != bytes_.size()) {  // a hole or out of order: not a source file
    keep_ = false;
    bytes_.clear();
    return;
  }
  bytes_.append(reinterpret_cast<const char*>(data.data()), data.size());
}

std::shared_ptr<const std::vector<PyImport>> PyCollector::Finish() {
  if (!keep_ || bytes_.empty()) return nullptr;
  auto imports = std::make_shared<std::vector<PyImport>>(ParsePythonImports(bytes_));
  bytes_.clear();
  bytes_.shrink_to_fit();
  if (imports->empty()) return nullptr;
  return imports;
}

}  // namespace ferry::builder
