#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/softmax_layer.hpp"
#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"
#include "caffe/util/math_functions.hpp"

#include "mlic_layers/proposal_softmax_layer.hpp"

#include "layer_error.hpp"

namespace caffe {

template <typename TypeParam>
class ProposalSoftmaxLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  // N = 2 images, B = 4 proposals, C = 3 classes, as WSDDN's (N, B, C, 1) detection stream.
  ProposalSoftmaxLayerTest()
      : scores_(new Blob<Dtype>(2, 4, 3, 1)), rois_(new Blob<Dtype>(vector<int>{8, 6})),
        prob_(new Blob<Dtype>()) {
    FillerParameter filler_param;
    filler_param.set_std(2);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(scores_);
    Dtype* rois = rois_->mutable_cpu_data();
    for (int r = 0; r < 8; ++r) {
      const Dtype row[6] = {Dtype(r / 4), Dtype(r), Dtype(r + 1), Dtype(r + 10), Dtype(r + 12),
                            Dtype(0.5)};
      for (int k = 0; k < 6; ++k) rois[6 * r + k] = row[k];
    }
    bottom_.push_back(scores_);
    bottom_.push_back(rois_);
    top_.push_back(prob_);
    param_.set_name("softmax_d");
    param_.set_type("ProposalSoftmax");
  }
  virtual ~ProposalSoftmaxLayerTest() { delete scores_; delete rois_; delete prob_; }

  void Pad(int row) {
    for (int k = 1; k < 6; ++k) rois_->mutable_cpu_data()[6 * row + k] = -1;
  }

  Blob<Dtype>* const scores_;
  Blob<Dtype>* const rois_;
  Blob<Dtype>* const prob_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
  LayerParameter param_;
};

TYPED_TEST_CASE(ProposalSoftmaxLayerTest, TestDtypesAndDevices);

TYPED_TEST(ProposalSoftmaxLayerTest, WithoutPaddingEqualsSoftmaxOverAxis1) {
  typedef typename TypeParam::Dtype Dtype;
  ProposalSoftmaxLayer<Dtype> layer(this->param_);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  LayerParameter softmax_param;
  softmax_param.mutable_softmax_param()->set_axis(1);
  SoftmaxLayer<Dtype> softmax(softmax_param);
  Blob<Dtype> expected;
  vector<Blob<Dtype>*> softmax_bottom(1, this->scores_), softmax_top(1, &expected);
  softmax.SetUp(softmax_bottom, softmax_top);
  softmax.Forward(softmax_bottom, softmax_top);
  ASSERT_EQ(this->prob_->shape(), expected.shape());
  for (int i = 0; i < expected.count(); ++i) {
    EXPECT_NEAR(this->prob_->cpu_data()[i], expected.cpu_data()[i], 1e-6);
  }
}

TYPED_TEST(ProposalSoftmaxLayerTest, PaddingGetsZeroAndRealProposalsSumToOne) {
  typedef typename TypeParam::Dtype Dtype;
  this->Pad(2);
  this->Pad(3);
  this->Pad(5);
  ProposalSoftmaxLayer<Dtype> layer(this->param_);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  const Dtype* s = this->scores_->cpu_data();
  const Dtype* p = this->prob_->cpu_data();
  const bool real[2][4] = {{true, true, false, false}, {true, false, true, true}};
  for (int n = 0; n < 2; ++n) {
    for (int c = 0; c < 3; ++c) {
      double sum = 0;
      for (int b = 0; b < 4; ++b) {
        if (real[n][b]) sum += std::exp(static_cast<double>(s[(n * 4 + b) * 3 + c]));
      }
      for (int b = 0; b < 4; ++b) {
        const int i = (n * 4 + b) * 3 + c;
        const double expected = real[n][b] ? std::exp(static_cast<double>(s[i])) / sum : 0;
        EXPECT_NEAR(p[i], expected, 1e-6) << "n " << n << " b " << b << " c " << c;
      }
    }
  }
}

TYPED_TEST(ProposalSoftmaxLayerTest, ImageWithOnlyPaddingOutputsZeros) {
  typedef typename TypeParam::Dtype Dtype;
  for (int r = 4; r < 8; ++r) this->Pad(r);
  ProposalSoftmaxLayer<Dtype> layer(this->param_);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  for (int i = 12; i < 24; ++i) EXPECT_EQ(this->prob_->cpu_data()[i], Dtype(0));
  for (int c = 0; c < 3; ++c) {
    Dtype sum = 0;
    for (int b = 0; b < 4; ++b) sum += this->prob_->cpu_data()[b * 3 + c];
    EXPECT_NEAR(sum, 1, 1e-6);
  }
}

