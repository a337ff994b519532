#include "mlic_layers/wsd_roigen_single_scale_layer.hpp"

#include <cmath>
#include <vector>

#include "mlic_layers.pb.h"
#include "mlic_layers/layer_param.hpp"

namespace caffe {

template <typename Dtype>
void WsdRoigenSingleScaleLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CheckBlobCount(this->layer_param_, "bottom", bottom.size(), 1, 2);
  CheckBlobCount(this->layer_param_, "top", top.size(), 1, 1);
  mlic::WsdRoigenSingleScaleParameter param;
  ParseLayerParam(this->layer_param_, &param);
  if (!(param.single_scale() > 0)) {
    ThrowLayerParamError(this->layer_param_, "single_scale",
        "must be set and > 0, got " + ToString(param.single_scale()));
  }
  if (bottom.size() == 1 && !(param.origin_scale() > 0)) {
    ThrowLayerParamError(this->layer_param_, "origin_scale",
        "must be set and > 0 without an image bottom, got " +
        ToString(param.origin_scale()));
  }
  single_scale_ = param.single_scale();
  origin_scale_ = param.origin_scale();
}

template <typename Dtype>
void WsdRoigenSingleScaleLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int per_image = bottom[0]->count(1);
  if (bottom[0]->num_axes() < 2 || per_image == 0 || per_image % 5 != 0) {
    ThrowLayerParamError(this->layer_param_, "bottom[0]",
        "expects (N, 5*B) proposal lists, got shape " + bottom[0]->shape_string());
  }
  origin_x_ = origin_scale_;
  origin_y_ = origin_scale_;
  if (bottom.size() == 2) {
    if (bottom[1]->num_axes() != 4 || bottom[1]->num() != bottom[0]->num() ||
        bottom[1]->count() == 0) {
      ThrowLayerParamError(this->layer_param_, "bottom[1]",
          "expects the (N, C, H, W) image of the " + ToString(bottom[0]->num()) +
          " proposal lists, got shape " + bottom[1]->shape_string());
    }
    origin_x_ = bottom[1]->width();
    origin_y_ = bottom[1]->height();
  }
  num_proposals_ = per_image / 5;
  vector<int> top_shape(2);
  top_shape[0] = bottom[0]->num() * num_proposals_;
  top_shape[1] = 6;
  top[0]->Reshape(top_shape);
}

template <typename Dtype>
void WsdRoigenSingleScaleLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Dtype* lists = bottom[0]->cpu_data();
  Dtype* rois = top[0]->mutable_cpu_data();
  for (int r = 0; r < top[0]->num(); ++r) {
    const Dtype* proposal = lists + 5 * r;
    Dtype* roi = rois + 6 * r;
    roi[0] = r / num_proposals_;
    for (int k = 0; k < 5; ++k) roi[1 + k] = proposal[k];
    if (proposal[0] < 0) continue;  // padding stays recognisable
    for (int k = 0; k < 4; ++k) {
      const Dtype origin = k % 2 == 0 ? origin_x_ : origin_y_;
      roi[1 + k] = std::floor(single_scale_ * proposal[k] / origin);
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU_FORWARD(WsdRoigenSingleScaleLayer, Forward);
#endif

INSTANTIATE_CLASS(WsdRoigenSingleScaleLayer);
REGISTER_LAYER_CLASS(WsdRoigenSingleScale);

}  // namespace caffe
