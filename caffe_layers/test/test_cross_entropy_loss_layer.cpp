#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

#include "mlic_layers/cross_entropy_loss_layer.hpp"
#include "mlic_layers/layer_param.hpp"

#include "layer_error.hpp"

namespace caffe {

template <typename TypeParam>
class CrossEntropyLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  // WSDDN's shapes: image-level scores (N, 1, C, 1) against labels (N, C).
  CrossEntropyLossLayerTest()
      : prob_(new Blob<Dtype>(4, 1, 5, 1)), target_(new Blob<Dtype>(4, 5, 1, 1)),
        loss_(new Blob<Dtype>()) {
    vector<int> target_shape(2);
    target_shape[0] = 4;
    target_shape[1] = 5;
    target_->Reshape(target_shape);
    // Probabilities well away from the clamp at 1e-4 and 1 - 1e-4.
    FillerParameter filler_param;
    filler_param.set_min(0.1);
    filler_param.set_max(0.9);
    UniformFiller<Dtype> filler(filler_param);
    filler.Fill(prob_);
    Dtype* target = target_->mutable_cpu_data();
    for (int i = 0; i < target_->count(); ++i) target[i] = (i * 7 + i / 3) % 2;
    bottom_.push_back(prob_);
    bottom_.push_back(target_);
    top_.push_back(loss_);
  }
  virtual ~CrossEntropyLossLayerTest() { delete prob_; delete target_; delete loss_; }

  LayerParameter Param(const std::string& param_str) {
    LayerParameter param;
    param.set_name("loss");
    param.set_type("CrossEntropyLoss");
    param.mutable_python_param()->set_param_str(param_str);
    return param;
  }

  LayerParameter IgnoreParam(int ignore_label) {
    LayerParameter param = Param("");
    param.mutable_loss_param()->set_ignore_label(ignore_label);
    return param;
  }

  // The original fork's gradient w.r.t. p (clamped denominators), written out for the current
  // bottoms, with the ignored targets' zero.
  double ExpectedGradient(int i, bool has_ignore, double ignore) {
    const double p = prob_->cpu_data()[i];
    const double y = target_->cpu_data()[i];
    if (has_ignore && y == ignore) return 0;
    return (-y / std::max(p, 1e-4) + (1 - y) / std::max(1 - p, 1e-4)) / prob_->num();
  }

  // The formula of the header, written out for the current bottoms.
  double ExpectedLoss(bool has_ignore, double ignore) {
    const Dtype* p = prob_->cpu_data();
    const Dtype* y = target_->cpu_data();
    double sum = 0;
    for (int i = 0; i < prob_->count(); ++i) {
      if (has_ignore && y[i] == ignore) continue;
      sum -= y[i] * std::log(std::max<double>(p[i], 1e-4)) +
          (1 - y[i]) * std::log(std::max<double>(1 - p[i], 1e-4));
    }
    return sum / prob_->num();
  }

  Blob<Dtype>* const prob_;
  Blob<Dtype>* const target_;
  Blob<Dtype>* const loss_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
};

TYPED_TEST_CASE(CrossEntropyLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(CrossEntropyLossLayerTest, ForwardMatchesFormula) {
  typedef typename TypeParam::Dtype Dtype;
  CrossEntropyLossLayer<Dtype> layer(this->Param(""));
  layer.SetUp(this->bottom_, this->top_);
  const Dtype loss = layer.Forward(this->bottom_, this->top_);
  EXPECT_NEAR(loss, this->ExpectedLoss(false, 0), 1e-5);
  EXPECT_EQ(this->loss_->cpu_data()[0], loss);
}

TYPED_TEST(CrossEntropyLossLayerTest, ForwardScalesWithLossWeight) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->Param("");
  param.add_loss_weight(3);
  CrossEntropyLossLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_NEAR(layer.Forward(this->bottom_, this->top_), 3 * this->ExpectedLoss(false, 0), 1e-4);
}

