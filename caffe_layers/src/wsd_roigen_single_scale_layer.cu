#include <vector>

#include "mlic_layers/wsd_roigen_single_scale_layer.hpp"

namespace caffe {

template <typename Dtype>
__global__ void WsdRoigenSingleScaleForward(const int rows, const int num_proposals,
    const Dtype single_scale, const Dtype origin_x, const Dtype origin_y,
    const Dtype* lists, Dtype* rois) {
  CUDA_KERNEL_LOOP(r, rows) {
    const Dtype* proposal = lists + 5 * r;
    Dtype* roi = rois + 6 * r;
    roi[0] = r / num_proposals;
    for (int k = 0; k < 5; ++k) roi[1 + k] = proposal[k];
    if (proposal[0] < 0) continue;
    for (int k = 0; k < 4; ++k) {
      roi[1 + k] = floor(single_scale * proposal[k] / (k % 2 == 0 ? origin_x : origin_y));
    }
  }
}

template <typename Dtype>
void WsdRoigenSingleScaleLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int rows = top[0]->num();
  // NOLINT_NEXT_LINE(whitespace/operators)
  WsdRoigenSingleScaleForward<Dtype><<<CAFFE_GET_BLOCKS(rows), CAFFE_CUDA_NUM_THREADS>>>(
      rows, num_proposals_, single_scale_, origin_x_, origin_y_, bottom[0]->gpu_data(),
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FORWARD(WsdRoigenSingleScaleLayer);

}  // namespace caffe
