#ifndef MLIC_LAYERS_TEST_LAYER_ERROR_HPP_
#define MLIC_LAYERS_TEST_LAYER_ERROR_HPP_

// The one way every layer test expects a layer to refuse its parameters or bottoms:
//
//   EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, bottom, top, "pooled_h: must be > 0"));
//
// The layer is made from `param` through Caffe's layer registry (so `param.type()` must be set),
// then set up, run forward and run backward, stopping after `step`. The assertion holds when the
// steps before `step` pass and `step` throws a LayerParamError whose message contains `expected`;
// otherwise its message says what happened instead (no error, an error at another step, or
// another message), so a failing test shows the layer's actual words.

#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/proto/caffe.pb.h"

#include "mlic_layers/layer_param.hpp"

namespace caffe {

enum class LayerStep { kSetUp, kForward, kBackward };

inline const char* LayerStepName(LayerStep step) {
  switch (step) {
    case LayerStep::kSetUp: return "set-up";
    case LayerStep::kForward: return "forward";
    case LayerStep::kBackward: return "backward";
  }
  return "?";
}

// `propagate_down` is used by the backward step; empty means every bottom.
template <typename Dtype>
::testing::AssertionResult LayerError(LayerStep step, const LayerParameter& param,
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top,
    const std::string& expected, vector<bool> propagate_down = vector<bool>()) {
  shared_ptr<Layer<Dtype> > layer = LayerRegistry<Dtype>::CreateLayer(param);
  if (propagate_down.empty()) propagate_down.assign(bottom.size(), true);
  LayerStep reached = LayerStep::kSetUp;
  try {
    layer->SetUp(bottom, top);
    if (step != LayerStep::kSetUp) {
      reached = LayerStep::kForward;
      layer->Forward(bottom, top);
      if (step == LayerStep::kBackward) {
        reached = LayerStep::kBackward;
        layer->Backward(top, propagate_down, bottom);
      }
    }
  } catch (const LayerParamError& e) {
    const std::string what = e.what();
    if (reached != step) {
      return ::testing::AssertionFailure() << "expected an error at " << LayerStepName(step)
          << " containing \"" << expected << "\", got one at " << LayerStepName(reached)
          << ": " << what;
    }
    if (what.find(expected) == std::string::npos) {
      return ::testing::AssertionFailure() << "the error at " << LayerStepName(step)
          << " does not contain \"" << expected << "\": " << what;
    }
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "no error through " << LayerStepName(step)
      << "; expected one containing \"" << expected << "\"";
}

}  // namespace caffe

#endif  // MLIC_LAYERS_TEST_LAYER_ERROR_HPP_
