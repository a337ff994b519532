#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/euclidean_loss_layer.hpp"
#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

#include "mlic_layers/roi_distillation_loss_layer.hpp"

#include "layer_error.hpp"

namespace caffe {

template <typename TypeParam>
class RoIDistillationLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  // N = 2 images, B = 3 proposals, RoI features of 2 x 2 x 2.
  RoIDistillationLossLayerTest()
      : teacher_(new Blob<Dtype>(6, 2, 2, 2)), student_(new Blob<Dtype>(6, 2, 2, 2)),
        rois_(new Blob<Dtype>(vector<int>{6, 6})), loss_(new Blob<Dtype>()) {
    FillerParameter filler_param;
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(teacher_);
    filler.Fill(student_);
    // Scores: image 0 has 0.2 0.9 0.5, image 1 has 0.7 0.7 0.1 (a tie).
    const Dtype scores[6] = {0.2, 0.9, 0.5, 0.7, 0.7, 0.1};
    Dtype* rois = rois_->mutable_cpu_data();
    for (int r = 0; r < 6; ++r) {
      const Dtype row[6] = {Dtype(r / 3), Dtype(r), Dtype(2 * r), Dtype(r + 5), Dtype(2 * r + 5),
                            scores[r]};
      for (int k = 0; k < 6; ++k) rois[6 * r + k] = row[k];
    }
    bottom_.push_back(teacher_);
    bottom_.push_back(student_);
    bottom_.push_back(rois_);
    top_.push_back(loss_);
    param_.set_name("feat_loss");
    param_.set_type("RoIDistillationLoss");
  }
  virtual ~RoIDistillationLossLayerTest() {
    delete teacher_; delete student_; delete rois_; delete loss_;
  }

  void Pad(int row) {
    for (int k = 1; k < 6; ++k) rois_->mutable_cpu_data()[6 * row + k] = -1;
  }

  Dtype SquaredDistance(int row) {
    const int dim = teacher_->count(1);
    Dtype sum = 0;
    for (int d = 0; d < dim; ++d) {
      const Dtype diff = teacher_->cpu_data()[row * dim + d] - student_->cpu_data()[row * dim + d];
      sum += diff * diff;
    }
    return sum;
  }

  Dtype ForwardLoss(int top_k) {
    if (top_k) param_.mutable_python_param()->set_param_str("top_k: " + ToString(top_k));
    RoIDistillationLossLayer<Dtype> layer(param_);
    layer.SetUp(bottom_, top_);
    return layer.Forward(bottom_, top_);
  }

  Blob<Dtype>* const teacher_;
  Blob<Dtype>* const student_;
  Blob<Dtype>* const rois_;
  Blob<Dtype>* const loss_;
  vector<Blob<Dtype>*> bottom_;
  vector<Blob<Dtype>*> top_;
  LayerParameter param_;
};

