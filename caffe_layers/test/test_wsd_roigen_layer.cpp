#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/test/test_caffe_main.hpp"

#include "mlic_layers/wsd_roigen_layer.hpp"

#include "layer_error.hpp"

namespace caffe {

template <typename TypeParam>
class WsdRoigenLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  WsdRoigenLayerTest() : lists_(new Blob<Dtype>(3, 10, 1, 1)), rois_(new Blob<Dtype>()) {
    FillerParameter filler_param;
    filler_param.set_min(0);
    filler_param.set_max(100);
    UniformFiller<Dtype> filler(filler_param);
    filler.Fill(lists_);
    // Image 2 carries one real proposal and one padding row.
    for (int k = 5; k < 10; ++k) lists_->mutable_cpu_data()[2 * 10 + k] = -1;
    bottom_.push_back(lists_);
    top_.push_back(rois_);
  }
  virtual ~WsdRoigenLayerTest() { delete lists_; delete rois_; }

  LayerParameter Param(const std::string& param_str) {
    LayerParameter param;
    param.set_name("roi");
    param.set_type("WsdRoigen");
    param.mutable_python_param()->set_param_str(param_str);
    return param;
  }

  Blob<Dtype>* const lists_;
  Blob<Dtype>* const rois_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
};

TYPED_TEST_CASE(WsdRoigenLayerTest, TestDtypesAndDevices);

TYPED_TEST(WsdRoigenLayerTest, RowsCarryBatchIndexAndProposal) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  param.set_type("WsdRoigen");
  WsdRoigenLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  ASSERT_EQ(this->rois_->num_axes(), 2);
  ASSERT_EQ(this->rois_->shape(0), 6);
  ASSERT_EQ(this->rois_->shape(1), 6);
  layer.Forward(this->bottom_, this->top_);
  const Dtype* lists = this->lists_->cpu_data();
  const Dtype* rois = this->rois_->cpu_data();
  for (int n = 0; n < 3; ++n) {
    for (int b = 0; b < 2; ++b) {
      const int r = n * 2 + b;
      EXPECT_EQ(rois[6 * r], n);
      for (int k = 0; k < 5; ++k) EXPECT_EQ(rois[6 * r + 1 + k], lists[n * 10 + b * 5 + k]);
    }
  }
  EXPECT_EQ(rois[6 * 5 + 1], -1);  // the padding row stays recognisable
}

TYPED_TEST(WsdRoigenLayerTest, RejectsListsNotMultipleOfFive) {
  this->lists_->Reshape(2, 7, 1, 1);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param(""), this->bottom_, this->top_,
      "layer \"roi\" (WsdRoigen): bottom[0]: expects (N, 5*B) proposal lists, got shape "
      "2 7 1 1 (14)"));
}

TYPED_TEST(WsdRoigenLayerTest, RejectsUnknownParameter) {
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->Param("roi_num: 5"), this->bottom_,
      this->top_, "python_param.param_str: cannot parse \"roi_num: 5\""));
}

}  // namespace caffe
