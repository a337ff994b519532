#include "mlic_layers/interp_layer.hpp"

#include <vector>

#include "caffe/util/math_functions.hpp"
#include "mlic_layers.pb.h"
#include "mlic_layers/layer_param.hpp"

namespace caffe {

template <typename Dtype>
void InterpLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const LayerParameter& layer = this->layer_param_;
  CheckBlobCount(layer, "bottom", bottom.size(), 1, 2);
  CheckBlobCount(layer, "top", top.size(), 1, 1);
  mlic::InterpParameter param;
  ParseLayerParam(layer, &param);
  pad_beg_ = param.pad_beg();
  pad_end_ = param.pad_end();
  if (pad_beg_ > 0) {
    ThrowLayerParamError(layer, "pad_beg", "must be <= 0 (only cropping is supported), got " +
        ToString(pad_beg_));
  }
  if (pad_end_ > 0) {
    ThrowLayerParamError(layer, "pad_end", "must be <= 0 (only cropping is supported), got " +
        ToString(pad_end_));
  }
  const bool by_size = param.has_height() || param.has_width();
  const bool by_factor = param.has_zoom_factor() || param.has_shrink_factor();
  if (by_size) {
    if (!param.has_height() || !param.has_width()) {
      ThrowLayerParamError(layer, param.has_height() ? "width" : "height",
          "must be given together with " + std::string(param.has_height() ? "height" : "width"));
    }
    if (param.height() < 1 || param.width() < 1) {
      ThrowLayerParamError(layer, param.height() < 1 ? "height" : "width",
          "must be positive, got " + ToString(param.height() < 1 ? param.height() :
          param.width()));
    }
    if (by_factor) {
      ThrowLayerParamError(layer, param.has_zoom_factor() ? "zoom_factor" : "shrink_factor",
          "cannot be combined with height and width: give one way of sizing the output");
    }
  }
  if (param.zoom_factor() < 1) {
    ThrowLayerParamError(layer, "zoom_factor", "must be >= 1, got " +
        ToString(param.zoom_factor()));
  }
  if (param.shrink_factor() < 1) {
    ThrowLayerParamError(layer, "shrink_factor", "must be >= 1, got " +
        ToString(param.shrink_factor()));
  }
  if (bottom.size() == 2 && (by_size || by_factor)) {
    ThrowLayerParamError(layer, "bottom", "a second bottom sets the output size; it cannot be "
        "combined with height/width, zoom_factor or shrink_factor");
  }
  if (bottom.size() == 1 && !by_size && !by_factor) {
    ThrowLayerParamError(layer, "python_param.param_str", "no output size: give height and "
        "width, zoom_factor and/or shrink_factor, or a second bottom of the output size");
  }
  fixed_height_ = by_size ? param.height() : 0;
  fixed_width_ = by_size ? param.width() : 0;
  zoom_factor_ = param.zoom_factor();
  shrink_factor_ = param.shrink_factor();
}

