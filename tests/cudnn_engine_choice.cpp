// Which layer class Caffe's layer factory creates for each engine, in CPU and in GPU mode, and
// whether a net of cuDNN-capable layers runs forward in CPU mode. Compiled by
// tests/test_caffe_patches.py against a CUDA + cuDNN build of Caffe, with the factory of the
// patched source (LAYER_FACTORY_CPP) put in place of the one the library was built with, so the
// patch is checked without rebuilding Caffe. Runs without a GPU: in GPU mode it only constructs
// layers (cuDNN handles are made in LayerSetUp, which it never calls).
//
// Prints one line per layer and mode: "<mode> <case> <class>", then "forward <max |sum-1|>".
#include <cxxabi.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <typeinfo>
#include <vector>

#include "caffe/layer_factory.hpp"

// The patched layer_factory.cpp registers its creators through this macro; here they replace
// the library's (which AddCreator would refuse as registered twice).
#undef REGISTER_LAYER_CREATOR
#define REGISTER_LAYER_CREATOR(type, creator)                               \
  static const bool replaced_##type = ReplaceCreators(#type, creator<float>, \
                                                      creator<double>)

namespace caffe {
static bool ReplaceCreators(const char* type, LayerRegistry<float>::Creator f,
                            LayerRegistry<double>::Creator d) {
  if (!LayerRegistry<float>::Registry().count(type)) {
    std::fprintf(stderr, "the library registers no %s layer\n", type);
    std::exit(2);
  }
  LayerRegistry<float>::Registry()[type] = f;
  LayerRegistry<double>::Registry()[type] = d;
  return true;
}
}  // namespace caffe

#include LAYER_FACTORY_CPP

#include <google/protobuf/text_format.h>

#include "caffe/caffe.hpp"

using caffe::Caffe;

namespace {

std::string ClassName(const caffe::Layer<float>& layer) {
  int status = 0;
  char* name = abi::__cxa_demangle(typeid(layer).name(), 0, 0, &status);
  std::string result = status == 0 ? name : typeid(layer).name();
  std::free(name);
  return result;
}

caffe::LayerParameter Parse(const std::string& text) {
  caffe::LayerParameter param;
  if (!google::protobuf::TextFormat::ParseFromString(text, &param)) {
    std::fprintf(stderr, "bad layer text: %s\n", text.c_str());
    std::exit(2);
  }
  return param;
}

struct Case {
  const char* name;
  const char* layer;
};

const Case kCases[] = {
  {"conv", "name: 'c' type: 'Convolution' convolution_param { num_output: 2 kernel_size: 3 }"},
  {"conv_dilated", "name: 'c' type: 'Convolution' "
                   "convolution_param { num_output: 2 kernel_size: 3 dilation: 2 }"},
  {"conv_cudnn", "name: 'c' type: 'Convolution' "
                 "convolution_param { num_output: 2 kernel_size: 3 engine: CUDNN }"},
  {"conv_caffe", "name: 'c' type: 'Convolution' "
                 "convolution_param { num_output: 2 kernel_size: 3 engine: CAFFE }"},
  {"deconv", "name: 'd' type: 'Deconvolution' convolution_param { num_output: 2 kernel_size: 3 }"},
  {"pool_ave", "name: 'p' type: 'Pooling' pooling_param { pool: AVE kernel_size: 2 }"},
  {"pool_max", "name: 'p' type: 'Pooling' pooling_param { pool: MAX kernel_size: 2 }"},
  {"lrn", "name: 'n' type: 'LRN' lrn_param { local_size: 5 }"},
  {"lrn_within", "name: 'n' type: 'LRN' lrn_param { local_size: 5 norm_region: WITHIN_CHANNEL }"},
  {"relu", "name: 'r' type: 'ReLU'"},
  {"relu_cudnn", "name: 'r' type: 'ReLU' relu_param { engine: CUDNN }"},
  {"sigmoid", "name: 's' type: 'Sigmoid'"},
  {"tanh", "name: 't' type: 'TanH'"},
  {"softmax", "name: 's' type: 'Softmax'"},
  {"softmax_cudnn", "name: 's' type: 'Softmax' softmax_param { engine: CUDNN }"},
};

// Convolution, ReLU, average pooling, LRN, Sigmoid, TanH and Softmax, all with engine DEFAULT.
const char kNet[] =
  "layer { name: 'data' type: 'Input' top: 'data' "
  "        input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }"
  "layer { name: 'conv' type: 'Convolution' bottom: 'data' top: 'conv' "
  "        convolution_param { num_output: 4 kernel_size: 3 "
  "                            weight_filler { type: 'gaussian' std: 0.5 } } }"
  "layer { name: 'relu' type: 'ReLU' bottom: 'conv' top: 'conv' }"
  "layer { name: 'pool' type: 'Pooling' bottom: 'conv' top: 'pool' "
  "        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }"
  "layer { name: 'lrn' type: 'LRN' bottom: 'pool' top: 'lrn' lrn_param { local_size: 3 } }"
  "layer { name: 'sigmoid' type: 'Sigmoid' bottom: 'lrn' top: 'sigmoid' }"
  "layer { name: 'tanh' type: 'TanH' bottom: 'sigmoid' top: 'tanh' }"
  "layer { name: 'prob' type: 'Softmax' bottom: 'tanh' top: 'prob' }";

}  // namespace

int main() {
  std::setvbuf(stdout, NULL, _IOLBF, 0);  // every line out before an abort
  const Caffe::Brew modes[] = {Caffe::CPU, Caffe::GPU};
  for (Caffe::Brew mode : modes) {
    Caffe::set_mode(mode);
    for (const Case& c : kCases) {
      boost::shared_ptr<caffe::Layer<float> > layer =
          caffe::LayerRegistry<float>::CreateLayer(Parse(c.layer));
      std::printf("%s %s %s\n", mode == Caffe::CPU ? "cpu" : "gpu", c.name,
                  ClassName(*layer).c_str());
    }
  }

  Caffe::set_mode(Caffe::CPU);
  caffe::NetParameter net_param;
  if (!google::protobuf::TextFormat::ParseFromString(kNet, &net_param)) return 2;
  net_param.mutable_state()->set_phase(caffe::TEST);
  caffe::Net<float> net(net_param);
  float* data = net.input_blobs()[0]->mutable_cpu_data();
  for (int i = 0; i < net.input_blobs()[0]->count(); ++i) data[i] = std::sin(0.7f * i);
  net.Forward();
  const caffe::Blob<float>& prob = *net.blob_by_name("prob");
  // Softmax over the channels: at every position they sum to 1.
  float worst = 0;
  const int spatial = prob.height() * prob.width();
  for (int n = 0; n < prob.num(); ++n) {
    for (int s = 0; s < spatial; ++s) {
      float sum = 0;
      for (int c = 0; c < prob.channels(); ++c) {
        sum += prob.cpu_data()[(n * prob.channels() + c) * spatial + s];
      }
      worst = std::max(worst, std::fabs(sum - 1));
    }
  }
  std::printf("forward %g\n", worst);
  return 0;
}
