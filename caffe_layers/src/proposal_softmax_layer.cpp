#include "mlic_layers/proposal_softmax_layer.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "mlic_layers.pb.h"
#include "mlic_layers/layer_param.hpp"

namespace caffe {

template <typename Dtype>
void ProposalSoftmaxLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CheckBlobCount(this->layer_param_, "bottom", bottom.size(), 2, 2);
  CheckBlobCount(this->layer_param_, "top", top.size(), 1, 1);
  mlic::ProposalSoftmaxParameter unused;
  ParseLayerParam(this->layer_param_, &unused);
}

template <typename Dtype>
void ProposalSoftmaxLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  if (bottom[0]->num_axes() < 2 || bottom[0]->count() == 0) {
    ThrowLayerParamError(this->layer_param_, "bottom[0]",
        "expects (N, B, C...) scores with proposals on axis 1, got shape " +
        bottom[0]->shape_string());
  }
  num_images_ = bottom[0]->shape(0);
  num_proposals_ = bottom[0]->shape(1);
  inner_num_ = bottom[0]->count(2);
  const int rows = num_images_ * num_proposals_;
  if (bottom[1]->num_axes() < 1 || bottom[1]->shape(0) != rows || bottom[1]->count(1) != 6) {
    ThrowLayerParamError(this->layer_param_, "bottom[1]",
        "expects (N*B, 6) RoI rows = (" + ToString(rows) + ", 6) for scores of shape " +
        bottom[0]->shape_string() + ", got shape " + bottom[1]->shape_string());
  }
  top[0]->ReshapeLike(*bottom[0]);
}

template <typename Dtype>
void ProposalSoftmaxLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Dtype* scores = bottom[0]->cpu_data();
  const Dtype* rois = bottom[1]->cpu_data();
  Dtype* prob = top[0]->mutable_cpu_data();
  const int B = num_proposals_;
  const int C = inner_num_;
  for (int n = 0; n < num_images_; ++n) {
    const Dtype* image_rois = rois + n * B * 6;
    const Dtype* s = scores + n * B * C;
    Dtype* p = prob + n * B * C;
    for (int c = 0; c < C; ++c) {
      bool any_real = false;
      Dtype max_score = 0;
      for (int b = 0; b < B; ++b) {
        if (image_rois[6 * b + 1] < 0) continue;
        max_score = any_real ? std::max(max_score, s[b * C + c]) : s[b * C + c];
        any_real = true;
      }
      Dtype sum = 0;
      for (int b = 0; b < B; ++b) {
        p[b * C + c] = image_rois[6 * b + 1] < 0 ? Dtype(0) : std::exp(s[b * C + c] - max_score);
        sum += p[b * C + c];
      }
      // sum >= 1 whenever the image has a real proposal (its max contributes exp(0)).
      if (any_real) {
        for (int b = 0; b < B; ++b) p[b * C + c] /= sum;
      }
    }
  }
}

template <typename Dtype>
void ProposalSoftmaxLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  // d score_b = p_b (d p_b - sum_b' p_b' d p_b'); padding has p = 0 and so gets 0.
  const Dtype* prob = top[0]->cpu_data();
  const Dtype* prob_diff = top[0]->cpu_diff();
  Dtype* score_diff = bottom[0]->mutable_cpu_diff();
  const int B = num_proposals_;
  const int C = inner_num_;
  for (int n = 0; n < num_images_; ++n) {
    const int offset = n * B * C;
    for (int c = 0; c < C; ++c) {
      Dtype dot = 0;
      for (int b = 0; b < B; ++b) {
        dot += prob[offset + b * C + c] * prob_diff[offset + b * C + c];
      }
      for (int b = 0; b < B; ++b) {
        const int i = offset + b * C + c;
        score_diff[i] = prob[i] * (prob_diff[i] - dot);
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(ProposalSoftmaxLayer);
#endif

INSTANTIATE_CLASS(ProposalSoftmaxLayer);
REGISTER_LAYER_CLASS(ProposalSoftmax);

}  // namespace caffe
