#include <vector>

#include "mlic_layers/proposal_softmax_layer.hpp"

namespace caffe {

// One thread per (image, class): B is a few hundred at most, so a serial loop over the
// proposals is simpler than a reduction and still keeps N*C threads busy.
template <typename Dtype>
__global__ void ProposalSoftmaxForward(const int num_columns, const int num_proposals,
    const int inner_num, const Dtype* scores, const Dtype* rois, Dtype* prob) {
  CUDA_KERNEL_LOOP(index, num_columns) {
    const int n = index / inner_num;
    const int c = index % inner_num;
    const Dtype* image_rois = rois + n * num_proposals * 6;
    const Dtype* s = scores + n * num_proposals * inner_num + c;
    Dtype* p = prob + n * num_proposals * inner_num + c;
    bool any_real = false;
    Dtype max_score = 0;
    for (int b = 0; b < num_proposals; ++b) {
      if (image_rois[6 * b + 1] < 0) continue;
      max_score = any_real ? max(max_score, s[b * inner_num]) : s[b * inner_num];
      any_real = true;
    }
    Dtype sum = 0;
    for (int b = 0; b < num_proposals; ++b) {
      p[b * inner_num] = image_rois[6 * b + 1] < 0 ? Dtype(0) : exp(s[b * inner_num] - max_score);
      sum += p[b * inner_num];
    }
    if (any_real) {
      for (int b = 0; b < num_proposals; ++b) p[b * inner_num] /= sum;
    }
  }
}

template <typename Dtype>
__global__ void ProposalSoftmaxBackward(const int num_columns, const int num_proposals,
    const int inner_num, const Dtype* prob, const Dtype* prob_diff, Dtype* score_diff) {
  CUDA_KERNEL_LOOP(index, num_columns) {
    const int offset = (index / inner_num) * num_proposals * inner_num + index % inner_num;
    Dtype dot = 0;
    for (int b = 0; b < num_proposals; ++b) {
      dot += prob[offset + b * inner_num] * prob_diff[offset + b * inner_num];
    }
    for (int b = 0; b < num_proposals; ++b) {
      const int i = offset + b * inner_num;
      score_diff[i] = prob[i] * (prob_diff[i] - dot);
    }
  }
}

template <typename Dtype>
void ProposalSoftmaxLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int num_columns = num_images_ * inner_num_;
  // NOLINT_NEXT_LINE(whitespace/operators)
  ProposalSoftmaxForward<Dtype><<<CAFFE_GET_BLOCKS(num_columns), CAFFE_CUDA_NUM_THREADS>>>(
      num_columns, num_proposals_, inner_num_, bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void ProposalSoftmaxLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;
  const int num_columns = num_images_ * inner_num_;
  // NOLINT_NEXT_LINE(whitespace/operators)
  ProposalSoftmaxBackward<Dtype><<<CAFFE_GET_BLOCKS(num_columns), CAFFE_CUDA_NUM_THREADS>>>(
      num_columns, num_proposals_, inner_num_, top[0]->gpu_data(), top[0]->gpu_diff(),
      bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(ProposalSoftmaxLayer);

}  // namespace caffe