TYPED_TEST(ProposalSoftmaxLayerTest, LargeScoresStayFinite) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* s = this->scores_->mutable_cpu_data();
  for (int i = 0; i < this->scores_->count(); ++i) s[i] = 1000 + i;
  // A padding row with a huge score must not take part in the max either.
  s[3 * 3] = 1e30;
  this->Pad(3);
  ProposalSoftmaxLayer<Dtype> layer(this->param_);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  const Dtype* p = this->prob_->cpu_data();
  for (int i = 0; i < this->prob_->count(); ++i) EXPECT_TRUE(std::isfinite(p[i])) << i;
  // Scores rise by 3 per proposal, so the last real proposal of image 0 (b = 2) dominates.
  EXPECT_NEAR(p[2 * 3], 1 / (1 + std::exp(-3.0) + std::exp(-6.0)), 1e-5);
}

TYPED_TEST(ProposalSoftmaxLayerTest, PaddingTakesNoGradient) {
  typedef typename TypeParam::Dtype Dtype;
  this->Pad(1);
  ProposalSoftmaxLayer<Dtype> layer(this->param_);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  FillerParameter filler_param;
  GaussianFiller<Dtype> filler(filler_param);
  Blob<Dtype> top_diff;
  top_diff.ReshapeLike(*this->prob_);
  filler.Fill(&top_diff);
  caffe_copy(top_diff.count(), top_diff.cpu_data(), this->prob_->mutable_cpu_diff());
  layer.Backward(this->top_, vector<bool>{true, false}, this->bottom_);
  for (int c = 0; c < 3; ++c) EXPECT_EQ(this->scores_->cpu_diff()[1 * 3 + c], Dtype(0));
  for (int c = 0; c < 3; ++c) EXPECT_NE(this->scores_->cpu_diff()[0 * 3 + c], Dtype(0));
}

TYPED_TEST(ProposalSoftmaxLayerTest, GradientWithoutPadding) {
  typedef typename TypeParam::Dtype Dtype;
  ProposalSoftmaxLayer<Dtype> layer(this->param_);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_, 0);
}

TYPED_TEST(ProposalSoftmaxLayerTest, GradientWithPadding) {
  typedef typename TypeParam::Dtype Dtype;
  this->Pad(0);
  this->Pad(5);
  this->Pad(6);
  ProposalSoftmaxLayer<Dtype> layer(this->param_);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_, 0);
}

TYPED_TEST(ProposalSoftmaxLayerTest, RejectsRoIRowsNotNTimesB) {
  this->rois_->Reshape(vector<int>{6, 6});
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->param_, this->bottom_, this->top_,
      "layer \"softmax_d\" (ProposalSoftmax): bottom[1]: expects (N*B, 6) RoI rows = (8, 6) "
      "for scores of shape 2 4 3 1 (24), got shape 6 6 (36)"));
}

TYPED_TEST(ProposalSoftmaxLayerTest, RejectsRoIRowsNotSixWide) {
  this->rois_->Reshape(vector<int>{8, 5});
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->param_, this->bottom_, this->top_,
      "(ProposalSoftmax): bottom[1]: expects (N*B, 6) RoI rows"));
}

TYPED_TEST(ProposalSoftmaxLayerTest, RejectsScoresWithoutProposalAxis) {
  this->scores_->Reshape(vector<int>{8});
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->param_, this->bottom_, this->top_,
      "(ProposalSoftmax): bottom[0]: expects (N, B, C...) scores"));
}

TYPED_TEST(ProposalSoftmaxLayerTest, RejectsMissingRoIBottom) {
  this->bottom_.pop_back();
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->param_, this->bottom_, this->top_,
      "(ProposalSoftmax): bottom: takes 2 blob(s), got 1"));
}

TYPED_TEST(ProposalSoftmaxLayerTest, RejectsAnyParameter) {
  this->param_.mutable_python_param()->set_param_str("axis: 2");
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->param_, this->bottom_, this->top_,
      "python_param.param_str: cannot parse \"axis: 2\""));
}

}  // namespace caffe
