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

#include "mlic_layers/interp_layer.hpp"
#include "mlic_layers/layer_param.hpp"

#include "layer_error.hpp"

namespace caffe {

template <typename TypeParam>
class InterpLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  InterpLayerTest()
      : maps_(new Blob<Dtype>(2, 2, 4, 5)), size_(new Blob<Dtype>(1, 1, 3, 7)),
        resized_(new Blob<Dtype>()) {
    FillerParameter filler_param;
    filler_param.set_min(-1);
    filler_param.set_max(1);
    UniformFiller<Dtype> filler(filler_param);
    filler.Fill(maps_);
    bottom_.push_back(maps_);
    top_.push_back(resized_);
  }
  virtual ~InterpLayerTest() { delete maps_; delete size_; delete resized_; }

  LayerParameter Param(const std::string& param_str) {
    LayerParameter param;
    param.set_name("resize");
    param.set_type("Interp");
    param.mutable_python_param()->set_param_str(param_str);
    return param;
  }

  // Corner-aligned bilinear sampling written from the definition: output (h, w) reads the
  // cropped input at (h * (H_eff - 1) / (H_out - 1), w * (W_eff - 1) / (W_out - 1)).
  void ExpectResized(int crop_beg, int crop_end) {
    const int h_eff = maps_->height() - crop_beg - crop_end;
    const int w_eff = maps_->width() - crop_beg - crop_end;
    const int h_out = resized_->height(), w_out = resized_->width();
    for (int n = 0; n < maps_->num(); ++n) {
      for (int c = 0; c < maps_->channels(); ++c) {
        for (int h = 0; h < h_out; ++h) {
          for (int w = 0; w < w_out; ++w) {
            const double y = h_out > 1 ? h * (h_eff - 1.0) / (h_out - 1) : 0;
            const double x = w_out > 1 ? w * (w_eff - 1.0) / (w_out - 1) : 0;
            const int y0 = std::min<int>(std::floor(y), h_eff - 1);
            const int x0 = std::min<int>(std::floor(x), w_eff - 1);
            const int y1 = std::min(y0 + 1, h_eff - 1), x1 = std::min(x0 + 1, w_eff - 1);
            const double fy = y - y0, fx = x - x0;
            const int b = crop_beg;
            const double expected =
                (1 - fy) * ((1 - fx) * maps_->data_at(n, c, b + y0, b + x0) +
                            fx * maps_->data_at(n, c, b + y0, b + x1)) +
                fy * ((1 - fx) * maps_->data_at(n, c, b + y1, b + x0) +
                      fx * maps_->data_at(n, c, b + y1, b + x1));
            EXPECT_NEAR(resized_->data_at(n, c, h, w), expected, 1e-5)
                << "at " << n << "," << c << "," << h << "," << w;
          }
        }
      }
    }
  }

  // Sets up with param_str, checks the output shape, values and gradient.
  void CheckMode(const std::string& param_str, int height, int width, int crop_beg = 0,
      int crop_end = 0) {
    InterpLayer<Dtype> layer(Param(param_str));
    layer.SetUp(bottom_, top_);
    ASSERT_EQ(resized_->num(), 2);
    ASSERT_EQ(resized_->channels(), 2);
    ASSERT_EQ(resized_->height(), height) << param_str;
    ASSERT_EQ(resized_->width(), width) << param_str;
    layer.Forward(bottom_, top_);
    ExpectResized(crop_beg, crop_end);
    GradientChecker<Dtype> checker(1e-2, 1e-3, 1701);
    checker.CheckGradientExhaustive(&layer, bottom_, top_, 0);
  }

  Blob<Dtype>* const maps_;
  Blob<Dtype>* const size_;
  Blob<Dtype>* const resized_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
};

TYPED_TEST_CASE(InterpLayerTest, TestDtypesAndDevices);

TYPED_TEST(InterpLayerTest, UpsampleToHeightWidth) {
  this->CheckMode("height: 7 width: 11", 7, 11);
}

TYPED_TEST(InterpLayerTest, DownsampleToHeightWidth) {
  this->CheckMode("height: 3 width: 4", 3, 4);
}

TYPED_TEST(InterpLayerTest, ToSingleRowAndColumnTakesTheCorner) {
  this->CheckMode("height: 1 width: 1", 1, 1);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(this->resized_->cpu_data()[i], this->maps_->cpu_data()[i * 20]);
  }
}

TYPED_TEST(InterpLayerTest, ZoomFactor) {
  this->CheckMode("zoom_factor: 2", 4 + 3, 5 + 4);
}

TYPED_TEST(InterpLayerTest, ShrinkFactor) {
  this->CheckMode("shrink_factor: 2", 2, 3);
}

TYPED_TEST(InterpLayerTest, ShrinkThenZoom) {
  this->CheckMode("shrink_factor: 2 zoom_factor: 3", 4, 7);
}

