#include "mlic_layers/roi_pooling_layer.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "caffe/util/math_functions.hpp"
#include "mlic_layers.pb.h"
#include "mlic_layers/layer_param.hpp"

namespace caffe {

template <typename Dtype>
void ROIPoolingLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CheckBlobCount(this->layer_param_, "bottom", bottom.size(), 2, 2);
  CheckBlobCount(this->layer_param_, "top", top.size(), 1, 1);
  mlic::ROIPoolingParameter param;
  ParseLayerParam(this->layer_param_, &param);
  if (param.pooled_h() == 0) {
    ThrowLayerParamError(this->layer_param_, "pooled_h", "must be > 0, got 0");
  }
  if (param.pooled_w() == 0) {
    ThrowLayerParamError(this->layer_param_, "pooled_w", "must be > 0, got 0");
  }
  if (!(param.spatial_scale() > 0)) {
    ThrowLayerParamError(this->layer_param_, "spatial_scale",
        "must be > 0, got " + ToString(param.spatial_scale()));
  }
  pooled_h_ = param.pooled_h();
  pooled_w_ = param.pooled_w();
  spatial_scale_ = param.spatial_scale();
  score_scale_ = param.score_scale();
  score_bias_ = param.score_bias();
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  if (bottom[0]->num_axes() != 4) {
    ThrowLayerParamError(this->layer_param_, "bottom[0]",
        "expects (N, C, H, W) features, got shape " + bottom[0]->shape_string());
  }
  if (bottom[1]->num_axes() < 2 || bottom[1]->count(1) != 6) {
    ThrowLayerParamError(this->layer_param_, "bottom[1]",
        "expects (R, 6) RoI rows [batch_index x1 y1 x2 y2 score], got shape " +
        bottom[1]->shape_string());
  }
  channels_ = bottom[0]->channels();
  height_ = bottom[0]->height();
  width_ = bottom[0]->width();
  top[0]->Reshape(bottom[1]->num(), channels_, pooled_h_, pooled_w_);
  argmax_.Reshape(bottom[1]->num(), channels_, pooled_h_, pooled_w_);
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::CheckBatchIndices(const vector<Blob<Dtype>*>& bottom) const {
  const Dtype* rois = bottom[1]->cpu_data();
  const int num_images = bottom[0]->num();
  for (int r = 0; r < bottom[1]->num(); ++r) {
    const Dtype* roi = rois + 6 * r;
    if (roi[1] < 0) continue;  // padding: never read
    if (!(roi[0] >= 0 && roi[0] < num_images && roi[0] == std::floor(roi[0]))) {
      ThrowLayerParamError(this->layer_param_, "bottom[1]", "row " + ToString(r) +
          " has batch index " + ToString(roi[0]) + ", not an image of bottom[0] (0 to " +
          ToString(num_images - 1) + ")");
    }
  }
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CheckBatchIndices(bottom);
  const Dtype* features = bottom[0]->cpu_data();
  const Dtype* rois = bottom[1]->cpu_data();
  Dtype* pooled = top[0]->mutable_cpu_data();
  int* argmax = argmax_.mutable_cpu_data();
  const int plane = height_ * width_;
  for (int r = 0; r < bottom[1]->num(); ++r) {
    const Dtype* roi = rois + 6 * r;
    Dtype* roi_pooled = pooled + top[0]->offset(r);
    int* roi_argmax = argmax + argmax_.offset(r);
    if (roi[1] < 0) {
      caffe_set(top[0]->count(1), Dtype(0), roi_pooled);
      caffe_set(argmax_.count(1), -1, roi_argmax);
      continue;
    }
    const int start_w = static_cast<int>(std::round(roi[1] * spatial_scale_));
    const int start_h = static_cast<int>(std::round(roi[2] * spatial_scale_));
    const int end_w = static_cast<int>(std::round(roi[3] * spatial_scale_));
    const int end_h = static_cast<int>(std::round(roi[4] * spatial_scale_));
    const int roi_w = std::max(end_w - start_w + 1, 1);
    const int roi_h = std::max(end_h - start_h + 1, 1);
    const Dtype factor = score_scale_ * roi[5] + score_bias_;
    const Dtype* image = features + bottom[0]->offset(static_cast<int>(roi[0]));
    for (int c = 0; c < channels_; ++c) {
      const Dtype* channel = image + c * plane;
      for (int ph = 0; ph < pooled_h_; ++ph) {
        // Integer bin bounds: exactly floor / ceil of ph * roi_h / pooled_h.
        const int hstart = std::min(std::max(start_h + ph * roi_h / pooled_h_, 0), height_);
        const int hend = std::min(std::max(
            start_h + ((ph + 1) * roi_h + pooled_h_ - 1) / pooled_h_, 0), height_);
        for (int pw = 0; pw < pooled_w_; ++pw) {
          const int wstart = std::min(std::max(start_w + pw * roi_w / pooled_w_, 0), width_);
          const int wend = std::min(std::max(
              start_w + ((pw + 1) * roi_w + pooled_w_ - 1) / pooled_w_, 0), width_);
          int best = -1;
          for (int h = hstart; h < hend; ++h) {
            for (int w = wstart; w < wend; ++w) {
              const int index = h * width_ + w;
              if (best < 0 || channel[index] > channel[best]) best = index;
            }
          }
          const int out = (c * pooled_h_ + ph) * pooled_w_ + pw;
          roi_pooled[out] = best < 0 ? Dtype(0) : factor * channel[best];
          roi_argmax[out] = best;
        }
      }
    }
  }
}

template <typename Dtype>
void ROIPoolingLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (propagate_down[1]) {
    caffe_set(bottom[1]->count(), Dtype(0), bottom[1]->mutable_cpu_diff());
  }
  if (!propagate_down[0]) return;
  const Dtype* rois = bottom[1]->cpu_data();
  const Dtype* top_diff = top[0]->cpu_diff();
  const int* argmax = argmax_.cpu_data();
  Dtype* bottom_diff = bottom[0]->mutable_cpu_diff();
  caffe_set(bottom[0]->count(), Dtype(0), bottom_diff);
  const int plane = height_ * width_;
  const int bins = pooled_h_ * pooled_w_;
  for (int r = 0; r < top[0]->num(); ++r) {
    const Dtype* roi = rois + 6 * r;
    if (roi[1] < 0) continue;
    const Dtype factor = score_scale_ * roi[5] + score_bias_;
    Dtype* image_diff = bottom_diff + bottom[0]->offset(static_cast<int>(roi[0]));
    for (int c = 0; c < channels_; ++c) {
      const int first = top[0]->offset(r, c);
      for (int i = first; i < first + bins; ++i) {
        if (argmax[i] >= 0) image_diff[c * plane + argmax[i]] += factor * top_diff[i];
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(ROIPoolingLayer);
#endif

INSTANTIATE_CLASS(ROIPoolingLayer);
REGISTER_LAYER_CLASS(ROIPooling);

}  // namespace caffe
