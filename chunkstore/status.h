// Status and Result<T>: how every ferry component reports failure.
//
// No exception crosses a component boundary; a failed call returns a Status
// whose code tells the caller what to do next:
//   kNotFound            the named object/file/entry does not exist
//   kInvalidArgument     the caller's input is malformed; do not retry
//   kCorruption          data failed a checksum or digest check, or a format
//                        is structurally invalid; do not serve it
//   kUnavailable         a transient failure; retrying may help
//   kDeadlineExceeded    the operation ran out of time; retrying may help
//   kFailedPrecondition  the system is not in a state where this can work
//   kAlreadyExists       the target already exists
//   kIoError             a local I/O error (errno is kept)
//   kInternal            a bug
// Status is [[nodiscard]]; discarding one on purpose takes IgnoreError().
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace ferry {

enum class StatusCode {
  kOk = 0,
  kNotFound,
  kInvalidArgument,
  kCorruption,
  kUnavailable,
  kDeadlineExceeded,
  kFailedPrecondition,
  kAlreadyExists,
  kIoError,
  kInternal,
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message, int sys_errno = 0)
      : code_(code), sys_errno_(sys_errno), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  // The errno that caused a kIoError (0 when not applicable).
  int sys_errno() const { return sys_errno_; }
  const std::string& message() const { return message_; }
  // "Corruption: chunk ab12..: digest mismatch"
  std::string ToString() const;
  // Prefixes context to the message, keeping code and errno.
  Status Annotate(const std::string& context) const;
  // Whether retrying the same call may succeed.
  bool IsRetryable() const {
    return code_ == StatusCode::kUnavailable ||
           code_ == StatusCode::kDeadlineExceeded;
  }
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  int sys_errno_ = 0;
  std::string message_;
};

// Helpers to build errors.
Status NotFoundError(std::string msg);
Status InvalidArgumentError(std::string msg);
Status CorruptionError(std::string msg);
Status UnavailableError(std::string msg);
Status FailedPreconditionError(std::string msg);
Status AlreadyExistsError(std::string msg);
Status InternalError(std::string msg);
// A kIoError for errno `err` about `what` ("open /x: No such file").
// ENOENT becomes kNotFound, ENOSPC/EDQUOT stay kIoError with errno kept.
Status ErrnoError(const std::string& what, int err = errno);

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace ferry

#define FERRY_CONCAT_INNER(a, b) a##b
#define FERRY_CONCAT(a, b) FERRY_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                 \
  do {                                        \
    ::ferry::Status _st = (expr);             \
    if (!_st.ok()) return _st;                \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(FERRY_CONCAT(_res_, __LINE__), lhs, expr)
