#include "mlic_layers/roi_distillation_loss_layer.hpp"

#include <algorithm>
#include <vector>

#include "caffe/util/math_functions.hpp"
#include "mlic_layers.pb.h"
#include "mlic_layers/layer_param.hpp"

namespace caffe {

template <typename Dtype>
void RoIDistillationLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CheckBlobCount(this->layer_param_, "bottom", bottom.size(), 3, 3);
  CheckBlobCount(this->layer_param_, "top", top.size(), 1, 1);
  mlic::RoIDistillationLossParameter param;
  ParseLayerParam(this->layer_param_, &param);
  top_k_ = param.top_k();
  // A loss layer weighs its top by 1 unless told otherwise, as Caffe's LossLayer does.
  if (this->layer_param_.loss_weight_size() == 0) this->layer_param_.add_loss_weight(Dtype(1));
}

template <typename Dtype>
void RoIDistillationLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  if (bottom[0]->num_axes() < 1 || bottom[0]->count() == 0) {
    ThrowLayerParamError(this->layer_param_, "bottom[0]",
        "expects (N*B, D...) teacher RoI features, got shape " + bottom[0]->shape_string());
  }
  if (bottom[1]->shape() != bottom[0]->shape()) {
    ThrowLayerParamError(this->layer_param_, "bottom[1]",
        "student features of shape " + bottom[1]->shape_string() +
        " differ from the teacher's " + bottom[0]->shape_string());
  }
  const int rows = bottom[0]->shape(0);
  if (bottom[2]->num_axes() < 1 || bottom[2]->shape(0) != rows || bottom[2]->count(1) != 6) {
    ThrowLayerParamError(this->layer_param_, "bottom[2]",
        "expects (N*B, 6) RoI rows = (" + ToString(rows) + ", 6) for features of shape " +
        bottom[0]->shape_string() + ", got shape " + bottom[2]->shape_string());
  }
  top[0]->Reshape(vector<int>());
  row_weights_.Reshape(vector<int>(1, rows));
  diff_.ReshapeLike(*bottom[0]);
  weighted_diff_.ReshapeLike(*bottom[0]);
}

template <typename Dtype>
void RoIDistillationLossLayer<Dtype>::ComputeRowWeights(const Blob<Dtype>& rois) {
  const Dtype* roi = rois.cpu_data();
  const int rows = rois.shape(0);
  int max_batch_index = 0;
  for (int r = 0; r < rows; ++r) {
    max_batch_index = std::max(max_batch_index, static_cast<int>(roi[6 * r]));
  }
  const int num_images = max_batch_index + 1;
  if (rows % num_images != 0) {
    ThrowLayerParamError(this->layer_param_, "bottom[2]",
        ToString(rows) + " RoI rows cannot be " + ToString(num_images) +
        " images (1 + largest batch index) with the same number of proposals each");
  }
  const int per_image = rows / num_images;
  Dtype* weight = row_weights_.mutable_cpu_data();
  vector<int> selected;
  for (int n = 0; n < num_images; ++n) {
    selected.clear();
    for (int r = n * per_image; r < (n + 1) * per_image; ++r) {
      if (static_cast<int>(roi[6 * r]) != n) {
        ThrowLayerParamError(this->layer_param_, "bottom[2]",
            "row " + ToString(r) + " has batch index " + ToString(roi[6 * r]) + ", expected " +
            ToString(n) + ": rows must be grouped per image in order, " +
            ToString(per_image) + " per image");
      }
      weight[r] = 0;
      if (roi[6 * r + 1] < 0) continue;
      if (top_k_ > 0 && !(roi[6 * r + 5] == roi[6 * r + 5])) {
        ThrowLayerParamError(this->layer_param_, "bottom[2]",
            "row " + ToString(r) + " has score NaN, which top_k cannot rank");
      }
      selected.push_back(r);
    }
    if (top_k_ > 0 && selected.size() > static_cast<size_t>(top_k_)) {
      // Highest score first; stable, so equal scores keep the lower row first.
      std::stable_sort(selected.begin(), selected.end(),
          [roi](int a, int b) { return roi[6 * a + 5] > roi[6 * b + 5]; });
      selected.resize(top_k_);
    }
    for (size_t i = 0; i < selected.size(); ++i) {
      weight[selected[i]] = Dtype(1) / (2 * num_images * static_cast<Dtype>(selected.size()));
    }
  }
}

template <typename Dtype>
void RoIDistillationLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  ComputeRowWeights(*bottom[2]);
  const int count = bottom[0]->count();
  const int dim = bottom[0]->count(1);
  caffe_sub(count, bottom[1]->cpu_data(), bottom[0]->cpu_data(), diff_.mutable_cpu_data());
  const Dtype* diff = diff_.cpu_data();
  const Dtype* weight = row_weights_.cpu_data();
  Dtype* weighted = weighted_diff_.mutable_cpu_data();
  for (int r = 0; r < bottom[0]->shape(0); ++r) {
    caffe_cpu_scale(dim, weight[r], diff + r * dim, weighted + r * dim);
  }
  top[0]->mutable_cpu_data()[0] = caffe_cpu_dot(count, diff, weighted);
}

template <typename Dtype>
void RoIDistillationLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  const Dtype scale = 2 * top[0]->cpu_diff()[0];
  for (int i = 0; i < 2; ++i) {
    if (!propagate_down[i]) continue;
    caffe_cpu_scale(bottom[i]->count(), i == 1 ? scale : -scale, weighted_diff_.cpu_data(),
        bottom[i]->mutable_cpu_diff());
  }
}

#ifdef CPU_ONLY
STUB_GPU(RoIDistillationLossLayer);
#endif

INSTANTIATE_CLASS(RoIDistillationLossLayer);
REGISTER_LAYER_CLASS(RoIDistillationLoss);

}  // namespace caffe
