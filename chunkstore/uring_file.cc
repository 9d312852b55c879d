#include "chunkstore/uring_file.h"

#include <climits>
#include <string>
#include <vector>

namespace ferry::chunkstore {
namespace {
// A chain is at most one writev and one fdatasync.
constexpr unsigned kRingEntries = 4;
}  // namespace

Result<std::unique_ptr<UringWriter>> UringWriter::Create() {
  std::unique_ptr<UringWriter> w(new UringWriter());
  int rc = io_uring_queue_init(kRingEntries, &w->ring_, 0);
  if (rc < 0) return ErrnoError("io_uring_queue_init", -rc);
  w->ring_ok_ = true;
  return w;
}

UringWriter::~UringWriter() {
  if (ring_ok_) io_uring_queue_exit(&ring_);
}

Status UringWriter::SubmitAndReap(int n, int* res) {
  int rc;
  do {
    rc = io_uring_submit_and_wait(&ring_, n);
  } while (rc == -EINTR);
  if (rc < 0) return ErrnoError("io_uring_submit", -rc);
  for (int i = 0; i < n; ++i) {
    io_uring_cqe* cqe = nullptr;
    do {
      rc = io_uring_wait_cqe(&ring_, &cqe);
    } while (rc == -EINTR);
    if (rc < 0) return ErrnoError("io_uring_wait_cqe", -rc);
    // Completions of a linked chain arrive in submission order.
    res[cqe->user_data] = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
  }
  return Status::Ok();
}

Status UringWriter::WriteAndSync(int fd, uint64_t offset, std::span<const iovec> iov,
                                 const char* what) {
  // Copied because a short write advances into the middle of a buffer.
  std::vector<iovec> rest(iov.begin(), iov.end());
  size_t first = 0;
  for (;;) {
    while (first < rest.size() && rest[first].iov_len == 0) ++first;
    size_t count = std::min<size_t>(rest.size() - first, IOV_MAX);
    bool last = first + count == rest.size();
    size_t want = 0;
    for (size_t i = first; i < first + count; ++i) want += rest[i].iov_len;

    int n = 0;
    if (count > 0) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_writev(sqe, fd, rest.data() + first, count, offset);
      sqe->user_data = n++;
      // The sync runs only if the write completed in full.
      if (last) sqe->flags |= IOSQE_IO_LINK;
    }
    if (last) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
      sqe->user_data = n++;
    }
    int res[2] = {0, 0};
    RETURN_IF_ERROR(SubmitAndReap(n, res));
    if (count > 0) {
      if (res[0] < 0) return ErrnoError(std::string("write ") + what, -res[0]);
      if (res[0] == 0 && want > 0) return ErrnoError(std::string("write ") + what, ENOSPC);
      size_t done = static_cast<size_t>(res[0]);
      if (done < want) {  // short: skip what was written and go on
        offset += done;
        while (done > 0) {
          size_t take = std::min(done, rest[first].iov_len);
          rest[first].iov_base = static_cast<char*>(rest[first].iov_base) + take;
          rest[first].iov_len -= take;
          done -= take;
          if (rest[first].iov_len == 0) ++first;
        }
        continue;
      }
      offset += want;
      first += count;
    }
    if (last) {
      int sync = res[n - 1];
      if (sync < 0) return ErrnoError(std::string("fdatasync ") + what, -sync);
      return Status::Ok();
    }
  }
}

}  // namespace ferry::chunkstore
