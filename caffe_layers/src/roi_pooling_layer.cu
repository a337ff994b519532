#include <vector>

#include "caffe/util/gpu_util.cuh"
#include "caffe/util/math_functions.hpp"
#include "mlic_layers/roi_pooling_layer.hpp"

namespace caffe {

// One thread per output (r, c, ph, pw); the same bins as Forward_cpu.
template <typename Dtype>
__global__ void ROIPoolingForward(const int count, const Dtype* features, const Dtype* rois,
    const int channels, const int height, const int width, const int pooled_h,
    const int pooled_w, const Dtype spatial_scale, const Dtype score_scale,
    const Dtype score_bias, Dtype* pooled, int* argmax) {
  CUDA_KERNEL_LOOP(index, count) {
    const int pw = index % pooled_w;
    const int ph = (index / pooled_w) % pooled_h;
    const int c = (index / pooled_w / pooled_h) % channels;
    const int r = index / pooled_w / pooled_h / channels;
    const Dtype* roi = rois + 6 * r;
    if (roi[1] < 0) {
      pooled[index] = 0;
      argmax[index] = -1;
      continue;
    }
    const int start_w = static_cast<int>(round(roi[1] * spatial_scale));
    const int start_h = static_cast<int>(round(roi[2] * spatial_scale));
    const int end_w = static_cast<int>(round(roi[3] * spatial_scale));
    const int end_h = static_cast<int>(round(roi[4] * spatial_scale));
    const int roi_w = max(end_w - start_w + 1, 1);
    const int roi_h = max(end_h - start_h + 1, 1);
    const int hstart = min(max(start_h + ph * roi_h / pooled_h, 0), height);
    const int hend = min(max(start_h + ((ph + 1) * roi_h + pooled_h - 1) / pooled_h, 0), height);
    const int wstart = min(max(start_w + pw * roi_w / pooled_w, 0), width);
    const int wend = min(max(start_w + ((pw + 1) * roi_w + pooled_w - 1) / pooled_w, 0), width);
    const Dtype* channel = features + (static_cast<int>(roi[0]) * channels + c) * height * width;
    int best = -1;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        const int i = h * width + w;
        if (best < 0 || channel[i] > channel[best]) best = i;
      }
    }
    pooled[index] = best < 0 ? Dtype(0) : (score_scale * roi[5] + score_bias) * channel[best];
    argmax[index] = best;
  }
}

// One thread per output, adding into its argmax input. Overlapping RoIs share inputs, hence
// the atomic add (a per-input gather over all RoIs would cost R times more with B = 500).
template <typename Dtype>
__global__ void ROIPoolingBackward(const int count, const Dtype* top_diff, const int* argmax,
    const Dtype* rois, const int channels, const int plane, const int bins,
    const Dtype score_scale, const Dtype score_bias, Dtype* bottom_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    if (argmax[index] < 0) continue;  // empty bin or padding row
    const int c = (index / bins) % channels;
    const Dtype* roi = rois + 6 * (index / bins / channels);
    const Dtype factor = score_scale * roi[5] + score_bias;
    caffe_gpu_atomic_add(factor * top_diff[index],
        bottom_diff + (static_cast<int>(roi[0]) * channels + c) * plane + argmax[index]);
  }
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  // Checked on the host (R x 6 values) so a bad row is an error, not an out-of-bounds read.
  CheckBatchIndices(bottom);
  const int count = top[0]->count();
  if (count == 0) return;
  // NOLINT_NEXT_LINE(whitespace/operators)
  ROIPoolingForward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), channels_, height_, width_,
      pooled_h_, pooled_w_, spatial_scale_, score_scale_, score_bias_,
      top[0]->mutable_gpu_data(), argmax_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (propagate_down[1]) {
    caffe_gpu_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_gpu_diff());
  }
  if (!propagate_down[0]) return;
  caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_gpu_diff());
  const int count = top[0]->count();
  if (count == 0) return;
  // NOLINT_NEXT_LINE(whitespace/operators)
  ROIPoolingBackward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, top[0]->gpu_diff(), argmax_.gpu_data(), bottom[1]->gpu_data(), channels_,
      height_ * width_, pooled_h_ * pooled_w_, score_scale_, score_bias_,
      bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(ROIPoolingLayer);

}  // namespace caffe
