#include "builder/tree.h"

#include <sys/stat.h>

namespace ferry::builder {
namespace {

std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// Removes everything below `dir` that lower layers put there.
void PurgeLower(TreeNode& dir, int layer) {
  for (auto it = dir.children.begin(); it != dir.children.end();) {
    if (it->second->layer < layer) {
      it = dir.children.erase(it);
    } else {
      if (S_ISDIR(it->second->mode)) PurgeLower(*it->second, layer);
      ++it;
    }
  }
}

}  // namespace

Tree::Tree() : root_(std::make_shared<TreeNode>()) {
  root_->mode = S_IFDIR | 0755;
}

Result<std::vector<std::string>> Tree::SplitPath(std::string_view path) {
  std::string shown = "'" + Printable(path) + "'";
  if (path.size() > 4095) return InvalidArgumentError("entry " + shown + ": path too long");
  if (path.find('\0') != std::string_view::npos) {
    return InvalidArgumentError("entry " + shown + ": NUL byte in path");
  }
  if (!path.empty() && path[0] == '/') {
    return InvalidArgumentError("entry " + shown + ": absolute path would land outside the image root");
  }
  std::vector<std::string> comps;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view c = path.substr(start, end - start);
    if (c == "..") {
      return InvalidArgumentError("entry " + shown + ": '..' would land outside the image root");
    }
    if (c.size() > 255) return InvalidArgumentError("entry " + shown + ": name longer than 255 bytes");
    if (!c.empty() && c != ".") comps.emplace_back(c);
    start = end + 1;
  }
  return comps;
}

Result<TreeNode*> Tree::ParentDir(const std::vector<std::string>& comps, std::string_view path,
                                  bool create) {
  TreeNode* dir = root_.get();
  for (size_t i = 0; i + 1 < comps.size(); ++i) {
    auto it = dir->children.find(comps[i]);
    if (it == dir->children.end()) {
      if (!create) return NotFoundError("entry '" + Printable(path) + "': parent does not exist");
      auto node = std::make_shared<TreeNode>();
      node->mode = S_IFDIR | 0755;
      node->layer = layer_;
      it = dir->children.emplace(comps[i], std::move(node)).first;
    }
    if (!S_ISDIR(it->second->mode)) {
      return InvalidArgumentError("entry '" + Printable(path) + "': parent '" +
                                  Printable(comps[i]) +
                                  "' is not a directory (a link cannot be used to escape)");
    }
    dir = it->second.get();
  }
  return dir;
}

Status Tree::Put(std::string_view path, std::shared_ptr<TreeNode> node) {
  ASSIGN_OR_RETURN(auto comps, SplitPath(path));
  if (comps.empty()) {
    if (!S_ISDIR(node->mode)) {
      return InvalidArgumentError("entry '" + Printable(path) + "': the root must be a directory");
    }
    node->children = std::move(root_->children);
    if (node->base_slot == 0) node->base_slot = root_->base_slot;
    root_ = std::move(node);
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(TreeNode* dir, ParentDir(comps, path, true));
  auto& slot = dir->children[comps.back()];
  if (slot && S_ISDIR(slot->mode) && S_ISDIR(node->mode)) {
    node->children = std::move(slot->children);
    if (node->base_slot == 0) node->base_slot = slot->base_slot;
  }
  slot = std::move(node);
  return Status::Ok();
}

Result<std::shared_ptr<TreeNode>> Tree::Get(std::string_view path) {
  ASSIGN_OR_RETURN(auto comps, SplitPath(path));
  if (comps.empty()) return root_;
  ASSIGN_OR_RETURN(TreeNode* dir, ParentDir(comps, path, false));
  auto it = dir->children.find(comps.back());
  if (it == dir->children.end()) return NotFoundError("'" + Printable(path) + "' does not exist");
  return it->second;
}

Status Tree::Reroot(std::string_view path) {
  ASSIGN_OR_RETURN(std::shared_ptr<TreeNode> node, Get(path));
  if (!S_ISDIR(node->mode)) {
    return InvalidArgumentError("'" + Printable(path) + "' is not a directory");
  }
  root_ = std::move(node);
  return Status::Ok();
}

Result<bool> Tree::ApplyWhiteout(std::string_view path, int layer) {
  ASSIGN_OR_RETURN(auto comps, SplitPath(path));
  if (comps.empty() || comps.back().rfind(".wh.", 0) != 0) return false;
  ASSIGN_OR_RETURN(TreeNode* dir, ParentDir(comps, path, true));
  if (comps.back() == ".wh..wh..opq") {
    PurgeLower(*dir, layer);
    return true;
  }
  std::string target = comps.back().substr(4);
  auto it = dir->children.find(target);
  if (it != dir->children.end() && it->second->layer < layer) dir->children.erase(it);
  return true;
}

}  // namespace ferry::builder
