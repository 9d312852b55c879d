#include "snapshotter/counters.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <string>

namespace ferry::snapshotter {

bool SetCounterField(google::protobuf::Message* msg, std::string_view name, uint64_t value) {
  const google::protobuf::FieldDescriptor* field =
      msg->GetDescriptor()->FindFieldByName(std::string(name));
  if (field == nullptr || field->is_repeated() ||
      field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_UINT64) {
    return false;
  }
  msg->GetReflection()->SetUInt64(msg, field, value);
  return true;
}

}  // namespace ferry::snapshotter
