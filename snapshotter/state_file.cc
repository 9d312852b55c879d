#include "snapshotter/state_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

namespace ferry::snapshotter {

Status SaveStateFile(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("create " + tmp);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status st = ErrnoError("write " + tmp);
      close(fd);
      return st;
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) {
    Status st = ErrnoError("fsync " + tmp);
    close(fd);
    return st;
  }
  if (close(fd) != 0) return ErrnoError("close " + tmp);
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename " + tmp);
  return Status::Ok();
}

}  // namespace ferry::snapshotter
