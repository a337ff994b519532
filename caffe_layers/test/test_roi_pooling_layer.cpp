#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

#include "mlic_layers/layer_param.hpp"
#include "mlic_layers/roi_pooling_layer.hpp"

#include "layer_error.hpp"

namespace caffe {

template <typename TypeParam>
class ROIPoolingLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  ROIPoolingLayerTest()
      : features_(new Blob<Dtype>()), rois_(new Blob<Dtype>()), pooled_(new Blob<Dtype>()) {
    bottom_.push_back(features_);
    bottom_.push_back(rois_);
    top_.push_back(pooled_);
  }
  virtual ~ROIPoolingLayerTest() { delete features_; delete rois_; delete pooled_; }

  LayerParameter Param(const std::string& param_str) {
    LayerParameter param;
    param.set_name("roi_pool");
    param.set_type("ROIPooling");
    param.mutable_python_param()->set_param_str(param_str);
    return param;
  }

  void SetRois(const std::vector<std::vector<double> >& rows) {
    rois_->Reshape(std::vector<int>{static_cast<int>(rows.size()), 6});
    for (int r = 0; r < rows.size(); ++r) {
      for (int k = 0; k < 6; ++k) rois_->mutable_cpu_data()[6 * r + k] = rows[r][k];
    }
  }

  // 1 x 2 x 4 x 4 features: channel 0 holds 0..15 row-major, channel 1 holds 15..0, so every
  // bin's maximum can be read off by hand.
  void SetHandFeatures() {
    features_->Reshape(1, 2, 4, 4);
    for (int i = 0; i < 16; ++i) {
      features_->mutable_cpu_data()[i] = i;
      features_->mutable_cpu_data()[16 + i] = 15 - i;
    }
  }

  Blob<Dtype>* const features_;
  Blob<Dtype>* const rois_;
  Blob<Dtype>* const pooled_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
};

TYPED_TEST_CASE(ROIPoolingLayerTest, TestDtypesAndDevices);

TYPED_TEST(ROIPoolingLayerTest, ForwardByHand) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetHandFeatures();
  this->SetRois({
      {0, 0, 0, 6, 6, 0.5},    // (0, 0)-(3, 3): the whole map; factor 10 * 0.5 + 1 = 6
      {0, 1, 1, 5, 3, 0.1},    // 0.5, 0.5, 2.5, 1.5 round half away to 1, 1, 3, 2; factor 2
      {0, 6, 2, 12, 2, 0},     // columns 3-6 of row 1, past the right edge; factor 1
      {0, -1, -1, -1, -1, -1}  // padding
  });
  ROIPoolingLayer<Dtype> layer(this->Param(
      "pooled_h: 2 pooled_w: 2 spatial_scale: 0.5 score_scale: 10 score_bias: 1"));
  layer.SetUp(this->bottom_, this->top_);
  ASSERT_EQ(this->pooled_->shape_string(), "4 2 2 2 (32)");
  layer.Forward(this->bottom_, this->top_);
  const Dtype expected[4][2][4] = {
      {{30, 42, 78, 90}, {90, 78, 42, 30}},
      {{12, 14, 20, 22}, {20, 18, 12, 10}},
      {{7, 0, 7, 0}, {8, 0, 8, 0}},  // both rows of the one-row RoI see row 1; right bins empty
      {{0, 0, 0, 0}, {0, 0, 0, 0}}};
  const Dtype* pooled = this->pooled_->cpu_data();
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 2; ++c) {
      for (int i = 0; i < 4; ++i) {
        EXPECT_NEAR(pooled[(r * 2 + c) * 4 + i], expected[r][c][i], 1e-5)
            << "roi " << r << " channel " << c << " bin " << i;
      }
    }
  }
}