TYPED_TEST_CASE(RoIDistillationLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(RoIDistillationLossLayerTest, WithoutPaddingEqualsEuclideanLoss) {
  typedef typename TypeParam::Dtype Dtype;
  RoIDistillationLossLayer<Dtype> layer(this->param_);
  layer.SetUp(this->bottom_, this->top_);
  const Dtype loss = layer.Forward(this->bottom_, this->top_);
  layer.Backward(this->top_, vector<bool>{false, true, false}, this->bottom_);

  LayerParameter euclidean_param;
  EuclideanLossLayer<Dtype> euclidean(euclidean_param);
  Blob<Dtype> student_copy, euclidean_loss;
  student_copy.CopyFrom(*this->student_, false, true);
  vector<Blob<Dtype>*> euclidean_bottom{this->teacher_, &student_copy};
  vector<Blob<Dtype>*> euclidean_top{&euclidean_loss};
  euclidean.SetUp(euclidean_bottom, euclidean_top);
  const Dtype expected = euclidean.Forward(euclidean_bottom, euclidean_top);
  euclidean.Backward(euclidean_top, vector<bool>{false, true}, euclidean_bottom);

  EXPECT_GT(loss, 0);
  EXPECT_NEAR(loss, expected, 1e-6);
  for (int i = 0; i < student_copy.count(); ++i) {
    EXPECT_NEAR(this->student_->cpu_diff()[i], student_copy.cpu_diff()[i], 1e-6) << i;
  }
}

TYPED_TEST(RoIDistillationLossLayerTest, AveragesOverRealRegionsOfEachImage) {
  typedef typename TypeParam::Dtype Dtype;
  this->Pad(1);
  const Dtype image0 = (this->SquaredDistance(0) + this->SquaredDistance(2)) / 2;
  const Dtype image1 =
      (this->SquaredDistance(3) + this->SquaredDistance(4) + this->SquaredDistance(5)) / 3;
  const Dtype expected = (image0 + image1) / 4;  // 1/(2N), N = 2
  EXPECT_NEAR(this->ForwardLoss(0), expected, 1e-5);
  EXPECT_NEAR(this->loss_->cpu_data()[0], expected, 1e-5);
}

TYPED_TEST(RoIDistillationLossLayerTest, TopKKeepsHighestScoresLowerRowOnTies) {
  typedef typename TypeParam::Dtype Dtype;
  // Image 0: rows 1 (0.9) and 2 (0.5); image 1: rows 3 and 4 tie at 0.7, row 3 first.
  const Dtype top2 = (1 / Dtype(4)) * ((this->SquaredDistance(1) + this->SquaredDistance(2)) / 2 +
      (this->SquaredDistance(3) + this->SquaredDistance(4)) / 2);
  EXPECT_NEAR(this->ForwardLoss(2), top2, 1e-5);
  const Dtype top1 = (1 / Dtype(4)) * (this->SquaredDistance(1) + this->SquaredDistance(3));
  EXPECT_NEAR(this->ForwardLoss(1), top1, 1e-5);
}

TYPED_TEST(RoIDistillationLossLayerTest, TopKSkipsPaddingAndLargerTopKTakesAll) {
  typedef typename TypeParam::Dtype Dtype;
  this->Pad(1);  // image 0's best score
  const Dtype top1 = (1 / Dtype(4)) * (this->SquaredDistance(2) + this->SquaredDistance(3));
  EXPECT_NEAR(this->ForwardLoss(1), top1, 1e-5);
  const Dtype all = (1 / Dtype(4)) * ((this->SquaredDistance(0) + this->SquaredDistance(2)) / 2 +
      (this->SquaredDistance(3) + this->SquaredDistance(4) + this->SquaredDistance(5)) / 3);
  EXPECT_NEAR(this->ForwardLoss(10), all, 1e-5);
}

TYPED_TEST(RoIDistillationLossLayerTest, ImageWithOnlyPaddingContributesZero) {
  typedef typename TypeParam::Dtype Dtype;
  for (int r = 0; r < 3; ++r) this->Pad(r);
  const Dtype expected = (1 / Dtype(4)) *
      (this->SquaredDistance(3) + this->SquaredDistance(4) + this->SquaredDistance(5)) / 3;
  RoIDistillationLossLayer<Dtype> layer(this->param_);
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_NEAR(layer.Forward(this->bottom_, this->top_), expected, 1e-5);
  layer.Backward(this->top_, vector<bool>{false, true, false}, this->bottom_);
  const int dim = this->student_->count(1);
  for (int i = 0; i < 3 * dim; ++i) EXPECT_EQ(this->student_->cpu_diff()[i], Dtype(0));
  for (int i = 3 * dim; i < 6 * dim; ++i) EXPECT_NE(this->student_->cpu_diff()[i], Dtype(0));
}

TYPED_TEST(RoIDistillationLossLayerTest, GradientStudentWithPadding) {
  typedef typename TypeParam::Dtype Dtype;
  this->Pad(0);
  this->Pad(4);
  RoIDistillationLossLayer<Dtype> layer(this->param_);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientSingle(&layer, this->bottom_, this->top_, 1, -1, -1);
}

TYPED_TEST(RoIDistillationLossLayerTest, GradientStudentWithTopK) {
  typedef typename TypeParam::Dtype Dtype;
  this->Pad(2);
  this->param_.mutable_python_param()->set_param_str("top_k: 2");
  RoIDistillationLossLayer<Dtype> layer(this->param_);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientSingle(&layer, this->bottom_, this->top_, 1, -1, -1);
}

TYPED_TEST(RoIDistillationLossLayerTest, GradientTeacherWhenAsked) {
  typedef typename TypeParam::Dtype Dtype;
  this->Pad(4);
  this->param_.mutable_python_param()->set_param_str("top_k: 2");
  RoIDistillationLossLayer<Dtype> layer(this->param_);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientSingle(&layer, this->bottom_, this->top_, 0, -1, -1);
}

TYPED_TEST(RoIDistillationLossLayerTest, RejectsStudentShapeDifferentFromTeacher) {
  this->student_->Reshape(6, 2, 2, 1);
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->param_, this->bottom_, this->top_,
      "layer \"feat_loss\" (RoIDistillationLoss): bottom[1]: student features of shape "
      "6 2 2 1 (24) differ from the teacher's 6 2 2 2 (48)"));
}

