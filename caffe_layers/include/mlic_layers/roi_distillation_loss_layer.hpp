#ifndef MLIC_LAYERS_ROI_DISTILLATION_LOSS_LAYER_HPP_
#define MLIC_LAYERS_ROI_DISTILLATION_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"

namespace caffe {

// Stage-1 feature distillation loss:
//   L = 1/(2N) sum_n 1/|R'_n| sum_{R in R'_n} ||f^T_R - f^S_R||^2
// bottom[0]: teacher RoI features (N*B, D...), bottom[1]: student RoI features (same shape),
// bottom[2]: the (N*B, 6) RoI rows [batch x1 y1 x2 y2 s] that produced them.
//
// Rows must be grouped per image in order, as WsdRoigen writes them: row r belongs to image
// r / B. N is 1 + the largest batch index over all rows (WsdRoigen keeps the batch index on
// padding rows too), B = rows / N; rows that break this grouping are an error.
// R'_n is the set of image n's real rows (x1 >= 0), or with top_k > 0 only its top_k real rows
// by score s (ties: the lower row first). An image with no selected row contributes 0.
// With no padding and top_k 0 this is EuclideanLoss over the N*B rows.
//
// Backward gives the student its gradient; when asked (the nets set propagate_down: 0 for the
// teacher) the teacher gets the true gradient, the student's negated, as EuclideanLoss does.
// Nothing flows to the RoI rows.
template <typename Dtype>
class RoIDistillationLossLayer : public Layer<Dtype> {
 public:
  explicit RoIDistillationLossLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual inline const char* type() const { return "RoIDistillationLoss"; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index != 2;
  }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  // Fills row_weights_ with 1/(2N|R'_n|) for each selected row and 0 for the others.
  void ComputeRowWeights(const Blob<Dtype>& rois);

  int top_k_;
  Blob<Dtype> row_weights_;    // (N*B)
  Blob<Dtype> diff_;           // student - teacher
  Blob<Dtype> weighted_diff_;  // diff_ scaled by its row's weight: half of dL/d student
};

}  // namespace caffe

#endif  // MLIC_LAYERS_ROI_DISTILLATION_LOSS_LAYER_HPP_