TYPED_TEST(ROIPoolingLayerTest, BackwardRoutesScaledDiffToArgmax) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetHandFeatures();
  this->SetRois({{0, 0, 0, 6, 6, 0.5}, {0, 1, 1, 5, 3, 0.1}, {0, 6, 2, 12, 2, 0},
                 {0, -1, -1, -1, -1, -1}});
  ROIPoolingLayer<Dtype> layer(this->Param(
      "pooled_h: 2 pooled_w: 2 spatial_scale: 0.5 score_scale: 10 score_bias: 1"));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  caffe_set(this->pooled_->count(), Dtype(1), this->pooled_->mutable_cpu_diff());
  layer.Backward(this->top_, vector<bool>{true, false}, this->bottom_);
  // Each output adds its RoI's factor (6, 2, 1) at its maximum; RoI 2's two rows share one.
  Dtype expected[32] = {0};
  expected[5] = 6; expected[7] = 6 + 2 + 1 + 1; expected[13] = 6; expected[15] = 6;
  expected[6] = 2; expected[10] = 2; expected[11] = 2;
  expected[16 + 0] = 6; expected[16 + 2] = 6; expected[16 + 8] = 6; expected[16 + 10] = 6 + 2;
  expected[16 + 5] = 2; expected[16 + 6] = 2; expected[16 + 9] = 2; expected[16 + 7] = 1 + 1;
  for (int i = 0; i < 32; ++i) {
    EXPECT_NEAR(this->features_->cpu_diff()[i], expected[i], 1e-5) << "input " << i;
  }
}

TYPED_TEST(ROIPoolingLayerTest, PaddingRowOutputsZerosAndTakesNoGradient) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetHandFeatures();
  // Padding rows may carry any batch index; they are never read.
  this->SetRois({{0, 0, 0, 3, 3, 1}, {7, -1, -1, -1, -1, -1}});
  ROIPoolingLayer<Dtype> layer(this->Param("pooled_h: 2 pooled_w: 3 score_bias: 1"));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  const int per_roi = this->pooled_->count(1);
  for (int i = 0; i < per_roi; ++i) {
    EXPECT_NE(this->pooled_->cpu_data()[i], 0);
    EXPECT_EQ(this->pooled_->cpu_data()[per_roi + i], 0);
  }
  Dtype* top_diff = this->pooled_->mutable_cpu_diff();
  caffe_set(per_roi, Dtype(0), top_diff);
  caffe_set(per_roi, Dtype(1), top_diff + per_roi);
  caffe_set(this->features_->count(), Dtype(5), this->features_->mutable_cpu_diff());
  layer.Backward(this->top_, vector<bool>{true, false}, this->bottom_);
  for (int i = 0; i < this->features_->count(); ++i) {
    EXPECT_EQ(this->features_->cpu_diff()[i], 0) << "input " << i;
  }
}

TYPED_TEST(ROIPoolingLayerTest, AcceptsFourAxisRois) {
  typedef typename TypeParam::Dtype Dtype;
  this->SetHandFeatures();
  this->rois_->Reshape(1, 6, 1, 1);
  const Dtype row[6] = {0, 1, 1, 2, 2, 1};
  std::copy(row, row + 6, this->rois_->mutable_cpu_data());
  ROIPoolingLayer<Dtype> layer(this->Param("pooled_h: 1 pooled_w: 1"));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  ASSERT_EQ(this->pooled_->count(), 2);
  EXPECT_EQ(this->pooled_->cpu_data()[0], 10);  // max of rows/columns 1-2 of 0..15
  EXPECT_EQ(this->pooled_->cpu_data()[1], 10);  // 15 - min = 15 - 5
}

TYPED_TEST(ROIPoolingLayerTest, GradientWithScoreFactor) {
  typedef typename TypeParam::Dtype Dtype;
  // Distinct values 1/96 apart: a step of 1e-3 never swaps two of them, so every maximum
  // stays where it is while the checker differentiates (no ties, no kinks crossed).
  this->features_->Reshape(2, 2, 6, 8);
  const int count = this->features_->count();
  std::vector<int> order(count);
  for (int i = 0; i < count; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(1701));
  for (int i = 0; i < count; ++i) {
    this->features_->mutable_cpu_data()[i] = (order[i] - count / 2) / Dtype(count / 2);
  }
  this->SetRois({
      {0, 0, 0, 15, 11, 0.3},   // the whole 6 x 8 map at scale 1/2
      {1, 4, 2, 22, 18, 0.8},   // runs past the bottom and right edges
      {1, 10, 6, 10, 6, 0.5},   // a single cell
      {0, 12, 8, 6, 2, 0.2},    // x2 < x1, y2 < y1: degenerate, pooled as one cell
      {1, -1, -1, -1, -1, -1},  // padding
      {0, 14, 10, 30, 30, 0.9}  // starts inside the last cell, mostly outside
  });
  ROIPoolingLayer<Dtype> layer(this->Param(
      "pooled_h: 3 pooled_w: 2 spatial_scale: 0.5 score_scale: 10 score_bias: 1"));
  GradientChecker<Dtype> checker(1e-3, 1e-2);
  checker.CheckGradientExhaustive(&layer, this->bottom_, this->top_, 0);
}

