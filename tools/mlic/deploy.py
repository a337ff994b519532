"""What a deploy net expects, read from its prototxt: teacher or student, sizes, classes, and
the mean its images take (from the train net written beside it)."""
import os
import re

from caffe.proto import caffe_pb2
from google.protobuf import text_format

# The train net netgen writes beside each deploy net; its data layer holds the mean.
TRAIN_NET_BESIDE = {'deploy.prototxt': 'train.prototxt',
                    'student_deploy.prototxt': 'student_train.prototxt',
                    'stage2_teacher_deploy.prototxt': 'stage2_train.prototxt',
                    'teacher_deploy.prototxt': 'attention_train.prototxt'}


def data_param_beside(deploy_path):
    """The param_str of the data layer of the train net beside a deploy net (netgen's layout),
    or None when there is none."""
    train = os.path.join(os.path.dirname(deploy_path),
                         TRAIN_NET_BESIDE.get(os.path.basename(deploy_path), ''))
    if not os.path.isfile(train):
        return None
    net = caffe_pb2.NetParameter()
    with open(train) as f:
        text_format.Merge(f.read(), net)
    for layer in net.layer:
        if layer.type == 'Python' and layer.python_param.layer == 'MultiLabelRoIDataLayer':
            return layer.python_param.param_str
    return None


def mean_beside(deploy_path):
    """The mean_value of the data layer of the train net beside a deploy net (netgen's layout),
    or the original's mean when there is none."""
    from mlic.preprocess import DEFAULT_MEAN_BGR
    param = data_param_beside(deploy_path)
    if param is None:
        return list(DEFAULT_MEAN_BGR)
    # The parameter text's mean_value fields, read without loading the layer plugin.
    means = re.findall(r'\bmean_value\s*:\s*([-+0-9.eE]+)', param)
    return [float(m) for m in means] or [0.0]  # none: none subtracted


def sizes_beside(deploy_path):
    """(att_num, bbox_num) of the data layer of the train net beside a deploy net, or None."""
    param = data_param_beside(deploy_path) or ''
    found = [re.search(r'\b%s\s*:\s*([0-9]+)' % field, param) for field in ('att_num',
                                                                            'bbox_num')]
    return tuple(int(m.group(1)) for m in found) if all(found) else None


def describe(deploy_path):
    """{'kind': 'teacher' | 'stage2_teacher' | 'baseline_teacher' | 'student', 'image_size',
    'num_classes', 'num_proposals', 'fc_size', 'mean_value'} of one of netgen's deploy nets
    (wsddn deploy and stage 2's teacher: inputs imagedata + proposaldata, the latter with the KD
    nets' layer names; the baselines' teacher: imagedata alone, no classes or proposals;
    student: data)."""
    net = caffe_pb2.NetParameter()
    with open(deploy_path) as f:
        text_format.Merge(f.read(), net)
    inputs = dict(zip(net.input, net.input_shape))
    layers = {layer.name: layer for layer in net.layer}
    if 'imagedata' in inputs and 'proposaldata' in inputs:
        kind, image, head = 'teacher', inputs['imagedata'], 'fc8_c'
        if 'fc_wsd_8_c' in layers:
            kind, head = 'stage2_teacher', 'fc_wsd_8_c'
        proposals = inputs['proposaldata'].dim[1] // 5
    elif 'imagedata' in inputs and 'attention_teacher_normalized' in layers:
        # Classes and proposals only to read the train list: from the train net beside.
        sizes = sizes_beside(deploy_path)
        if sizes is None:
            raise ValueError('%s: the baselines\' teacher deploy net needs the train net '
                             'netgen writes beside it (%s) for the datalist\'s sizes'
                             % (deploy_path, TRAIN_NET_BESIDE['teacher_deploy.prototxt']))
        return {'kind': 'baseline_teacher', 'image_size': int(inputs['imagedata'].dim[2]),
                'num_classes': sizes[0], 'num_proposals': sizes[1], 'fc_size': 0,
                'mean_value': mean_beside(deploy_path)}
    elif 'data' in inputs:
        kind, image, head, proposals = 'student', inputs['data'], 'fc8_mscoco', 0
    else:
        raise ValueError('%s: not a deploy net of this project (inputs imagedata + proposaldata '
                         'for the teacher, data for the student); its inputs: %s'
                         % (deploy_path, ', '.join(net.input) or 'none'))
    if head not in layers:
        raise ValueError('%s: the %s deploy net has no layer %s' % (deploy_path, kind, head))
    fc7 = layers.get('fc_wsd_7' if kind == 'stage2_teacher' else 'fc7')  # the student's too
    return {'kind': kind, 'image_size': int(image.dim[2]),
            'num_classes': int(layers[head].inner_product_param.num_output),
            'num_proposals': int(proposals),
            'fc_size': int(fc7.inner_product_param.num_output) if fc7 is not None else 0,
            'mean_value': mean_beside(deploy_path)}
