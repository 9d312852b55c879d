// UringWriter: appends to files and makes them durable through io_uring.
//
// One ring, used by one thread at a time (the node cache's writer). A call
// submits the gathered write and the fdatasync that must follow it as one
// linked chain, so the usual append costs a single io_uring_enter.
// Not thread-safe.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>

#include "chunkstore/status.h"

namespace ferry::chunkstore {

class UringWriter {
 public:
  // kIoError (with errno) if the kernel refuses a ring.
  static Result<std::unique_ptr<UringWriter>> Create();
  ~UringWriter();
  UringWriter(const UringWriter&) = delete;
  UringWriter& operator=(const UringWriter&) = delete;

  // Writes the buffers of `iov`, in order, at `offset` of `fd`, then
  // fdatasyncs `fd`. OK only if every byte was written and the sync
  // succeeded; otherwise kIoError with the errno (ENOSPC for a full disk; a
  // write that stops short without an errno is reported as ENOSPC, which is
  // what the kernel means by it). After a failure the file may hold any
  // prefix of the data beyond `offset`. `what` names the file in messages.
  Status WriteAndSync(int fd, uint64_t offset, std::span<const iovec> iov,
                      const char* what);

 private:
  UringWriter() = default;
  // Submits what is queued and reaps `n` completions into `res`.
  Status SubmitAndReap(int n, int* res);

  io_uring ring_{};
  bool ring_ok_ = false;
};

}  // namespace ferry::chunkstore
