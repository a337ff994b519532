#ifndef MLIC_LAYERS_PROPOSAL_SOFTMAX_LAYER_HPP_
#define MLIC_LAYERS_PROPOSAL_SOFTMAX_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"

namespace caffe {

// WSDDN's detection-stream softmax: over axis 1 (the B proposals) of an (N, B, C...) blob,
// separately for each image n and each inner position (class). bottom[1] holds the (N*B, 6)
// RoI rows [batch x1 y1 x2 y2 s]; row n*B + b describes proposal b of image n. A padding row
// (x1 < 0, see mlic_layers.proto) is left out of the softmax: its output is 0 and it takes no
// gradient, so padding does not dilute the real proposals' probabilities. An image without any
// real proposal outputs 0 everywhere. With no padding this is Caffe's Softmax with axis 1.
// No gradient to bottom[1] (the proposals are data).
template <typename Dtype>
class ProposalSoftmaxLayer : public Layer<Dtype> {
 public:
  explicit ProposalSoftmaxLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual inline const char* type() const { return "ProposalSoftmax"; }
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

  int num_images_;     // N
  int num_proposals_;  // B
  int inner_num_;      // C (times any further axes)
};

}  // namespace caffe

#endif  // MLIC_LAYERS_PROPOSAL_SOFTMAX_LAYER_HPP_
