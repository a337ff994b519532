#include "mlic_layers/cross_entropy_loss_layer.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "caffe/util/math_functions.hpp"
#include "mlic_layers.pb.h"
#include "mlic_layers/layer_param.hpp"

namespace caffe {

template <typename Dtype>
void CrossEntropyLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CheckBlobCount(this->layer_param_, "bottom", bottom.size(), 2, 2);
  CheckBlobCount(this->layer_param_, "top", top.size(), 1, 1);
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  if (this->layer_param_.python_param().param_str().find("ignore_label") != std::string::npos) {
    ThrowLayerParamError(this->layer_param_, "python_param.param_str",
        "ignore_label is given as loss_param { ignore_label: -1 }, as on stock Caffe's loss "
        "layers");
  }
  mlic::CrossEntropyLossParameter param;
  ParseLayerParam(this->layer_param_, &param);
  const LossParameter& loss_param = this->layer_param_.loss_param();
  // The loss is normalised by the batch size as in the original; a setting asking for another
  // normalisation would be silently ignored, so it is an error.
  if ((loss_param.has_normalization() &&
       loss_param.normalization() != LossParameter_NormalizationMode_BATCH_SIZE) ||
      (!loss_param.has_normalization() && loss_param.has_normalize() &&
       loss_param.normalize())) {
    ThrowLayerParamError(this->layer_param_, loss_param.has_normalization() ?
        "loss_param.normalization" : "loss_param.normalize",
        "this loss is always normalised by the batch size N, as in the original (only "
        "normalization: BATCH_SIZE or normalize: false)");
  }
  has_ignore_label_ = loss_param.has_ignore_label();
  ignore_label_ = has_ignore_label_ ? Dtype(loss_param.ignore_label()) : Dtype(0);
}

template <typename Dtype>
void CrossEntropyLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  if (bottom[0]->num_axes() < 1 || bottom[1]->num_axes() < 1 ||
      bottom[0]->shape(0) != bottom[1]->shape(0) ||
      bottom[0]->count(1) != bottom[1]->count(1)) {
    ThrowLayerParamError(this->layer_param_, "bottom[1]",
        "the targets (shape " + bottom[1]->shape_string() + ") must have as many images and "
        "values per image as the probabilities bottom[0] (shape " +
        bottom[0]->shape_string() + ")");
  }
  LossLayer<Dtype>::Reshape(bottom, top);
  if (ones_.count() != bottom[0]->count()) {
    ones_.Reshape(vector<int>(1, bottom[0]->count()));
    caffe_set(ones_.count(), Dtype(1), ones_.mutable_cpu_data());
  }
}

template <typename Dtype>
void CrossEntropyLossLayer<Dtype>::CheckTargets(const Blob<Dtype>& targets) const {
  const Dtype* target = targets.cpu_data();
  const int per_image = targets.count(1);
  for (int i = 0; i < targets.count(); ++i) {
    const Dtype y = target[i];
    if ((y >= 0 && y <= 1) || Ignored(y)) continue;
    ThrowLayerParamError(this->layer_param_, "bottom[1]",
        "target " + ToString(y) + " (image " + ToString(i / per_image) + ", value " +
        ToString(i % per_image) + ") is not a probability in [0, 1]" +
        (has_ignore_label_ ? " nor loss_param.ignore_label " + ToString(ignore_label_) :
        std::string(" (give loss_param { ignore_label: -1 } to skip -1 targets)")));
  }
}

template <typename Dtype>
void CrossEntropyLossLayer<Dtype>::CheckNoTargetGradient(
    const vector<bool>& propagate_down) const {
  if (propagate_down[1]) {
    ThrowLayerParamError(this->layer_param_, "propagate_down",
        "cannot back-propagate to the targets bottom[1]; give propagate_down: false for it");
  }
}

template <typename Dtype>
void CrossEntropyLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
    const vector<Blob<Dtype>*>& top) {
  CheckTargets(*bottom[1]);
  const Dtype* prob = bottom[0]->cpu_data();
  const Dtype* target = bottom[1]->cpu_data();
  const Dtype min_prob = kCrossEntropyFloor;
  Dtype loss = 0;
  for (int i = 0; i < bottom[0]->count(); ++i) {
    const Dtype y = target[i];
    if (Ignored(y)) continue;
    loss -= y * std::log(std::max(prob[i], min_prob)) +
        (1 - y) * std::log(std::max(1 - prob[i], min_prob));
  }
  top[0]->mutable_cpu_data()[0] = loss / bottom[0]->shape(0);
}

template <typename Dtype>
void CrossEntropyLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
  CheckNoTargetGradient(propagate_down);
  if (!propagate_down[0]) return;
  const Dtype* prob = bottom[0]->cpu_data();
  const Dtype* target = bottom[1]->cpu_data();
  Dtype* prob_diff = bottom[0]->mutable_cpu_diff();
  const Dtype min_prob = kCrossEntropyFloor;
  const Dtype scale = top[0]->cpu_diff()[0] / bottom[0]->shape(0);
  for (int i = 0; i < bottom[0]->count(); ++i) {
    const Dtype p = prob[i];
    const Dtype y = target[i];
    // The original fork's rule, clamped denominators included (see the header).
    prob_diff[i] = Ignored(y) ? Dtype(0) :
        scale * ((1 - y) / std::max(1 - p, min_prob) - y / std::max(p, min_prob));
  }
}

#ifdef CPU_ONLY
STUB_GPU(CrossEntropyLossLayer);
#endif

INSTANTIATE_CLASS(CrossEntropyLossLayer);
REGISTER_LAYER_CLASS(CrossEntropyLoss);

}  // namespace caffe
