// PyModuleIndex: where the interpreter finds a module, as the files it reads
// (the parser of import statements is python_imports.cc).
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "builder/elf_loads.h"  // kMaxLoads
#include "builder/python_imports.h"

namespace ferry::builder {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

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
