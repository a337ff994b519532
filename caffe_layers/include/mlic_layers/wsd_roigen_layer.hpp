#ifndef MLIC_LAYERS_WSD_ROIGEN_LAYER_HPP_
#define MLIC_LAYERS_WSD_ROIGEN_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"

namespace caffe {

// Per-image proposal lists (N, 5B) [x1 y1 x2 y2 s]*B, as the data layer's label_roi is sliced,
// to one RoI row per proposal: (N*B, 6) [batch_index x1 y1 x2 y2 s]. Padding proposals
// (x1 < 0, see mlic_layers.proto) are copied as they are, so later layers can skip them.
// No parameters; no gradient (the proposals are data).
template <typename Dtype>
class WsdRoigenLayer : public Layer<Dtype> {
 public:
  explicit WsdRoigenLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual inline const char* type() const { return "WsdRoigen"; }
  virtual inline bool AllowForceBackward(const int bottom_index) const { return false; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {}
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {}

  int num_proposals_;  // B
};

}  // namespace caffe

#endif  // MLIC_LAYERS_WSD_ROIGEN_LAYER_HPP_
