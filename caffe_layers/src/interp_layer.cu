#include <vector>

#include "caffe/util/math_functions.hpp"
#include "mlic_layers/interp_layer.hpp"

namespace caffe {

// One thread per output value. `in` points at the first value of the cropped input.
template <typename Dtype>
__global__ void InterpForward(const int count, const Dtype* in, const int height_in,
    const int width_in, const int height_in_eff, const int width_in_eff,
    const Dtype ratio_h, const Dtype ratio_w, const int height_out, const int width_out,
    Dtype* out) {
  CUDA_KERNEL_LOOP(index, count) {
    const int w = index % width_out;
    const int h = (index / width_out) % height_out;
    const int plane = index / (width_out * height_out);
    int h0, dh, w0, dw;
    Dtype lh, lw;
    InterpSamplePosition(h, ratio_h, height_in_eff, &h0, &dh, &lh);
    InterpSamplePosition(w, ratio_w, width_in_eff, &w0, &dw, &lw);
    dh *= width_in;
    const Dtype* tap = in + plane * height_in * width_in + h0 * width_in + w0;
    out[index] = (1 - lh) * ((1 - lw) * tap[0] + lw * tap[dw]) +
        lh * ((1 - lw) * tap[dh] + lw * tap[dh + dw]);
  }
}

// One thread per output value, adding its gradient onto its four input taps; neighbouring
// outputs share taps, hence atomicAdd.
template <typename Dtype>
__global__ void InterpBackward(const int count, const Dtype* out_diff, const int height_in,
    const int width_in, const int height_in_eff, const int width_in_eff,
    const Dtype ratio_h, const Dtype ratio_w, const int height_out, const int width_out,
    Dtype* in_diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int w = index % width_out;
    const int h = (index / width_out) % height_out;
    const int plane = index / (width_out * height_out);
    int h0, dh, w0, dw;
    Dtype lh, lw;
    InterpSamplePosition(h, ratio_h, height_in_eff, &h0, &dh, &lh);
    InterpSamplePosition(w, ratio_w, width_in_eff, &w0, &dw, &lw);
    dh *= width_in;
    Dtype* tap = in_diff + plane * height_in * width_in + h0 * width_in + w0;
    const Dtype grad = out_diff[index];
    atomicAdd(tap, (1 - lh) * (1 - lw) * grad);
    atomicAdd(tap + dw, (1 - lh) * lw * grad);
    atomicAdd(tap + dh, lh * (1 - lw) * grad);
    atomicAdd(tap + dh + dw, lh * lw * grad);
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int count = top[0]->count();
  const Dtype* in = bottom[0]->gpu_data() - pad_beg_ * width_in_ - pad_beg_;
  // NOLINT_NEXT_LINE(whitespace/operators)
  InterpForward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, in, height_in_, width_in_, height_in_eff_, width_in_eff_, ratio_h_, ratio_w_,
      height_out_, width_out_, top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void InterpLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;  // bottom[1] only gives a size
  const int count = top[0]->count();
  caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_gpu_diff());
  Dtype* in_diff = bottom[0]->mutable_gpu_diff() - pad_beg_ * width_in_ - pad_beg_;
  // NOLINT_NEXT_LINE(whitespace/operators)
  InterpBackward<Dtype><<<CAFFE_GET_BLOCKS(count), CAFFE_CUDA_NUM_THREADS>>>(
      count, top[0]->gpu_diff(), height_in_, width_in_, height_in_eff_, width_in_eff_,
      ratio_h_, ratio_w_, height_out_, width_out_, in_diff);
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(InterpLayer);

}  // namespace caffe
