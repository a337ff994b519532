#include <vector>

#include "caffe/util/math_functions.hpp"
#include "mlic_layers/roi_distillation_loss_layer.hpp"

namespace caffe {

template <typename Dtype>
__global__ void WeighRows(const int count, const int dim, const Dtype* row_weights,
    const Dtype* diff, Dtype* weighted) {
  CUDA_KERNEL_LOOP(i, count) {
    weighted[i] = row_weights[i / dim] * diff[i];
  }
}

template <typename Dtype>
void RoIDistillationLossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  // The selection reads the RoI rows on the host: they are N*B small rows.
  ComputeRowWeights(*bottom[2]);
  const int count = bottom[0]->count();
  caffe_gpu_sub(count, bottom[1]->gpu_data(), bottom[0]->gpu_data(), diff_.mutable_gpu_data());
  // NOLINT_NEXT_LINE(whitespace/operators)
  WeighRows<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->count(1), row_weights_.gpu_data(), diff_.gpu_data(),
      weighted_diff_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  Dtype loss;
  caffe_gpu_dot(count, diff_.gpu_data(), weighted_diff_.gpu_data(), &loss);
  top[0]->mutable_cpu_data()[0] = loss;
}

template <typename Dtype>
void RoIDistillationLossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const Dtype scale = 2 * top[0]->cpu_diff()[0];
  for (int i = 0; i < 2; ++i) {
    if (!propagate_down[i]) continue;
    caffe_gpu_scale(bottom[i]->count(), i == 1 ? scale : -scale, weighted_diff_.gpu_data(),
        bottom[i]->mutable_gpu_diff());
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(RoIDistillationLossLayer);

}  // namespace caffe