TYPED_TEST(ROIPoolingLayerTest, RejectsMissingOrBadPooledSize) {
  this->SetHandFeatures();
  this->SetRois({{0, 0, 0, 3, 3, 1}});
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("pooled_w: 2"), this->bottom_,
      this->top_, "layer \"roi_pool\" (ROIPooling): pooled_h: must be > 0, got 0"));
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("pooled_h: 2 pooled_w: 0"),
      this->bottom_, this->top_, "pooled_w: must be > 0"));
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("pooled_h: -2 pooled_w: 2"),
      this->bottom_, this->top_, "pooled_h"));
}

TYPED_TEST(ROIPoolingLayerTest, RejectsNonPositiveSpatialScale) {
  this->SetHandFeatures();
  this->SetRois({{0, 0, 0, 3, 3, 1}});
  EXPECT_TRUE(LayerError(LayerStep::kSetUp,
      this->Param("pooled_h: 2 pooled_w: 2 spatial_scale: 0"), this->bottom_, this->top_,
      "spatial_scale: must be > 0, got 0"));
  EXPECT_TRUE(LayerError(LayerStep::kSetUp,
      this->Param("pooled_h: 2 pooled_w: 2 spatial_scale: -0.0625"), this->bottom_, this->top_,
      "spatial_scale: must be > 0, got -0.0625"));
}

TYPED_TEST(ROIPoolingLayerTest, RejectsWrongBlobCounts) {
  const LayerParameter param = this->Param("pooled_h: 2 pooled_w: 2");
  this->SetHandFeatures();
  this->SetRois({{0, 0, 0, 3, 3, 1}});
  this->bottom_.pop_back();
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "bottom: takes 2 blob(s), got 1"));
  this->bottom_.push_back(this->rois_);
  this->bottom_.push_back(this->rois_);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "bottom: takes 2 blob(s), got 3"));
  this->bottom_.pop_back();
  this->top_.push_back(this->rois_);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "top: takes 1 blob(s), got 2"));
}

TYPED_TEST(ROIPoolingLayerTest, RejectsBadShapes) {
  const LayerParameter param = this->Param("pooled_h: 2 pooled_w: 2");
  this->SetHandFeatures();
  this->rois_->Reshape(std::vector<int>{3, 5});
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "bottom[1]: expects (R, 6)"));
  this->SetRois({{0, 0, 0, 3, 3, 1}});
  this->features_->Reshape(std::vector<int>{2, 16, 4});
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "bottom[0]: expects (N, C, H, W)"));
}

TYPED_TEST(ROIPoolingLayerTest, RejectsBatchIndexOutsideTheBatch) {
  const LayerParameter param = this->Param("pooled_h: 2 pooled_w: 2");
  this->SetHandFeatures();  // one image
  this->SetRois({{0, 0, 0, 3, 3, 1}, {1, 0, 0, 3, 3, 1}});
  EXPECT_TRUE(LayerError(LayerStep::kForward, param, this->bottom_, this->top_,
      "bottom[1]: row 1 has batch index 1, not an image of bottom[0] (0 to 0)"));
  this->SetRois({{-1, 0, 0, 3, 3, 1}});
  EXPECT_TRUE(LayerError(LayerStep::kForward, param, this->bottom_, this->top_,
      "row 0 has batch index -1"));
  this->SetRois({{0.5, 0, 0, 3, 3, 1}});
  EXPECT_TRUE(LayerError(LayerStep::kForward, param, this->bottom_, this->top_,
      "row 0 has batch index 0.5"));
}

}  // namespace caffe
