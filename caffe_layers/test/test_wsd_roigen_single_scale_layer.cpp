#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/test/test_caffe_main.hpp"

#include "mlic_layers/wsd_roigen_single_scale_layer.hpp"

#include "layer_error.hpp"

namespace caffe {

template <typename TypeParam>
class WsdRoigenSingleScaleLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  WsdRoigenSingleScaleLayerTest()
      : lists_(new Blob<Dtype>(2, 10, 1, 1)), image_(new Blob<Dtype>(2, 3, 6, 12)),
        rois_(new Blob<Dtype>()) {
    const Dtype lists[20] = {5, 3, 671, 672, 0.7,     0, 2, 3, 1, 0.25,
                             100, 200, 300, 400, 0.9, -1, -1, -1, -1, -1};
    std::copy(lists, lists + 20, lists_->mutable_cpu_data());
    bottom_.push_back(lists_);
    top_.push_back(rois_);
  }
  virtual ~WsdRoigenSingleScaleLayerTest() { delete lists_; delete image_; delete rois_; }

  LayerParameter Param(const std::string& param_str) {
    LayerParameter param;
    param.set_name("roi_224");
    param.set_type("WsdRoigenSingleScale");
    param.mutable_python_param()->set_param_str(param_str);
    return param;
  }

  void ExpectRois(const Dtype expected[4][6]) {
    ASSERT_EQ(rois_->shape_string(), "4 6 (24)");
    for (int r = 0; r < 4; ++r) {
      for (int k = 0; k < 6; ++k) {
        EXPECT_NEAR(rois_->cpu_data()[6 * r + k], expected[r][k], 1e-6)
            << "row " << r << " column " << k;
      }
    }
  }

  Blob<Dtype>* const lists_;
  Blob<Dtype>* const image_;
  Blob<Dtype>* const rois_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
};

TYPED_TEST_CASE(WsdRoigenSingleScaleLayerTest, TestDtypesAndDevices);

TYPED_TEST(WsdRoigenSingleScaleLayerTest, MapsCornersDownWithFloor) {
  typedef typename TypeParam::Dtype Dtype;
  WsdRoigenSingleScaleLayer<Dtype> layer(this->Param("single_scale: 224 origin_scale: 672"));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  const Dtype expected[4][6] = {{0, 1, 1, 223, 224, 0.7}, {0, 0, 0, 1, 0, 0.25},
                                {1, 33, 66, 100, 133, 0.9}, {1, -1, -1, -1, -1, -1}};
  this->ExpectRois(expected);
}

TYPED_TEST(WsdRoigenSingleScaleLayerTest, PaddingRowsStayWhenScalingUp) {
  typedef typename TypeParam::Dtype Dtype;
  // Mapped like a box, -1 would become -3 here.
  WsdRoigenSingleScaleLayer<Dtype> layer(this->Param("single_scale: 5 origin_scale: 2"));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  const Dtype expected[4][6] = {{0, 12, 7, 1677, 1680, 0.7}, {0, 0, 5, 7, 2, 0.25},
                                {1, 250, 500, 750, 1000, 0.9}, {1, -1, -1, -1, -1, -1}};
  this->ExpectRois(expected);
}

TYPED_TEST(WsdRoigenSingleScaleLayerTest, ImageBottomGivesTheOriginPerAxis) {
  typedef typename TypeParam::Dtype Dtype;
  this->bottom_.push_back(this->image_);  // 6 rows, 12 columns
  // origin_scale is not used with an image bottom, so it may be left out.
  WsdRoigenSingleScaleLayer<Dtype> layer(this->Param("single_scale: 3"));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  // x -> floor(3x / 12), y -> floor(3y / 6)
  const Dtype expected[4][6] = {{0, 1, 1, 167, 336, 0.7}, {0, 0, 1, 0, 0, 0.25},
                                {1, 25, 100, 75, 200, 0.9}, {1, -1, -1, -1, -1, -1}};
  this->ExpectRois(expected);
  // A differently sized image (multi-scale training) changes the mapping on the next pass.
  this->image_->Reshape(2, 3, 12, 6);
  layer.Reshape(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->rois_->cpu_data()[6 * 2 + 1], 50);  // floor(3 * 100 / 6)
  EXPECT_EQ(this->rois_->cpu_data()[6 * 2 + 2], 50);  // floor(3 * 200 / 12)
}

TYPED_TEST(WsdRoigenSingleScaleLayerTest, RejectsMissingOrNonPositiveScales) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("origin_scale: 672"), this->bottom_,
      this->top_,
      "layer \"roi_224\" (WsdRoigenSingleScale): single_scale: must be set and > 0, got 0"));
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("single_scale: -224 origin_scale: 672"),
      this->bottom_, this->top_, "single_scale: must be set and > 0, got -224"));
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("single_scale: 224"), this->bottom_,
      this->top_, "origin_scale: must be set and > 0 without an image bottom, got 0"));
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("single_scale: 224 origin_scale: 0"),
      this->bottom_, this->top_, "origin_scale: must be set and > 0"));
}

TYPED_TEST(WsdRoigenSingleScaleLayerTest, RejectsBadBottoms) {
  const LayerParameter param = this->Param("single_scale: 224 origin_scale: 672");
  this->image_->Reshape(3, 3, 6, 12);  // three images for two proposal lists
  this->bottom_.push_back(this->image_);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "bottom[1]: expects the (N, C, H, W) image of the 2 proposal lists, got shape 3 3 6 12"));
  this->bottom_.push_back(this->image_);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "bottom: takes 1 to 2 blob(s), got 3"));
  this->bottom_.resize(1);
  this->lists_->Reshape(2, 12, 1, 1);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, param, this->bottom_, this->top_,
      "bottom[0]: expects (N, 5*B) proposal lists"));
}

}  // namespace caffe