TYPED_TEST(InterpLayerTest, CropThenResize) {
  this->CheckMode("pad_beg: -1 pad_end: -1 height: 4 width: 5", 4, 5, 1, 1);
}

TYPED_TEST(InterpLayerTest, CropThenZoom) {
  this->CheckMode("pad_beg: -1 zoom_factor: 2", 5, 7, 1, 0);
}

TYPED_TEST(InterpLayerTest, SizeOfSecondBottom) {
  this->bottom_.push_back(this->size_);
  this->CheckMode("", 3, 7);
}

TYPED_TEST(InterpLayerTest, SameSizeIsIdentity) {
  typedef typename TypeParam::Dtype Dtype;
  InterpLayer<Dtype> layer(this->Param("height: 4 width: 5"));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  for (int i = 0; i < this->maps_->count(); ++i) {
    EXPECT_EQ(this->resized_->cpu_data()[i], this->maps_->cpu_data()[i]);
  }
}

TYPED_TEST(InterpLayerTest, BackwardRestartsFromZero) {
  typedef typename TypeParam::Dtype Dtype;
  InterpLayer<Dtype> layer(this->Param("zoom_factor: 2"));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  caffe_set(this->resized_->count(), Dtype(1), this->resized_->mutable_cpu_diff());
  caffe_set(this->maps_->count(), Dtype(100), this->maps_->mutable_cpu_diff());
  layer.Backward(this->top_, vector<bool>(1, true), this->bottom_);
  // Every output's weights sum to 1, so the input gradients sum to the number of outputs.
  Dtype total = 0;
  for (int i = 0; i < this->maps_->count(); ++i) total += this->maps_->cpu_diff()[i];
  EXPECT_NEAR(total, this->resized_->count(), 1e-3);
}

TYPED_TEST(InterpLayerTest, RejectsPositivePadBeg) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("pad_beg: 1 zoom_factor: 2"), this->bottom_,
      this->top_, "layer \"resize\" (Interp): pad_beg: must be <= 0"));
}

TYPED_TEST(InterpLayerTest, RejectsPositivePadEnd) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("pad_end: 2 zoom_factor: 2"), this->bottom_,
      this->top_, "pad_end: must be <= 0"));
}

TYPED_TEST(InterpLayerTest, RejectsHeightWithoutWidth) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("height: 4"), this->bottom_, this->top_,
      "width: must be given together with height"));
}

TYPED_TEST(InterpLayerTest, RejectsWidthWithoutHeight) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("width: 4"), this->bottom_, this->top_,
      "height: must be given together with width"));
}

TYPED_TEST(InterpLayerTest, RejectsNonPositiveHeight) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("height: 0 width: 4"), this->bottom_,
      this->top_, "height: must be positive, got 0"));
}

TYPED_TEST(InterpLayerTest, RejectsSizeAndFactor) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("height: 4 width: 4 zoom_factor: 2"),
      this->bottom_, this->top_, "zoom_factor: cannot be combined with height and width"));
}

TYPED_TEST(InterpLayerTest, RejectsZeroZoomFactor) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("zoom_factor: 0"), this->bottom_,
      this->top_, "zoom_factor: must be >= 1, got 0"));
}

TYPED_TEST(InterpLayerTest, RejectsZeroShrinkFactor) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("shrink_factor: 0"), this->bottom_,
      this->top_, "shrink_factor: must be >= 1, got 0"));
}

TYPED_TEST(InterpLayerTest, RejectsNoOutputSize) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("pad_beg: -1"), this->bottom_, this->top_,
      "python_param.param_str: no output size"));
}

TYPED_TEST(InterpLayerTest, RejectsSecondBottomWithSize) {
  this->bottom_.push_back(this->size_);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("height: 2 width: 2"), this->bottom_,
      this->top_, "bottom: a second bottom sets the output size"));
}

TYPED_TEST(InterpLayerTest, RejectsCroppingEverything) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("pad_beg: -2 pad_end: -2 zoom_factor: 2"),
      this->bottom_, this->top_,
      "pad_beg, pad_end: cropping 2 and 2 leaves nothing of the input 2 2 4 5 (80)"));
}

TYPED_TEST(InterpLayerTest, RejectsNonImageBottom) {
  vector<int> shape(2, 3);
  this->maps_->Reshape(shape);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("zoom_factor: 2"), this->bottom_,
      this->top_, "bottom[0]: expects (N, C, H, W) maps, got shape 3 3"));
}

TYPED_TEST(InterpLayerTest, RejectsThreeBottoms) {
  this->bottom_.push_back(this->size_);
  this->bottom_.push_back(this->size_);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param(""), this->bottom_, this->top_,
      "bottom: takes 1 to 2 blob(s), got 3"));
}

}  // namespace caffe
