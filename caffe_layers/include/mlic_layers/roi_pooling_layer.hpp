#ifndef MLIC_LAYERS_ROI_POOLING_LAYER_HPP_
#define MLIC_LAYERS_ROI_POOLING_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"

namespace caffe {

// Fast R-CNN RoI max pooling, with every output scaled by the proposal's score as in
// MLIC-KD-WSD: top(r, c, ph, pw) = (score_scale * s_r + score_bias) * max over the bin.
// Bottoms: features (N, C, H, W) and RoI rows (R, 6) or (R, 6, 1, 1)
// [batch_index x1 y1 x2 y2 s] in input pixels. Top: (R, C, pooled_h, pooled_w).
// Box corners are multiplied by spatial_scale and rounded (half away from zero); bin ph
// covers rows [floor(ph * h / PH), ceil((ph + 1) * h / PH)) from the RoI start, clipped to
// the map, h = max(y2 - y1 + 1, 1) after scaling; an empty bin outputs 0. Padding rows
// (x1 < 0, see mlic_layers.proto) output zeros. The gradient of each output, times the same
// score factor, goes to its argmax input; the RoI rows take no gradient.
template <typename Dtype>
class ROIPoolingLayer : public Layer<Dtype> {
 public:
  explicit ROIPoolingLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual inline const char* type() const { return "ROIPooling"; }
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
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

  // Throws, naming the row, when a non-padding row's batch index is not an image of bottom[0].
  void CheckBatchIndices(const vector<Blob<Dtype>*>& bottom) const;

  int pooled_h_;
  int pooled_w_;
  Dtype spatial_scale_;
  Dtype score_scale_;
  Dtype score_bias_;
  int channels_;
  int height_;
  int width_;
  // Index h * W + w of each output's maximum in its feature plane; -1 for an empty bin or a
  // padding row.
  Blob<int> argmax_;
};

}  // namespace caffe

#endif  // MLIC_LAYERS_ROI_POOLING_LAYER_HPP_
