#include "builder/python_imports.h"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <set>

#include "builder/elf_loads.h"

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

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

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

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

std::string Basename(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

const TreeNode* Child(const TreeNode* dir, const std::string& name) {
  if (dir == nullptr || !S_ISDIR(dir->mode)) return nullptr;
  auto it = dir->children.find(name);
  return it == dir->children.end() ? nullptr : it->second.get();
}

const TreeNode* RegularChild(const TreeNode* dir, const std::string& name) {
  const TreeNode* n = Child(dir, name);
  return n != nullptr && S_ISREG(n->mode) ? n : nullptr;
}

// Children of `dir` named PREFIX...SUFFIX that are regular files.
std::vector<std::pair<std::string, const TreeNode*>> Matching(const TreeNode* dir, const std::string& prefix,
                                                              std::string_view suffix) {
  std::vector<std::pair<std::string, const TreeNode*>> out;
  if (dir == nullptr || !S_ISDIR(dir->mode)) return out;
  for (auto it = dir->children.lower_bound(prefix);
       it != dir->children.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    const std::string& n = it->first;
    if (n.size() >= prefix.size() + suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        S_ISREG(it->second->mode)) {
      out.emplace_back(n, it->second.get());
    }
  }
  return out;
}

// A module found in a directory: a package's directory, or its file.
struct Found {
  const TreeNode* package = nullptr;  // a package directory
  const TreeNode* file = nullptr;     // NAME.py or an extension module
  const TreeNode* dir = nullptr;      // the directory holding `file`
  std::string stem;                   // NAME, for its __pycache__
};

Found FindIn(const TreeNode* dir, const std::string& n) {
  Found f;
  const TreeNode* d = Child(dir, n);
  if (d != nullptr && S_ISDIR(d->mode)) {
    f.package = d;
    return f;
  }
  auto ext = Matching(dir, n + ".", ".so");
  if (ext.empty()) {
    if (const TreeNode* so = RegularChild(dir, n + ".so")) ext.emplace_back(n + ".so", so);
  }
  if (!ext.empty()) {
    f.file = ext.front().second;
    return f;
  }
  // The source may be a symbolic link (Debian's sitecustomize.py points
  // into /etc): the interpreter follows it, and reads the compiled file.
  if (const TreeNode* py = Child(dir, n + ".py"); py != nullptr && (S_ISREG(py->mode) || S_ISLNK(py->mode))) {
    f.file = py;
    f.dir = dir;
    f.stem = n;
  }
  return f;
}

// The files a module's import reads, for an interpreter whose cache tag
// is `tag` ("" when unknown: the only compiled file, else the source).
void ModuleFiles(const Found& f, const std::string& tag, std::vector<const TreeNode*>* out) {
  const TreeNode* dir = f.dir;
  std::string stem = f.stem;
  const TreeNode* source = f.file;
  if (f.package != nullptr) {
    dir = f.package;
    stem = "__init__";
    source = RegularChild(dir, "__init__.py");
    if (source == nullptr) return;  // a namespace package: nothing to read
  }
  if (dir == nullptr) {  // an extension module
    out->push_back(source);
    return;
  }
  const TreeNode* cache = Child(dir, "__pycache__");
  if (!tag.empty()) {
    if (const TreeNode* pyc = RegularChild(cache, stem + "." + tag + ".pyc")) {
      out->push_back(pyc);
      return;
    }
  } else {
    auto pycs = Matching(cache, stem + ".", ".pyc");
    if (pycs.size() == 1) {
      out->push_back(pycs.front().second);
      return;
    }
  }
  if (S_ISREG(source->mode)) out->push_back(source);  // a link's target is elsewhere
}

// "python3.11" if a component of `path` is pythonX.Y, else "".
std::string PythonVersion(const std::string& path) {
  size_t pos = 0;
  while ((pos = path.find("/python", pos)) != std::string::npos) {
    size_t end = path.find('/', pos + 1);
    std::string c = path.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
    size_t dot = c.find('.');
    if (dot != std::string::npos && dot > 6 && dot + 1 < c.size() &&
        std::all_of(c.begin() + 6, c.begin() + static_cast<long>(dot), IsDigit) &&
        std::all_of(c.begin() + static_cast<long>(dot) + 1, c.end(), IsDigit)) {
      return c;
    }
    pos += 7;
  }
  return "";
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

void PyModuleIndex::AddDirectory(const std::string& path, const TreeNode& dir) {
  std::string base = Basename(path);
  std::string parent = Basename(Dirname(path));
  bool stdlib = (parent == "lib" || parent == "lib64") && base.starts_with("python") && PythonVersion(path) == base;
  bool dynload = base == "lib-dynload" && !PythonVersion(path).empty();
  if (stdlib || dynload || base == "site-packages" || base == "dist-packages") {
    roots_.push_back({path, &dir, PythonVersion(path)});
  }
}

std::vector<PyModuleIndex::Record> PyModuleIndex::Resolve(const std::string& path,
                                                          const std::vector<PyImport>& imports) const {
  const std::string dir_path = Dirname(path);
  const std::string name = Basename(path);
  if (!name.ends_with(".py")) return {};
  const std::string stem = name.substr(0, name.size() - 3);
  // The module's package (its dotted parts) and the directory above it,
  // where its top-level package was found.
  std::vector<std::pair<std::string, const TreeNode*>> chain;  // dir path -> node, root first
  {
    std::string p;
    const TreeNode* n = &root_;
    chain.emplace_back("", n);
    size_t start = 1;
    while (start <= dir_path.size() && !dir_path.empty()) {
      size_t slash = dir_path.find('/', start);
      std::string c = dir_path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      n = Child(n, c);
      if (n == nullptr) return {};
      p += "/" + c;
      chain.emplace_back(p, n);
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
  }
  const TreeNode* module_dir = chain.back().second;
  std::vector<const TreeNode*> package;  // package directories, innermost last
  size_t top = chain.size();
  while (top > 1 && RegularChild(chain[top - 1].second, "__init__.py") != nullptr) --top;
  for (size_t k = top; k < chain.size(); ++k) package.push_back(chain[k].second);
  const TreeNode* home = chain[top - 1].second;  // where the top-level package lives
  const std::string version = PythonVersion(path);
  std::vector<const TreeNode*> search{home};
  for (int pass = 0; pass < 2; ++pass) {
    for (const Root& r : roots_) {
      if ((pass == 0) != (r.version == version && !version.empty())) continue;
      if (std::find(search.begin(), search.end(), r.dir) == search.end()) search.push_back(r.dir);
    }
  }

  // What one import statement brings, as Found modules in import order.
  auto resolve = [&](const PyImport& imp) {
    std::vector<Found> found;
    std::vector<std::string> parts;
    for (size_t s = 0; s <= imp.module.size() && !imp.module.empty();) {
      size_t dot = imp.module.find('.', s);
      parts.push_back(imp.module.substr(s, dot == std::string::npos ? std::string::npos : dot - s));
      if (dot == std::string::npos) break;
      s = dot + 1;
    }
    const TreeNode* base = nullptr;  // the package the names are looked up in
    if (imp.level > 0) {
      if (static_cast<size_t>(imp.level) > package.size()) return found;
      base = package[package.size() - static_cast<size_t>(imp.level)];
    }
    for (size_t k = 0; k < parts.size(); ++k) {
      Found f;
      if (k == 0 && base == nullptr) {
        for (const TreeNode* d : search) {
          f = FindIn(d, parts[0]);
          if (f.package != nullptr || f.file != nullptr) break;
        }
      } else {
        f = FindIn(base, parts[k]);
      }
      if (f.package == nullptr && f.file == nullptr) return found;
      found.push_back(f);
      if (f.package == nullptr) {
        if (k + 1 < parts.size()) return found;
        base = nullptr;
        break;
      }
      base = f.package;
    }
    if (imp.from && base != nullptr) {  // names that are submodules of the package
      for (const std::string& n : imp.names) {
        if (n == "*") continue;
        Found f = FindIn(base, n);
        if (f.package != nullptr || f.file != nullptr) found.push_back(f);
      }
    }
    return found;
  };

  std::vector<std::pair<const TreeNode*, std::string>> readers;  // file, its cache tag
  const TreeNode* cache = Child(module_dir, "__pycache__");
  for (const auto& [n, pyc] : Matching(cache, stem + ".", ".pyc")) {
    readers.emplace_back(pyc, n.substr(stem.size() + 1, n.size() - stem.size() - 5));
  }
  const TreeNode* self = RegularChild(module_dir, name);
  if (readers.empty() && self != nullptr) readers.emplace_back(self, "");

  std::vector<std::vector<Found>> per_import;
  for (const PyImport& imp : imports) per_import.push_back(resolve(imp));
  std::vector<Record> out;
  for (const auto& [file, tag] : readers) {
    Record r{file, {}};
    std::set<const TreeNode*> seen{file, self};
    for (const auto& found : per_import) {
      for (const Found& f : found) {
        std::vector<const TreeNode*> files;
        ModuleFiles(f, tag, &files);
        for (const TreeNode* x : files) {
          if (r.deps.size() < kMaxLoads && seen.insert(x).second) r.deps.push_back(x);
        }
      }
    }
    if (!r.deps.empty()) out.push_back(std::move(r));
  }
  return out;
}

std::vector<const TreeNode*> PyModuleIndex::Interpreter(const std::string& path) const {
  const std::string name = Basename(path);
  const std::string version = PythonVersion(path);
  if (version.empty() || name != version || Basename(Dirname(path)) != "bin") return {};
  const size_t dot = version.find('.');
  const int minor = std::atoi(version.c_str() + dot + 1);
  const std::string tag = "cpython-" + version.substr(6, dot - 6) + version.substr(dot + 1);
  // What the interpreter imports by itself before any code of the
  // program's: the codec machinery (encodings names its codecs at run
  // time, so its imports do not show them; UTF-8 is the one every start
  // in a UTF-8 or C locale looks up), and site's hooks. From 3.11 on, site
  // and what it imports are frozen into the interpreter; before, they are
  // read from the library like any module.
  std::vector<std::string> modules{"encodings", "encodings.utf_8", "sitecustomize", "usercustomize"};
  if (version.starts_with("python3.") && minor < 11) modules.push_back("site");
  // As sys.path has them: its own library first, then site and dist packages.
  std::vector<const Root*> order;
  for (const Root& r : roots_) if (r.version == version) order.push_back(&r);
  for (const Root& r : roots_) {
    if (r.version != version && Basename(r.path).ends_with("-packages")) order.push_back(&r);
  }
  std::vector<const TreeNode*> out;
  for (const std::string& module : modules) {
    const size_t sep = module.find('.');
    const std::string first = module.substr(0, sep);
    for (const Root* r : order) {
      Found f = FindIn(r->dir, first);
      if (f.package != nullptr && sep != std::string::npos) f = FindIn(f.package, module.substr(sep + 1));
      if (f.package == nullptr && f.file == nullptr) continue;
      std::vector<const TreeNode*> files;
      ModuleFiles(f, tag, &files);
      for (const TreeNode* x : files) {
        if (out.size() < kMaxLoads && std::find(out.begin(), out.end(), x) == out.end()) out.push_back(x);
      }
      break;
    }
  }
  return out;
}

}  // namespace ferry::builder
