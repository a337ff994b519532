#include <vector>

#include "mlic_layers/wsd_roigen_layer.hpp"

namespace caffe {

template <typename Dtype>
__global__ void WsdRoigenForward(const int rows, const int num_proposals,
    const Dtype* lists, Dtype* rois) {
  CUDA_KERNEL_LOOP(r, rows) {
    rois[6 * r] = r / num_proposals;
    for (int k = 0; k < 5; ++k) rois[6 * r + 1 + k] = lists[5 * r + k];
  }
}

template <typename Dtype>
void WsdRoigenLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int rows = top[0]->num();
  // NOLINT_NEXT_LINE(whitespace/operators)
  WsdRoigenForward<Dtype><<<CAFFE_GET_BLOCKS(rows), CAFFE_CUDA_NUM_THREADS>>>(
      rows, num_proposals_, bottom[0]->gpu_data(), top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FORWARD(WsdRoigenLayer);

}  // namespace caffe
