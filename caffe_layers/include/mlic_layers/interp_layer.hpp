#ifndef MLIC_LAYERS_INTERP_LAYER_HPP_
#define MLIC_LAYERS_INTERP_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"

namespace caffe {

#ifdef __CUDACC__
#define MLIC_HOST_DEVICE __host__ __device__
#else
#define MLIC_HOST_DEVICE
#endif

// Where output index i samples along one axis: between input indices lo and lo + step,
// with weight frac on the second (step is 0 on the last input index). One definition for the
// CPU code and the CUDA kernels, so both sample the same positions.
template <typename Dtype>
MLIC_HOST_DEVICE inline void InterpSamplePosition(int i, Dtype ratio, int size_in, int* lo,
    int* step, Dtype* frac) {
  const Dtype position = ratio * i;
  *lo = static_cast<int>(position);
  *step = *lo < size_in - 1 ? 1 : 0;
  *frac = position - *lo;
}

// Bilinear resize of (N, C, H, W) maps, with DeepLab's Interp semantics (the student's
// 672 -> 224 resize Psi in MLIC-KD-WSD).
//
// The input is first cropped by the non-positive pad_beg / pad_end (the same on both axes):
// an effective input of H_eff = H + pad_beg + pad_end rows starting at row -pad_beg, and
// likewise for columns. The output size is then, with exactly one way of choosing it:
//   height and width (both)           : height x width
//   zoom_factor z only                : H_eff + (H_eff - 1) * (z - 1)
//   shrink_factor s only              : (H_eff - 1) / s + 1
//   shrink_factor and zoom_factor     : shrink first, then zoom, by the formulas above
//   none, with a second bottom        : the height and width of bottom[1] (its data unused)
// (and the same for widths). Sampling is corner-aligned: output row i reads input row
// i * (H_eff - 1) / (H_out - 1), or row 0 when H_out == 1, interpolating between the two
// neighbouring rows (and columns). Backward spreads each output's gradient onto those
// input values with the same weights; the cropped-away border gets none.
template <typename Dtype>
class InterpLayer : public Layer<Dtype> {
 public:
  explicit InterpLayer(const LayerParameter& param) : Layer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual inline const char* type() const { return "Interp"; }
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

  int fixed_height_, fixed_width_;    // the output size when given, else 0
  int zoom_factor_, shrink_factor_;    // 1 when not given
  int pad_beg_, pad_end_;
  int height_in_, width_in_;          // of bottom[0]
  int height_in_eff_, width_in_eff_;  // after cropping
  int height_out_, width_out_;
  Dtype ratio_h_, ratio_w_;           // input rows (columns) per output row (column)
};

}  // namespace caffe

#endif  // MLIC_LAYERS_INTERP_LAYER_HPP_