template <typename Dtype>
void InterpLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  for (int i = 0; i < bottom.size(); ++i) {
    if (bottom[i]->num_axes() != 4) {
      ThrowLayerParamError(this->layer_param_, "bottom[" + ToString(i) + "]",
          "expects (N, C, H, W) maps, got shape " + bottom[i]->shape_string());
    }
  }
  height_in_ = bottom[0]->height();
  width_in_ = bottom[0]->width();
  height_in_eff_ = height_in_ + pad_beg_ + pad_end_;
  width_in_eff_ = width_in_ + pad_beg_ + pad_end_;
  if (height_in_eff_ < 1 || width_in_eff_ < 1) {
    ThrowLayerParamError(this->layer_param_, "pad_beg, pad_end", "cropping " +
        ToString(-pad_beg_) + " and " + ToString(-pad_end_) + " leaves nothing of the input " +
        bottom[0]->shape_string());
  }
  if (fixed_height_ > 0) {
    height_out_ = fixed_height_;
    width_out_ = fixed_width_;
  } else if (bottom.size() == 2) {
    height_out_ = bottom[1]->height();
    width_out_ = bottom[1]->width();
    if (height_out_ < 1 || width_out_ < 1) {
      ThrowLayerParamError(this->layer_param_, "bottom[1]",
          "gives an empty output size: shape " + bottom[1]->shape_string());
    }
  } else {
    height_out_ = (height_in_eff_ - 1) / shrink_factor_ + 1;
    width_out_ = (width_in_eff_ - 1) / shrink_factor_ + 1;
    height_out_ += (height_out_ - 1) * (zoom_factor_ - 1);
    width_out_ += (width_out_ - 1) * (zoom_factor_ - 1);
  }
  ratio_h_ = height_out_ > 1 ? Dtype(height_in_eff_ - 1) / (height_out_ - 1) : Dtype(0);
  ratio_w_ = width_out_ > 1 ? Dtype(width_in_eff_ - 1) / (width_out_ - 1) : Dtype(0);
  top[0]->Reshape(bottom[0]->num(), bottom[0]->channels(), height_out_, width_out_);
}

template <typename Dtype>
void InterpLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int planes = bottom[0]->num() * bottom[0]->channels();
  const int plane_in = height_in_ * width_in_;
  const int plane_out = height_out_ * width_out_;
  const Dtype* in = bottom[0]->cpu_data() - pad_beg_ * width_in_ - pad_beg_;
  Dtype* out = top[0]->mutable_cpu_data();
  for (int h = 0; h < height_out_; ++h) {
    int h0, dh;
    Dtype lh;
    InterpSamplePosition(h, ratio_h_, height_in_eff_, &h0, &dh, &lh);
    dh *= width_in_;
    for (int w = 0; w < width_out_; ++w) {
      int w0, dw;
      Dtype lw;
      InterpSamplePosition(w, ratio_w_, width_in_eff_, &w0, &dw, &lw);
      const Dtype* tap = in + h0 * width_in_ + w0;
      Dtype* value = out + h * width_out_ + w;
      for (int p = 0; p < planes; ++p, tap += plane_in, value += plane_out) {
        *value = (1 - lh) * ((1 - lw) * tap[0] + lw * tap[dw]) +
            lh * ((1 - lw) * tap[dh] + lw * tap[dh + dw]);
      }
    }
  }
}

template <typename Dtype>
void InterpLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  if (!propagate_down[0]) return;  // bottom[1] only gives a size
  const int planes = bottom[0]->num() * bottom[0]->channels();
  const int plane_in = height_in_ * width_in_;
  const int plane_out = height_out_ * width_out_;
  caffe_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_cpu_diff());
  Dtype* in_diff = bottom[0]->mutable_cpu_diff() - pad_beg_ * width_in_ - pad_beg_;
  const Dtype* out_diff = top[0]->cpu_diff();
  for (int h = 0; h < height_out_; ++h) {
    int h0, dh;
    Dtype lh;
    InterpSamplePosition(h, ratio_h_, height_in_eff_, &h0, &dh, &lh);
    dh *= width_in_;
    for (int w = 0; w < width_out_; ++w) {
      int w0, dw;
      Dtype lw;
      InterpSamplePosition(w, ratio_w_, width_in_eff_, &w0, &dw, &lw);
      Dtype* tap = in_diff + h0 * width_in_ + w0;
      const Dtype* grad = out_diff + h * width_out_ + w;
      for (int p = 0; p < planes; ++p, tap += plane_in, grad += plane_out) {
        tap[0] += (1 - lh) * (1 - lw) * *grad;
        tap[dw] += (1 - lh) * lw * *grad;
        tap[dh] += lh * (1 - lw) * *grad;
        tap[dh + dw] += lh * lw * *grad;
      }
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(InterpLayer);
#endif

INSTANTIATE_CLASS(InterpLayer);
REGISTER_LAYER_CLASS(Interp);

}  // namespace caffe
