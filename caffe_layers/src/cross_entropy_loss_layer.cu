#include <vector>

#include "caffe/util/math_functions.hpp"
#include "mlic_layers/cross_entropy_loss_layer.hpp"

namespace caffe {

template <typename Dtype>
__global__ void CrossEntropyLossForward(const int count, const Dtype* prob,
    const Dtype* target, const bool has_ignore_label, const Dtype ignore_label,
    const Dtype min_prob, Dtype* loss) {
  CUDA_KERNEL_LOOP(i, count) {
    const Dtype y = target[i];
    if (has_ignore_label && y == ignore_label) {
      loss[i] = 0;
    } else {
      loss[i] = -(y * log(max(prob[i], min_prob)) +
          (1 - y) * log(max(1 - prob[i], min_prob)));
    }
  }
}

// The original fork's gradient, clamped denominators included (see the header).
template <typename Dtype>
__global__ void CrossEntropyLossBackward(const int count, const Dtype* prob,
    const Dtype* target, const bool has_ignore_label, const Dtype ignore_label,
    const Dtype min_prob, const Dtype scale, Dtype* prob_diff) {
  CUDA_KERNEL_LOOP(i, count) {
    const Dtype p = prob[i];
    const Dtype y = target[i];
    prob_diff[i] = (has_ignore_label && y == ignore_label) ? Dtype(0) :
        scale * ((1 - y) / max(1 - p, min_prob) - y / max(p, min_prob));
  }
}

template <typename Dtype>
void CrossEntropyLossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CheckTargets(*bottom[1]);  // on the host: the targets are few (N x C)
  const int count = bottom[0]->count();
  // bottom[0]'s diff is free until Backward: scratch for the per-value losses.
  Dtype* loss_data = bottom[0]->mutable_gpu_diff();
  // NOLINT_NEXT_LINE(whitespace/operators)
  CrossEntropyLossForward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), has_ignore_label_, ignore_label_,
      Dtype(kCrossEntropyFloor), loss_data);
  CUDA_POST_KERNEL_CHECK;
  Dtype loss;
  caffe_gpu_dot(count, loss_data, ones_.gpu_data(), &loss);
  top[0]->mutable_cpu_data()[0] = loss / bottom[0]->shape(0);
  caffe_gpu_set(count, Dtype(0), loss_data);
}

template <typename Dtype>
void CrossEntropyLossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CheckNoTargetGradient(propagate_down);
  if (!propagate_down[0]) return;
  const int count = bottom[0]->count();
  const Dtype scale = top[0]->cpu_diff()[0] / bottom[0]->shape(0);
  // NOLINT_NEXT_LINE(whitespace/operators)
  CrossEntropyLossBackward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), has_ignore_label_, ignore_label_,
      Dtype(kCrossEntropyFloor), scale, bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(CrossEntropyLossLayer);

}  // namespace caffe
