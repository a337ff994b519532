#ifndef MLIC_LAYERS_LAYER_PARAM_HPP_
#define MLIC_LAYERS_LAYER_PARAM_HPP_

#include <sstream>
#include <stdexcept>
#include <string>

#include "caffe/proto/caffe.pb.h"

namespace google { namespace protobuf { class Message; } }

namespace caffe {

// Raised for a bad layer definition. An exception rather than glog's CHECK, which aborts:
// Boost.Python turns it into a RuntimeError in pycaffe, and the caffe tool prints it and stops.
class LayerParamError : public std::runtime_error {
 public:
  explicit LayerParamError(const std::string& what) : std::runtime_error(what) {}
};

// Logs and throws "layer "NAME" (TYPE): FIELD: REASON".
[[noreturn]] void ThrowLayerParamError(const LayerParameter& param,
    const std::string& field, const std::string& reason);

// Parses python_param.param_str as the text format of `message`; an unknown field or a
// malformed value throws, naming the layer, the field and the position in param_str.
void ParseLayerParam(const LayerParameter& param, google::protobuf::Message* message);

// Layers check their bottom and top counts themselves (instead of Caffe's ExactNum*Blobs,
// which aborts) so that a wrong count is a LayerParamError like every other set-up error.
void CheckBlobCount(const LayerParameter& param, const char* what, int actual,
    int min_count, int max_count);

template <typename T>
std::string ToString(const T& value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

}  // namespace caffe

#endif  // MLIC_LAYERS_LAYER_PARAM_HPP_
