#include "mlic_layers/wsd_roigen_layer.hpp"

#include <vector>

#include "mlic_layers.pb.h"
#include "mlic_layers/layer_param.hpp"

namespace caffe {

template <typename Dtype>
void WsdRoigenLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CheckBlobCount(this->layer_param_, "bottom", bottom.size(), 1, 1);
  CheckBlobCount(this->layer_param_, "top", top.size(), 1, 1);
  mlic::WsdRoigenParameter unused;
  ParseLayerParam(this->layer_param_, &unused);
}

template <typename Dtype>
void WsdRoigenLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const int per_image = bottom[0]->count(1);
  if (bottom[0]->num_axes() < 2 || per_image == 0 || per_image % 5 != 0) {
    ThrowLayerParamError(this->layer_param_, "bottom[0]",
        "expects (N, 5*B) proposal lists, got shape " + bottom[0]->shape_string());
  }
  num_proposals_ = per_image / 5;
  vector<int> top_shape(2);
  top_shape[0] = bottom[0]->num() * num_proposals_;
  top_shape[1] = 6;
  top[0]->Reshape(top_shape);
}

template <typename Dtype>
void WsdRoigenLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  const Dtype* lists = bottom[0]->cpu_data();
  Dtype* rois = top[0]->mutable_cpu_data();
  const int rows = top[0]->num();
  for (int r = 0; r < rows; ++r) {
    rois[6 * r] = r / num_proposals_;
    for (int k = 0; k < 5; ++k) rois[6 * r + 1 + k] = lists[5 * r + k];
  }
}

#ifdef CPU_ONLY
STUB_GPU_FORWARD(WsdRoigenLayer, Forward);
#endif

INSTANTIATE_CLASS(WsdRoigenLayer);
REGISTER_LAYER_CLASS(WsdRoigen);

}  // namespace caffe