// The loss is clamped at 1e-4; the gradient keeps the original fork's rule there (the loss is
// flat, so GradientChecker cannot check this region: it is checked by values).
TYPED_TEST(CrossEntropyLossLayerTest, ClampBoundsLossAndGradientFollowsTheOriginal) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* p = this->prob_->mutable_cpu_data();
  Dtype* y = this->target_->mutable_cpu_data();
  p[0] = 0;  y[0] = 1;         // confidently wrong: loss -log(1e-4), gradient -1/1e-4 / N
  p[1] = 1;  y[1] = 0;         // confidently wrong the other way: +1/1e-4 / N
  p[2] = 0;  y[2] = 0;         // right: only the unclamped term, 1/(1 - p) / N
  p[3] = 5e-5;  y[3] = 1;      // inside the clamp: -1/1e-4 / N, as at p = 0
  p[4] = 1 - 5e-5;  y[4] = 0;
  p[5] = 0;  y[5] = 0.25;      // a soft target: both terms, one clamped
  p[6] = 1;  y[6] = 1;         // right at 1: the clamped term has weight 1 - y = 0
  CrossEntropyLossLayer<Dtype> layer(this->Param(""));
  layer.SetUp(this->bottom_, this->top_);
  const Dtype loss = layer.Forward(this->bottom_, this->top_);
  EXPECT_NEAR(loss, this->ExpectedLoss(false, 0), 1e-4);
  vector<bool> propagate_down(2, false);
  propagate_down[0] = true;
  layer.Backward(this->top_, propagate_down, this->bottom_);
  const Dtype* diff = this->prob_->cpu_diff();
  const int n = this->prob_->num();
  EXPECT_NEAR(diff[0], -1e4 / n, 1e-2);
  EXPECT_NEAR(diff[1], 1e4 / n, 1e-2);
  EXPECT_NEAR(diff[2], 1.0 / n, 1e-6);
  EXPECT_NEAR(diff[3], -1e4 / n, 1e-2);
  EXPECT_NEAR(diff[4], 1e4 / n, 1e-2);
  EXPECT_NEAR(diff[5], (-0.25e4 + 0.75) / n, 1e-2);
  EXPECT_NEAR(diff[6], -1.0 / n, 1e-6);
  for (int i = 0; i < this->prob_->count(); ++i) {
    const double expected = this->ExpectedGradient(i, false, 0);
    EXPECT_NEAR(diff[i], expected, 1e-5 * std::max(1.0, std::fabs(expected))) << i;
  }
}

TYPED_TEST(CrossEntropyLossLayerTest, GradientScalesWithLossWeightInTheClamp) {
  typedef typename TypeParam::Dtype Dtype;
  this->prob_->mutable_cpu_data()[0] = 2e-5;
  this->target_->mutable_cpu_data()[0] = 1;
  LayerParameter param = this->Param("");
  param.add_loss_weight(0.5);
  CrossEntropyLossLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  vector<bool> propagate_down(2, false);
  propagate_down[0] = true;
  layer.Backward(this->top_, propagate_down, this->bottom_);
  EXPECT_NEAR(this->prob_->cpu_diff()[0], -0.5e4 / this->prob_->num(), 1e-2);
}

TYPED_TEST(CrossEntropyLossLayerTest, Gradient) {
  typedef typename TypeParam::Dtype Dtype;
  CrossEntropyLossLayer<Dtype> layer(this->Param(""));
  GradientChecker<Dtype> checker(1e-3, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_, 0);
}

TYPED_TEST(CrossEntropyLossLayerTest, GradientSoftTargets) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* y = this->target_->mutable_cpu_data();
  for (int i = 0; i < this->target_->count(); ++i) y[i] = (i % 5) / Dtype(4);
  CrossEntropyLossLayer<Dtype> layer(this->Param(""));
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_NEAR(layer.Forward(this->bottom_, this->top_), this->ExpectedLoss(false, 0), 1e-5);
  GradientChecker<Dtype> checker(1e-3, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_, 0);
}

TYPED_TEST(CrossEntropyLossLayerTest, IgnoredTargetsAddNothing) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* y = this->target_->mutable_cpu_data();
  y[1] = y[7] = y[18] = -1;
  CrossEntropyLossLayer<Dtype> layer(this->IgnoreParam(-1));
  layer.SetUp(this->bottom_, this->top_);
  const Dtype loss = layer.Forward(this->bottom_, this->top_);
  // Normalised by N = 4 images, not by the 17 targets left.
  EXPECT_NEAR(loss, this->ExpectedLoss(true, -1), 1e-5);
  vector<bool> propagate_down(2, false);
  propagate_down[0] = true;
  layer.Backward(this->top_, propagate_down, this->bottom_);
  const Dtype* diff = this->prob_->cpu_diff();
  EXPECT_EQ(diff[1], 0);
  EXPECT_EQ(diff[7], 0);
  EXPECT_EQ(diff[18], 0);
  for (int i = 0; i < this->prob_->count(); ++i) {
    EXPECT_NEAR(diff[i], this->ExpectedGradient(i, true, -1), 1e-5) << i;
  }
  GradientChecker<Dtype> checker(1e-3, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_, 0);
}

