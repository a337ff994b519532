#include "mlic_layers/layer_param.hpp"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/message.h>
#include <google/protobuf/text_format.h>

#include <vector>

#include "glog/logging.h"

namespace caffe {

namespace {

// Collects the text-format parser's complaints so they reach the user in one message.
class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
      const std::string& message) override {
    errors_.push_back("column " + ToString(column + 1) + ": " + message);
    (void)line;  // param_str is one logical line in a prototxt
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
      const std::string& message) override {
    AddError(line, column, message);
  }
  std::string Joined() const {
    std::string all;
    for (size_t i = 0; i < errors_.size(); ++i) all += (i ? "; " : "") + errors_[i];
    return all;
  }

 private:
  std::vector<std::string> errors_;
};

}  // namespace

void ThrowLayerParamError(const LayerParameter& param, const std::string& field,
    const std::string& reason) {
  const std::string what = "layer \"" + param.name() + "\" (" + param.type() + "): " +
      field + ": " + reason;
  LOG(ERROR) << what;
  throw LayerParamError(what);
}

void ParseLayerParam(const LayerParameter& param, google::protobuf::Message* message) {
  const std::string& text = param.python_param().param_str();
  google::protobuf::TextFormat::Parser parser;
  CollectErrors errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, message)) {
    ThrowLayerParamError(param, "python_param.param_str",
        "cannot parse \"" + text + "\" as " + message->GetTypeName() + ": " + errors.Joined());
  }
}

void CheckBlobCount(const LayerParameter& param, const char* what, int actual,
    int min_count, int max_count) {
  if (actual >= min_count && actual <= max_count) return;
  const std::string expected = min_count == max_count ? ToString(min_count) :
      ToString(min_count) + " to " + ToString(max_count);
  ThrowLayerParamError(param, what, "takes " + expected + " blob(s), got " + ToString(actual));
}

}  // namespace caffe
