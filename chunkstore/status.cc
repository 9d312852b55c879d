#include "chunkstore/status.h"

#include <cstring>

namespace ferry {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kDeadlineExceeded: return "DeadlineExceeded";
    case StatusCode::kFailedPrecondition: return "FailedPrecondition";
    case StatusCode::kAlreadyExists: return "AlreadyExists";
    case StatusCode::kIoError: return "IoError";
    case StatusCode::kInternal: return "Internal";
  }
  return "Unknown";
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

Status Status::Annotate(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_, sys_errno_);
}

Status NotFoundError(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
Status InvalidArgumentError(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
Status CorruptionError(std::string msg) { return {StatusCode::kCorruption, std::move(msg)}; }
Status UnavailableError(std::string msg) { return {StatusCode::kUnavailable, std::move(msg)}; }
Status FailedPreconditionError(std::string msg) { return {StatusCode::kFailedPrecondition, std::move(msg)}; }
Status AlreadyExistsError(std::string msg) { return {StatusCode::kAlreadyExists, std::move(msg)}; }
Status InternalError(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }

Status ErrnoError(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  if (err == ENOENT) return Status(StatusCode::kNotFound, msg, err);
  if (err == EEXIST) return Status(StatusCode::kAlreadyExists, msg, err);
  return Status(StatusCode::kIoError, msg, err);
}

}  // namespace ferry