// An ignored target is ignored also where its probability sits in the clamp, where the
// original's rule would otherwise give a large gradient.
TYPED_TEST(CrossEntropyLossLayerTest, IgnoredTargetsInTheClampGetNoGradient) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* p = this->prob_->mutable_cpu_data();
  Dtype* y = this->target_->mutable_cpu_data();
  p[0] = 0;  y[0] = -1;
  p[1] = 1;  y[1] = -1;
  p[2] = 5e-5;  y[2] = 1;
  CrossEntropyLossLayer<Dtype> layer(this->IgnoreParam(-1));
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_NEAR(layer.Forward(this->bottom_, this->top_), this->ExpectedLoss(true, -1), 1e-4);
  vector<bool> propagate_down(2, false);
  propagate_down[0] = true;
  layer.Backward(this->top_, propagate_down, this->bottom_);
  EXPECT_EQ(this->prob_->cpu_diff()[0], 0);
  EXPECT_EQ(this->prob_->cpu_diff()[1], 0);
  EXPECT_NEAR(this->prob_->cpu_diff()[2], -1e4 / this->prob_->num(), 1e-2);
}

TYPED_TEST(CrossEntropyLossLayerTest, GradientSoftTargetsWithIgnoredEntries) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* y = this->target_->mutable_cpu_data();
  for (int i = 0; i < this->target_->count(); ++i) y[i] = (i % 5) / Dtype(4);
  y[3] = y[12] = -1;
  CrossEntropyLossLayer<Dtype> layer(this->IgnoreParam(-1));
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_NEAR(layer.Forward(this->bottom_, this->top_), this->ExpectedLoss(true, -1), 1e-5);
  GradientChecker<Dtype> checker(1e-3, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_, 0);
}

TYPED_TEST(CrossEntropyLossLayerTest, AcceptsBatchSizeNormalization) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->IgnoreParam(-1);
  param.mutable_loss_param()->set_normalization(LossParameter_NormalizationMode_BATCH_SIZE);
  CrossEntropyLossLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_NEAR(layer.Forward(this->bottom_, this->top_), this->ExpectedLoss(true, -1), 1e-5);
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsOtherNormalization) {
  LayerParameter param = this->IgnoreParam(-1);
  param.mutable_loss_param()->set_normalization(LossParameter_NormalizationMode_VALID);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "loss_param.normalization: this loss is always normalised by "
      "the batch size N"));
  param.mutable_loss_param()->clear_normalization();
  param.mutable_loss_param()->set_normalize(true);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "loss_param.normalize: this loss is always normalised"));
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsIgnoreLabelInParamStr) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("ignore_label: -1"), this->bottom_,
      this->top_,
      "python_param.param_str: ignore_label is given as loss_param { ignore_label: -1 }"));
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsTargetOutsideZeroOne) {
  this->target_->mutable_cpu_data()[6] = 2;
  EXPECT_TRUE(LayerError(LayerStep::kForward, this->Param(""), this->bottom_, this->top_,
      "layer \"loss\" (CrossEntropyLoss): bottom[1]: target 2 (image 1, value 1)"));
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsNegativeTargetWithoutIgnoreLabel) {
  this->target_->mutable_cpu_data()[0] = -1;
  EXPECT_TRUE(LayerError(LayerStep::kForward, this->Param(""), this->bottom_, this->top_,
      "give loss_param { ignore_label: -1 }"));
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsTargetNotEqualToIgnoreLabel) {
  this->target_->mutable_cpu_data()[0] = -2;
  EXPECT_TRUE(LayerError(LayerStep::kForward, this->IgnoreParam(-1), this->bottom_, this->top_,
      "nor loss_param.ignore_label -1"));
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsTargetsOfAnotherSize) {
  this->target_->Reshape(4, 6, 1, 1);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param(""), this->bottom_, this->top_,
      "bottom[1]: the targets (shape 4 6 1 1 (24)) must have as many images and values per "
      "image as the probabilities bottom[0] (shape 4 1 5 1 (20))"));
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsTargetsOfAnotherBatch) {
  this->target_->Reshape(2, 10, 1, 1);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param(""), this->bottom_, this->top_,
      "(shape 2 10 1 1 (20))"));
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsOneBottom) {
  this->bottom_.pop_back();
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param(""), this->bottom_, this->top_,
      "bottom: takes 2 blob(s), got 1"));
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsUnknownParameter) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("ignore: 1"), this->bottom_, this->top_,
      "python_param.param_str"));
}

TYPED_TEST(CrossEntropyLossLayerTest, RejectsGradientToTargets) {
  EXPECT_TRUE(LayerError(LayerStep::kBackward, this->Param(""), this->bottom_, this->top_,
      "propagate_down: cannot back-propagate to the targets"));
}

}  // namespace caffe
