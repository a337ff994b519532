#ifndef MLIC_LAYERS_WSD_ROIGEN_SINGLE_SCALE_LAYER_HPP_
#define MLIC_LAYERS_WSD_ROIGEN_SINGLE_SCALE_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"

namespace caffe {

// WsdRoigen for a resized input: per-image proposal lists (N, 5B) [x1 y1 x2 y2 s]*B to RoI
// rows (N*B, 6) [batch_index x1' y1' x2' y2' s] with v' = floor(single_scale * v / origin),
// origin = origin_scale, or, with a second bottom (the image the proposals refer to, N x C x
// H x W), origin = W for x and H for y, which follows the image under multi-scale training.
// Padding rows (x1 < 0, see mlic_layers.proto) are copied unchanged. No gradient.
template <typename Dtype>
class WsdRoigenSingleScaleLayer : public Layer<Dtype> {
 public:
  explicit WsdRoigenSingleScaleLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual inline const char* type() const { return "WsdRoigenSingleScale"; }
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
  Dtype single_scale_;
  Dtype origin_scale_;
  Dtype origin_x_;  // what x coordinates are divided by: origin_scale or the image width
  Dtype origin_y_;
};

}  // namespace caffe

#endif  // MLIC_LAYERS_WSD_ROIGEN_SINGLE_SCALE_LAYER_HPP_
