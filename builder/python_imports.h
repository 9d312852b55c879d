// What a Python module imports as it is imported. The builder records, per
// module file the interpreter reads (its compiled __pycache__/NAME.TAG.pyc,
// or NAME.py when there is none), the files of the modules its import
// statements name (the LOADS section of the image, docs/format.md 5.11):
// on the first read of a module ferry then fetches what it imports, and
// what those import, together, one round trip for a whole import tree
// instead of one per package directory.
//
// Only the statements that run when the module is imported count: those at
// module level, including inside `if`, `try`, `with`, `for` and class
// bodies, but not inside functions, under `if TYPE_CHECKING` or under
// `if __name__ == "__main__"`. Names that are not in the image (builtins,
// other platforms' modules) are left out. A hint: never an error.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "builder/tree.h"

namespace ferry::builder {

struct PyImport {
  int level = 0;                   // leading dots of a relative import
  std::string module;              // dotted name; empty in "from . import x"
  std::vector<std::string> names;  // a `from` import's names ("*" for all)
  bool from = false;               // a `from ... import ...` statement
};

// Sources larger than this are not parsed.
inline constexpr uint64_t kMaxPySourceBytes = 1u << 20;
// At most this many imports are kept per module.
inline constexpr size_t kMaxPyImports = 256;

// The import statements of a module's source that run at import time, in
// source order (at most kMaxPyImports). Tolerates any bytes: what does not
// parse is skipped.
std::vector<PyImport> ParsePythonImports(std::string_view source);

// Keeps a NAME.py file's bytes as a source reads them (in order, from
// offset 0), if at most kMaxPySourceBytes, so each file is read once.
class PyCollector {
 public:
  PyCollector(std::string_view name, uint64_t size);
  void Add(uint64_t offset, std::span<const uint8_t> data);
  // Its imports, if it is such a file and has any.
  std::shared_ptr<const std::vector<PyImport>> Finish();

 private:
  bool keep_;
  std::string bytes_;
};

// Where import statements find modules in one tree: the directory of the
// importing module's top-level package, then the library directories
// (.../lib/pythonX.Y, its lib-dynload, site-packages and dist-packages),
// those of the importer's Python version first. Modules are found as the
// interpreter does: a package directory (its __init__.py), an extension
// module (NAME.*.so), then NAME.py.
class PyModuleIndex {
 public:
  explicit PyModuleIndex(const TreeNode& root) : root_(root) {}
  // Offers a directory of the tree (absolute path, "" for the root).
  void AddDirectory(const std::string& path, const TreeNode& dir);

  struct Record {
    const TreeNode* file;               // a file the interpreter reads for the module
    std::vector<const TreeNode*> deps;  // the files of what it imports, in order
  };
  // For the module NAME.py at `path` that has `imports`: one record per
  // file the interpreter may read for it (each __pycache__/NAME.TAG.pyc,
  // or NAME.py if there is none), its deps the files of the modules
  // imported, as read by the same interpreter (NAME.TAG.pyc for the same
  // TAG, else NAME.py; extension modules). At most kMaxLoads deps each.
  std::vector<Record> Resolve(const std::string& path, const std::vector<PyImport>& imports) const;
  // For an interpreter at `path` (.../bin/pythonX.Y): the files of the
  // modules it imports by itself as it starts, before the program's own
  // code (the encodings package and its UTF-8 codec, sitecustomize and
  // usercustomize if present, and site before 3.11, which freezes it), as
  // it reads them (NAME.cpython-XY.pyc, else NAME.py), from its own library
  // and the site- and dist-packages directories. Empty for other paths.
  std::vector<const TreeNode*> Interpreter(const std::string& path) const;

 private:
  struct Root {
    std::string path;
    const TreeNode* dir;
    std::string version;  // "python3.11" for .../lib/python3.11 and its lib-dynload, else ""
  };
  const TreeNode& root_;
  std::vector<Root> roots_;
};

}  // namespace ferry::builder
