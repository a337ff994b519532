#ifndef MLIC_LAYERS_CROSS_ENTROPY_LOSS_LAYER_HPP_
#define MLIC_LAYERS_CROSS_ENTROPY_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/layers/loss_layer.hpp"

namespace caffe {

// The logarithms' arguments are clamped to at least this (as in the original fork), which
// bounds the loss of a confidently wrong prediction.
const double kCrossEntropyFloor = 1e-4;

// Binary cross entropy on probabilities (not logits), as WSDDN's image-level loss:
//   loss = -(1/N) sum_i [y_i log max(p_i, 1e-4) + (1 - y_i) log max(1 - p_i, 1e-4)]
// bottom[0]: probabilities p, N images (e.g. (N, 1, C, 1), WSDDN's image_level_score);
// bottom[1]: targets y with the same number of values per image (e.g. (N, C)).
//
// Ignored targets: with `loss_param { ignore_label: L }` (the field stock Caffe's loss layers
// read, so that one setting reads the same on every loss of a net) a target equal to L (e.g. -1,
// a VOC class that is only "difficult" in the image) adds nothing to the loss and gets a zero
// gradient. The original fork has no ignore label. N stays the batch size (shape(0)) also when
// targets are ignored: the original divides by N, as does stock SigmoidCrossEntropyLoss under
// its default normalization (BATCH_SIZE), which the students' label loss uses; loss_param's
// normalization / normalize may only ask for that.
//
// Targets: any y in [0, 1] is used as it is (soft targets: the formula is defined for them;
// the original fork's forward treated every y != 1 as 0, which is the same for 0/1 labels). Any
// other value (negative other than ignore_label, above 1, NaN) is an error in Forward rather
// than a silently meaningless loss.
//
// The gradient w.r.t. p is the original fork's, also where the loss is clamped:
//   d loss / d p_i = (1/N) [-y_i / max(p_i, 1e-4) + (1 - y_i) / max(1 - p_i, 1e-4)]
// (times loss_weight). So a clamped term keeps pushing p back (at p = 5e-5 with y = 1 the
// gradient is -1e4/N), while the loss itself is flat there: below 1e-4 (and above 1 - 1e-4)
// the gradient is not the loss's derivative. The targets get none (asking for it is an error,
// as in SigmoidCrossEntropyLoss).
template <typename Dtype>
class CrossEntropyLossLayer : public LossLayer<Dtype> {
 public:
  explicit CrossEntropyLossLayer(const LayerParameter& param) : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual inline const char* type() const { return "CrossEntropyLoss"; }
  // LossLayer fixes the counts with CHECKs, which abort; CheckBlobCount in LayerSetUp throws
  // instead. MinTopBlobs keeps the Net's automatic loss top.
  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int ExactNumTopBlobs() const { return -1; }
  virtual inline int MinTopBlobs() const { return 1; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  // Throws unless every target is in [0, 1] or equal to ignore_label.
  void CheckTargets(const Blob<Dtype>& targets) const;
  void CheckNoTargetGradient(const vector<bool>& propagate_down) const;

  inline bool Ignored(Dtype target) const {
    return has_ignore_label_ && target == ignore_label_;
  }

  bool has_ignore_label_;
  Dtype ignore_label_;  // loss_param.ignore_label (an int32 there)
  Blob<Dtype> ones_;  // to sum the per-value losses on the GPU (they may be negative for p > 1)
};

}  // namespace caffe

#endif  // MLIC_LAYERS_CROSS_ENTROPY_LOSS_LAYER_HPP_