TYPED_TEST(RoIDistillationLossLayerTest, RejectsRoIRowsNotMatchingFeatures) {
  this->rois_->Reshape(vector<int>{4, 6});
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->param_, this->bottom_, this->top_,
      "(RoIDistillationLoss): bottom[2]: expects (N*B, 6) RoI rows = (6, 6)"));
}

TYPED_TEST(RoIDistillationLossLayerTest, RejectsRowsNotDividingIntoImages) {
  this->rois_->mutable_cpu_data()[6 * 5] = 3;  // 1 + largest batch index = 4 images of 6 rows
  EXPECT_TRUE(LayerError(LayerStep::kForward, this->param_, this->bottom_, this->top_,
      "(RoIDistillationLoss): bottom[2]: 6 RoI rows cannot be 4 images"));
}

TYPED_TEST(RoIDistillationLossLayerTest, RejectsRowsNotGroupedPerImage) {
  this->rois_->mutable_cpu_data()[6 * 2] = 1;
  this->rois_->mutable_cpu_data()[6 * 3] = 0;
  EXPECT_TRUE(LayerError(LayerStep::kForward, this->param_, this->bottom_, this->top_,
      "bottom[2]: row 2 has batch index 1, expected 0"));
}

TYPED_TEST(RoIDistillationLossLayerTest, RejectsNaNScoreWithTopK) {
  typedef typename TypeParam::Dtype Dtype;
  this->rois_->mutable_cpu_data()[6 * 4 + 5] = std::numeric_limits<Dtype>::quiet_NaN();
  this->param_.mutable_python_param()->set_param_str("top_k: 1");
  EXPECT_TRUE(LayerError(LayerStep::kForward, this->param_, this->bottom_, this->top_,
      "bottom[2]: row 4 has score NaN"));
}

TYPED_TEST(RoIDistillationLossLayerTest, RejectsMissingRoIBottom) {
  this->bottom_.pop_back();
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->param_, this->bottom_, this->top_,
      "(RoIDistillationLoss): bottom: takes 3 blob(s), got 2"));
}

TYPED_TEST(RoIDistillationLossLayerTest, RejectsNegativeTopK) {
  this->param_.mutable_python_param()->set_param_str("top_k: -1");
  EXPECT_TRUE(LayerError(LayerStep::kSetUp, this->param_, this->bottom_, this->top_,
      "python_param.param_str: cannot parse \"top_k: -1\""));
}

}  // namespace caffe
