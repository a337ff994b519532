"""The nets and solvers of MLIC-KD-WSD, generated from one definition (the original's nets:
docs/original-method.md, "The nets").

Every net the project trains or deploys is written by the functions below from a config dict:
`FULL` mirrors the original (VGG16, 672/224, 500 proposals, 80 classes, its batch sizes), and
`small_config()` shrinks the same nets for the demo and the tests. The checked-in files under
prototxt/ (FULL) and prototxt/small/ (small_config()) are exactly what `write_nets` writes;
regenerate them with tools/generate_nets.py --update-checked-in.

Config keys: each is listed, with its type and one line of help, in the config schema
(tools/mlic/run_config.py, SCHEMA['nets']; `tools/run_pipeline.py --help` prints them and
tools/run_pipeline.example.toml shows both presets' values). Besides those, the data sets
num_classes, num_proposals (bbox_num) and image_size, and the run sets data_seed (the data
layer's shuffling and augmentation; None: not written) and datalists (default {'train': path,
'test': path}, relative to the repository root); max_pixels is the data layer's limit on an
image's pixels (0: none; written only when it is not the layer's default). soft_targets and roi_targets are None (the
teacher runs inside the KD net) or the path of the .npy that tools/compute_teacher_targets.py
wrote; attention_targets and hint_targets the same for the baselines' nets (BASELINE_NETS) and
tools/compute_baseline_targets.py.
"""
import copy
import os

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from mlic.datalist import IGNORE_LABEL
from mlic.paths import ROOT
from mlic.preprocess import DEFAULT_MAX_PIXELS, DEFAULT_MEAN_BGR

NETS = ('wsddn', 'stage1', 'stage2', 'student')

# Output files, relative to write_nets' out_dir (the checked-in layout of prototxt/).
FILES = {
    'wsddn_train': 'wsddn/train.prototxt',
    'wsddn_deploy': 'wsddn/deploy.prototxt',
    'wsddn_solver': 'wsddn/solver.prototxt',
    'stage1_train': 'kd/stage1_train.prototxt',
    'stage1_solver': 'kd/stage1_solver.prototxt',
    'stage2_train': 'kd/stage2_train.prototxt',
    'stage2_solver': 'kd/stage2_solver.prototxt',
    'student_train': 'kd/student_train.prototxt',
    'student_solver': 'kd/student_solver.prototxt',
    'student_deploy': 'kd/student_deploy.prototxt',
    'stage2_teacher_deploy': 'kd/stage2_teacher_deploy.prototxt',
    'fitnets_hint_train': 'baselines/fitnets_hint_train.prototxt',
    'fitnets_hint_solver': 'baselines/fitnets_hint_solver.prototxt',
    'attention_train': 'baselines/attention_train.prototxt',
    'attention_solver': 'baselines/attention_solver.prototxt',
    'baseline_teacher_deploy': 'baselines/teacher_deploy.prototxt',
}

# The classic distillation baselines (docs/baselines.md), from the same frozen WSDDN teacher:
# {net: the net whose batch sizes and solver it takes}. FitNets' hint stage regresses features
# as stage 1 does; attention transfer trains on labels as long as the student without KD.
BASELINE_NETS = {'fitnets_hint': 'stage1', 'attention': 'student'}
# Attention transfer's beta (its paper's 1000), applied to the mean over images and map
# positions of the squared distance between the normalised maps, as its authors' code does.
ATTENTION_BETA = 1000.0
# The config keys of the teacher's outputs that a net can read from the data layer instead of
# running the teacher: None, or the .npy the teacher's precomputation wrote. The first two feed
# the KD stages, the last two the baselines ({key: the baseline net that reads it}).
KD_TARGET_KEYS = ('soft_targets', 'roi_targets')
BASELINE_TARGET_KEYS = {'attention_targets': 'attention', 'hint_targets': 'fitnets_hint'}
TARGET_KEYS = KD_TARGET_KEYS + tuple(BASELINE_TARGET_KEYS)

NET_NAMES = {'wsddn': 'VGG16_wsddn', 'stage1': 'stage1', 'stage2': 'stage2',
             'student': 'student'}

DATA_MODULE = 'caffe_layers.data_layer'
DATA_LAYER = 'MultiLabelRoIDataLayer'

# Every loss that reads the datalist's labels ignores the label "ignore" (-1: a VOC class that is
# only "difficult" in the image): no loss, no gradient, still divided by the batch size. The
# original has no ignore label (its lists have none). Stage 2's soft loss reads the teacher's
# scores, not labels, and goes without.
LABEL_LOSS_PARAM = {'ignore_label': int(IGNORE_LABEL)}

# (lr_mult, decay_mult) of weights and biases.
BACKBONE = ((1, 1), (2, 0))
FROZEN = ((0, 0), (0, 0))

# Solver settings the paper does not give are our choices (docs/deviations.md, 11); the teacher's
# base_lr is the authors' (docs/original-method.md, "The paper's numbers").
_COMMON_SOLVER = {'lr_policy': 'step', 'gamma': 0.1, 'momentum': 0.9, 'weight_decay': 0.0005,
                  'display': 20, 'average_loss': 20, 'test_initialization': False}

FULL = {
    'name': 'full',
    'num_classes': 80,
    'num_proposals': 500,
    'image_size': 672,
    'student_size': 224,
    'block_channels': [64, 128, 256, 512, 512],
    'block_convs': [2, 2, 3, 3, 3],
    'fc_size': 4096,
    'pooled_size': 7,
    'score_scale': 1.0,
    'score_bias': 0.0,
    'dropout_ratio': 0.5,
    'conv_filler': {'type': 'msra'},
    'batch_norm': False,
    'head_filler': {'type': 'xavier'},
    'head_params': [[10, 10], [20, 0]],
    'scale_factors': [0.714286, 0.857143, 1, 1.095239, 1.238096],
    'mean_value': list(DEFAULT_MEAN_BGR),
    'input_scale': 1.0,
    'teacher_scale': 2.0,
    'soft_scale': 0.2,
    'soft_loss_weight': 1.0,
    'distill_top_k': 0,
    'stage1_fc_frozen': False,
    'soft_targets': None,
    'roi_targets': None,
    'attention_targets': None,
    'hint_targets': None,
    'batch_size': {'wsddn': (32, 16), 'stage1': (32, 16), 'stage2': (28, 4),
                   'student': (28, 4)},
    'solver': {
        'wsddn': dict(_COMMON_SOLVER, base_lr=5e-5, stepsize=30000, max_iter=40000,
                      snapshot=5000, test_iter=100, test_interval=5000),
        'stage1': dict(_COMMON_SOLVER, base_lr=1e-4, stepsize=20000, max_iter=30000,
                       snapshot=5000, test_iter=100, test_interval=5000),
        'stage2': dict(_COMMON_SOLVER, base_lr=1e-3, stepsize=20000, max_iter=30000,
                       snapshot=5000, test_iter=400, test_interval=5000),
        'student': dict(_COMMON_SOLVER, base_lr=1e-3, stepsize=20000, max_iter=30000,
                        snapshot=5000, test_iter=400, test_interval=5000),
    },
    'data_seed': None,
    'datalists': {'train': 'datalists/coco/train.txt', 'test': 'datalists/coco/test.txt'},
    # The data layer refuses larger images (a decompression bomb would fill the memory); the
    # nets write it only when it differs from the layer's own default.
    'max_pixels': DEFAULT_MAX_PIXELS,
}

_SMALL_SOLVER = {'lr_policy': 'step', 'gamma': 0.1, 'momentum': 0.9, 'weight_decay': 0.0005,
                 'display': 10, 'average_loss': 10, 'test_initialization': False,
                 'stepsize': 400, 'max_iter': 500, 'snapshot': 500, 'test_iter': 4,
                 'test_interval': 500, 'random_seed': 1,
                 # From scratch, WSDDN's loss on probabilities blows up at the first large
                 # step; clipping keeps the small nets' training smooth.
                 'clip_gradients': 10.0}

# The nets of the demo (tools/demo.toml), trained from scratch or from the demo's pretraining on
# a CPU: a 64 px student (a third of the teacher's 192 px, as 224 is to 672), four blocks of
# 16-128 channels, 256-wide fc6/fc7. Trained from scratch they need what the ImageNet-initialised
# VGG16 does not (documented deviations of the small nets): msra convolutions, BatchNorm after
# every conv and after fc6/fc7, and pixels near unit range (1/64 after mean subtraction). Without
# BatchNorm on fc6 its ReLUs die within a hundred iterations and the scores stop depending on the
# image (an earlier 8-32 channel preset without BatchNorm gave every image the same scores).
# The classifiers' 10/20 learning-rate multipliers (the original's, for new layers on an ImageNet
# backbone) kill fc7 of the small students: 1/2 here. num_classes, num_proposals and image_size
# are the demo data's; the pipeline and tools/generate_nets.py set them from the data.
SMALL = dict(
    FULL,
    name='small',
    num_classes=10,
    num_proposals=48,
    image_size=192,
    student_size=64,
    block_channels=[16, 32, 64, 128],
    block_convs=[1, 1, 2, 2],
    fc_size=256,
    pooled_size=4,
    conv_filler={'type': 'msra'},
    head_filler={'type': 'xavier'},
    head_params=[[1, 1], [2, 0]],
    batch_norm=True,
    input_scale=0.015625,
    batch_size={net: (8, 8) for net in NETS},
    # The teacher's rate from the demo's tuning (71.7 mAP at 0.002, 76.3 at 0.005, 68.3 at
    # 0.01, 600 iterations); the students' 0.002 from the same.
    solver={net: dict(_SMALL_SOLVER, base_lr=0.005 if net == 'wsddn' else 0.002)
            for net in NETS},
    data_seed=1,
    datalists={'train': 'datalists/demo/train.txt', 'test': 'datalists/demo/test.txt'},
)


def small_config(**overrides):
    """SMALL with `overrides` (config keys, see the module docstring), checked."""
    cfg = copy.deepcopy(SMALL)
    for key, value in overrides.items():
        if key not in cfg:
            raise ValueError('small_config: unknown config key %r (known: %s)'
                             % (key, ', '.join(sorted(cfg))))
        cfg[key] = copy.deepcopy(value)
    check_config(cfg)
    return cfg


def check_config(cfg):
    missing = sorted(set(FULL) - set(cfg))
    if missing:
        raise ValueError('net config: missing keys %s' % ', '.join(missing))
    if len(cfg['block_channels']) != len(cfg['block_convs']) or not cfg['block_channels']:
        raise ValueError('net config: block_channels and block_convs must be non-empty lists of '
                         'the same length, got %r and %r'
                         % (cfg['block_channels'], cfg['block_convs']))
    stride = 2 ** len(cfg['block_channels'])
    if cfg['student_size'] != cfg['pooled_size'] * stride:
        raise ValueError('net config: student_size (%d) must be pooled_size (%d) * 2**%d, so that '
                         'the student\'s pool5 has the RoI pooling\'s size'
                         % (cfg['student_size'], cfg['pooled_size'], len(cfg['block_channels'])))
    if not isinstance(cfg['max_pixels'], int) or cfg['max_pixels'] < 0:
        raise ValueError('net config: max_pixels must be a whole number >= 0 (0: no limit), '
                         'got %r' % (cfg['max_pixels'],))
    for net in NETS:
        train, test = cfg['batch_size'][net]
        if train < 1 or test < 1:
            raise ValueError('net config: batch_size[%r] must be two positive numbers' % net)
        if net not in cfg['solver']:
            raise ValueError('net config: solver settings for %r are missing' % net)


def spatial_scale(cfg):
    """Of the last conv block's map relative to the input: one 2x2 pooling per earlier block."""
    return 1.0 / 2 ** (len(cfg['block_channels']) - 1)


def teacher_layer_name(kd_name):
    """The WSDDN net's name of a teacher layer of the KD nets (conv_wsd_1_1 -> conv1_1,
    fc_wsd_6 -> fc6, fc_wsd_8_c -> fc8_c); other names are the same in both nets."""
    for prefix in ('conv', 'fc', 'pool'):
        if kd_name.startswith(prefix + '_wsd_'):
            return prefix + kd_name[len(prefix) + len('_wsd_'):]
    return kd_name


def kd_teacher_name(name):
    """Inverse of teacher_layer_name for the layers that carry weights."""
    for prefix in ('conv', 'fc'):
        if name.startswith(prefix) and name[len(prefix):len(prefix) + 1].isdigit():
            return prefix + '_wsd_' + name[len(prefix):]
    return name


def param_text(fields):
    """Text of one of our parameter messages from (field, value) pairs; lists repeat a field."""
    parts = []
    for key, value in fields:
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(item, bool):
                text = 'true' if item else 'false'
            elif isinstance(item, str):
                text = "'%s'" % item.replace('\\', '\\\\').replace("'", "\\'")
            elif isinstance(item, float) and item.is_integer():
                text = str(int(item))
            else:
                text = repr(item)
            parts.append('%s: %s' % (key, text))
    return ' '.join(parts)


def _fill(message, fields):
    for key, value in fields.items():
        field = message.DESCRIPTOR.fields_by_name[key]
        repeated = getattr(field, 'is_repeated', None)  # protobuf >= 5; `label` before
        if repeated is None:
            repeated = field.label == field.LABEL_REPEATED
        if repeated:
            target = getattr(message, key)
            for item in value:
                if field.message_type is not None:
                    _fill(target.add(), item)
                else:
                    target.append(item)
        elif field.message_type is not None:
            _fill(getattr(message, key), value)
        else:
            setattr(message, key, value)


class Net(object):
    """A NetParameter under construction: add() appends one layer."""

    def __init__(self, name):
        self.param = caffe_pb2.NetParameter(name=name)

    def add(self, name, type_, bottom=(), top=None, params=(), propagate_down=(),
            loss_weight=None, phase=None, param_str=None, **fields):
        layer = self.param.layer.add(name=name, type=type_)
        layer.bottom.extend(bottom)
        layer.top.extend([name] if top is None else top)
        if phase is not None:
            layer.include.add(phase=phase)
        for lr_mult, decay_mult in params:
            layer.param.add(lr_mult=lr_mult, decay_mult=decay_mult)
        layer.propagate_down.extend(propagate_down)
        if loss_weight is not None:
            layer.loss_weight.append(loss_weight)
        if param_str:
            layer.python_param.param_str = param_str
        _fill(layer, fields)
        return name

    def relu(self, name, blob):
        self.add(name, 'ReLU', [blob], [blob])

    def dropout(self, cfg, name, blob):
        self.add(name, 'Dropout', [blob], [blob],
                 dropout_param={'dropout_ratio': cfg['dropout_ratio']})

    def inner_product(self, name, bottom, num_output, params, frozen_input=False,
                      weight_filler=None):
        return self.add(name, 'InnerProduct', [bottom], params=params,
                        propagate_down=[False] if frozen_input else [],
                        inner_product_param={'num_output': num_output,
                                             'weight_filler': weight_filler or {'type': 'xavier'},
                                             'bias_filler': {'type': 'constant', 'value': 0}})


def data_layers(net, cfg, kind, datalists, root_folder, inputs=False):
    """The data layer per phase (tops data, label_roi, and in TRAIN the precomputed targets
    the net reads), or one Input layer when inputs=True. A baseline net (BASELINE_NETS) reads
    at the batch size of its solver's net, at one scale (the teacher's maps are exact to
    precompute), and its precomputed map (map_target) when it has one."""
    batch_kind = BASELINE_NETS.get(kind, kind)
    train_batch, test_batch = cfg['batch_size'][batch_kind]
    width = cfg['num_classes'] + 5 * cfg['num_proposals']
    soft_targets = cfg['soft_targets'] if kind == 'stage2' else None
    roi_targets = cfg['roi_targets'] if kind == 'stage1' else None
    map_targets = baseline_targets(cfg, kind)
    if inputs:
        size = cfg['image_size']
        tops = ['data', 'label_roi']
        shapes = [{'dim': [train_batch, 3, size, size]}, {'dim': [train_batch, width]}]
        if soft_targets:
            tops.append('soft_target')
            shapes.append({'dim': [train_batch, cfg['num_classes']]})
        if roi_targets:
            tops.append('roi_target')
            shapes.append({'dim': [train_batch * cfg['num_proposals'], cfg['fc_size']]})
        if map_targets:
            tops.append('map_target')
            shapes.append({'dim': [train_batch] + list(baseline_map_shape(cfg, kind))})
        net.add('data', 'Input', top=tops, input_param={'shape': shapes})
        return
    for phase, batch, train in ((caffe_pb2.TRAIN, train_batch, True),
                                (caffe_pb2.TEST, test_batch, False)):
        fields = [('source', datalists['train' if train else 'test']),
                  ('root_folder', root_folder), ('batch_size', batch), ('shuffle', train),
                  ('new_width', cfg['image_size']), ('new_height', cfg['image_size'])]
        if train and kind == 'wsddn':
            fields.append(('scale_factors', [float(f) for f in cfg['scale_factors']]))
        fields += [('att_num', cfg['num_classes']), ('bbox_num', cfg['num_proposals']),
                   ('mirror', train), ('mean_value', [float(m) for m in cfg['mean_value']])]
        if cfg['input_scale'] != 1:
            fields.append(('scale', float(cfg['input_scale'])))
        if cfg['data_seed'] is not None:
            fields.append(('seed', cfg['data_seed']))
        if cfg['max_pixels'] != DEFAULT_MAX_PIXELS:
            fields.append(('max_pixels', int(cfg['max_pixels'])))
        tops = ['data', 'label_roi']
        if train and soft_targets:
            fields.append(('soft_targets', soft_targets))
            tops.append('soft_target')
        if train and roi_targets:
            fields.append(('roi_targets', roi_targets))
            tops.append('roi_target')
        if train and map_targets:
            fields.append(('map_targets', map_targets))
            tops.append('map_target')
        net.add('data', 'Python', top=tops, phase=phase,
                python_param={'module': DATA_MODULE, 'layer': DATA_LAYER,
                              'param_str': param_text(fields)})


def slice_labels(net, cfg, labels):
    net.add('slice_label_roi', 'Slice', ['label_roi'], [labels, 'list_roi'],
            slice_param={'axis': 1, 'slice_point': [cfg['num_classes']]})


def conv_blocks(net, cfg, bottom, kd_teacher, params, pool_last):
    """VGG conv blocks: conv{b}_{i} + relu{b}_{i}, pool{b} after all but the last block (also
    after the last when pool_last). In the KD nets the teacher's weight and pooling layers are
    renamed conv_wsd_{b}_{i} / pool_wsd_{b} (its ReLUs keep the original's names)."""
    blob = bottom
    blocks = len(cfg['block_channels'])
    for b, (channels, convs) in enumerate(zip(cfg['block_channels'], cfg['block_convs']), 1):
        for i in range(1, convs + 1):
            name = ('conv_wsd_%d_%d' if kd_teacher else 'conv%d_%d') % (b, i)
            blob = net.add(name, 'Convolution', [blob], params=params,
                           propagate_down=[False] if kd_teacher else [],
                           convolution_param={'num_output': channels, 'pad': [1],
                                              'kernel_size': [3],
                                              'weight_filler': cfg['conv_filler']})
            if cfg['batch_norm']:
                batch_norm(net, blob, kd_teacher, params)
            net.relu('relu%d_%d' % (b, i), blob)
        if b < blocks or pool_last:
            blob = net.add(('pool_wsd_%d' if kd_teacher else 'pool%d') % b, 'Pooling', [blob],
                           pooling_param={'pool': caffe_pb2.PoolingParameter.MAX,
                                          'kernel_size': 2, 'stride': 2})
    return blob


def batch_norm(net, blob, frozen, params):
    """BatchNorm + Scale in place on a convolution's output. The statistics are no solver
    parameters (lr_mult 0); their moving average forgets quickly, as the small nets train for a
    few hundred iterations."""
    net.add(blob + '_bn', 'BatchNorm', [blob], [blob], params=[FROZEN[0]] * 3,
            batch_norm_param=dict({'moving_average_fraction': 0.99},
                                  **({'use_global_stats': True} if frozen else {})))
    net.add(blob + '_scale', 'Scale', [blob], [blob], params=params,
            scale_param={'bias_term': True})


def head_mults(cfg):
    return tuple(tuple(pair) for pair in cfg['head_params'])


def roi_pooling(net, cfg, name, conv, roi):
    return net.add(name, 'ROIPooling', [conv, roi], param_str=param_text([
        ('pooled_h', cfg['pooled_size']), ('pooled_w', cfg['pooled_size']),
        ('spatial_scale', spatial_scale(cfg)), ('score_scale', float(cfg['score_scale'])),
        ('score_bias', float(cfg['score_bias']))]))


def teacher(net, cfg, image, kd, heads):
    """WSDDN on `image` and the rows of blob 'roi'. kd: the frozen teacher of a KD net (renamed
    layers, lr_mult 0 and decay_mult 0 everywhere, no dropout, no gradient into the data; with
    heads, stage 2's temperature Scale layers)."""
    params = FROZEN if kd else BACKBONE
    conv = conv_blocks(net, cfg, image, kd, params, pool_last=False)
    blob = roi_pooling(net, cfg, 'roi_pooling', conv, 'roi')
    for index in (6, 7):
        blob = net.inner_product(('fc_wsd_%d' if kd else 'fc%d') % index, blob, cfg['fc_size'],
                                 params, frozen_input=kd)
        if cfg['batch_norm']:
            batch_norm(net, blob, kd, params)
        net.relu('relu%d' % index, blob)
        if not kd:
            net.dropout(cfg, 'drop%d' % index, blob)
    if not heads:
        return blob
    head_params = FROZEN if kd else head_mults(cfg)
    shape = {'shape': {'dim': [-1, cfg['num_proposals'], cfg['num_classes'], 1]}}
    branches = []
    for branch, head, axis in ((1, 'c', 2), (2, 'd', 1)):
        fc = net.inner_product(('fc_wsd_8_%s' if kd else 'fc8_%s') % head, blob,
                               cfg['num_classes'], head_params, frozen_input=kd,
                               weight_filler=cfg['head_filler'])
        reshaped = net.add('reshape_branch%d' % branch, 'Reshape', [fc],
                           propagate_down=[False] if kd and branch == 1 else [],
                           reshape_param=shape)
        if kd:
            reshaped = net.add('temp_branch%d_learn' % branch, 'Scale', [reshaped],
                               params=[FROZEN[0]],
                               scale_param={'axis': axis, 'bias_term': False,
                                            'filler': {'type': 'constant',
                                                       'value': cfg['teacher_scale']}})
        branches.append(reshaped)
    net.add('class_score', 'Softmax', [branches[0]], softmax_param={'axis': 2})
    net.add('proposal_score', 'ProposalSoftmax', [branches[1], 'roi'])
    net.add('proposal_class_score', 'Eltwise', ['class_score', 'proposal_score'],
            eltwise_param={'operation': caffe_pb2.EltwiseParameter.PROD})
    # A sum over the proposals: a 1x1 convolution over the B "channels" with weights fixed to 1.
    return net.add('image_level_score', 'Convolution', ['proposal_class_score'],
                   params=[(0, 0)], propagate_down=[False] if kd else [],
                   convolution_param={'num_output': 1, 'kernel_size': [1], 'bias_term': False,
                                      'weight_filler': {'type': 'constant', 'value': 1}})


def student_trunk(net, cfg, image, roi=None):
    """Interp to student_size, VGG conv blocks, then RoI pooling on `roi` (stage 1) or pool5, and
    fc6/fc7. Returns fc7's blob."""
    size = cfg['student_size']
    # The original's name, whatever the size.
    small = net.add('data_size224', 'Interp', [image],
                    param_str=param_text([('height', size), ('width', size)]))
    conv = conv_blocks(net, cfg, small, False, BACKBONE, pool_last=roi is None)
    blob = conv if roi is None else roi_pooling(net, cfg, 'roi_pooling_224', conv, roi)
    frozen = roi is not None and cfg['stage1_fc_frozen']
    for index in (6, 7):
        blob = net.inner_product('fc%d' % index, blob, cfg['fc_size'],
                                 FROZEN if frozen else BACKBONE)
        if cfg['batch_norm']:
            batch_norm(net, blob, frozen, FROZEN if frozen else BACKBONE)
        net.relu('relu%d' % index, blob)
        if not frozen:
            net.dropout(cfg, 'drop%d' % index, blob)
    return blob


def classifier(net, cfg, fc7):
    return net.inner_product('fc8_mscoco', fc7, cfg['num_classes'], head_mults(cfg),
                             weight_filler=cfg['head_filler'])


def net_name(cfg, kind):
    """The name of net `kind`: NET_NAMES for the full config; another config's teacher is no
    VGG16 and is named after its config instead (e.g. small_wsddn), as logs and plots show it."""
    if kind == 'wsddn' and cfg['name'] != 'full':
        return '%s_wsddn' % cfg['name']
    return NET_NAMES[kind]


def train_net(cfg, kind, datalists, root_folder='', inputs=False):
    """NetParameter of the training net `kind` (one of NETS)."""
    net = Net(net_name(cfg, kind))
    data_layers(net, cfg, kind, datalists, root_folder, inputs)
    labels = 'labels' if kind == 'wsddn' else 'label'
    slice_labels(net, cfg, labels)
    if kind == 'wsddn':
        net.add('roi', 'WsdRoigen', ['list_roi'])
        score = teacher(net, cfg, 'data', kd=False, heads=True)
        net.add('loss', 'CrossEntropyLoss', [score, labels], loss_weight=1,
                loss_param=LABEL_LOSS_PARAM)
    elif kind == 'stage1':
        net.add('silence', 'Silence', [labels], top=[])
        net.add('roi', 'WsdRoigen', ['list_roi'])
        net.add('roi_224', 'WsdRoigenSingleScale', ['list_roi'], param_str=param_text([
            ('single_scale', float(cfg['student_size'])),
            ('origin_scale', float(cfg['image_size']))]))
        precomputed = cfg['roi_targets'] and not inputs
        target = 'roi_target' if cfg['roi_targets'] else \
            teacher(net, cfg, 'data', kd=True, heads=False)
        fc7 = student_trunk(net, cfg, 'data', roi='roi_224')
        top_k = cfg['distill_top_k']
        net.add('loss_euclid', 'RoIDistillationLoss', [target, fc7, 'roi'],
                propagate_down=[False, True, False], loss_weight=1,
                param_str=param_text([('top_k', top_k)]) if top_k else None,
                phase=caffe_pb2.TRAIN if precomputed else None)
        if precomputed:  # no targets for the test images: nothing to compute there
            net.add('silence_test', 'Silence', [fc7, 'roi'], top=[], phase=caffe_pb2.TEST)
    elif kind == 'stage2':
        if cfg['soft_targets']:
            net.add('silence', 'Silence', ['list_roi'], top=[])
            soft_target = 'soft_target'
        else:
            net.add('roi', 'WsdRoigen', ['list_roi'])
            soft_target = teacher(net, cfg, 'data', kd=True, heads=True)
        logits = classifier(net, cfg, student_trunk(net, cfg, 'data'))
        soft = net.add('fc8_mscoco_soft', 'Scale', [logits], params=[(10, 0)],
                       scale_param={'bias_term': False, 'filler': {
                           'type': 'constant', 'value': cfg['soft_scale']}})
        net.add('loss_soft', 'SigmoidCrossEntropyLoss', [soft, soft_target],
                propagate_down=[True, False], loss_weight=cfg['soft_loss_weight'],
                phase=caffe_pb2.TRAIN if cfg['soft_targets'] and not inputs else None)
        net.add('loss_sig', 'SigmoidCrossEntropyLoss', [logits, labels],
                propagate_down=[True, False], loss_weight=1, loss_param=LABEL_LOSS_PARAM)
    elif kind == 'student':
        net.add('silence', 'Silence', ['list_roi'], top=[])
        logits = classifier(net, cfg, student_trunk(net, cfg, 'data'))
        net.add('loss_sig', 'SigmoidCrossEntropyLoss', [logits, labels],
                propagate_down=[True, False], loss_weight=1, loss_param=LABEL_LOSS_PARAM)
    else:
        raise ValueError('unknown net %r (one of %s)' % (kind, ', '.join(NETS)))
    return net.param


def last_conv_name(cfg, kd_teacher=False):
    """The blob of the last 3x3 convolution (after its in-place ReLU): conv5_3 in VGG16, the
    frozen teacher's conv_wsd_5_3 in a KD net."""
    blocks, convs = len(cfg['block_channels']), cfg['block_convs'][-1]
    return ('conv_wsd_%d_%d' if kd_teacher else 'conv%d_%d') % (blocks, convs)


def conv_map_size(cfg, size):
    """Side of the last conv block's map for an input of side `size` (3x3 convolutions keep it;
    Caffe's 2x2 max pooling rounds up)."""
    for _ in range(len(cfg['block_channels']) - 1):
        size = -(-(size - 2) // 2) + 1
    return size


def teacher_conv(net, cfg, image='data'):
    """The frozen teacher's conv blocks on the full-size image: its last conv features, with no
    gradient into them (lr_mult 0, propagate_down false), deterministic in both phases."""
    return conv_blocks(net, cfg, image, True, FROZEN, pool_last=False)


def baseline_targets(cfg, kind):
    """The .npy of the teacher's precomputed map that baseline net `kind` reads (None: the
    teacher runs inside it, or `kind` is no baseline)."""
    for key, net_kind in BASELINE_TARGET_KEYS.items():
        if kind == net_kind:
            return cfg[key]
    return None


def baseline_map_shape(cfg, kind):
    """(C, H, W) of the teacher's map a baseline net compares with: the attention map (1 channel)
    or the last conv features, at the teacher's input size."""
    side = conv_map_size(cfg, cfg['image_size'])
    return (1 if kind == 'attention' else cfg['block_channels'][-1], side, side)


def attention_map(net, cfg, prefix, conv, frozen, resize_to=None):
    """Attention transfer's map of `conv` (N, C, H, W) from stock layers: the channel mean of
    the squared activations (Power, then a fixed 1x1 convolution with weights 1/C), resized
    bilinearly to resize_to x resize_to when given (Interp), divided by its L2 norm per image
    (Reduction SUMSQ, Power -1/2, Scale by a per-image factor). frozen: no gradient (the
    teacher's side)."""
    no_grad = [False] if frozen else []
    channels = cfg['block_channels'][-1]
    squared = net.add(prefix + '_squared', 'Power', [conv], propagate_down=no_grad,
                      power_param={'power': 2})
    blob = net.add(prefix + '_mean', 'Convolution', [squared], params=[(0, 0)],
                   propagate_down=no_grad,
                   convolution_param={'num_output': 1, 'kernel_size': [1], 'bias_term': False,
                                      'weight_filler': {'type': 'constant',
                                                        'value': 1.0 / channels}})
    if resize_to:
        blob = net.add(prefix + '_resized', 'Interp', [blob], propagate_down=no_grad,
                       param_str=param_text([('height', resize_to), ('width', resize_to)]))
    sumsq = net.add(prefix + '_sumsq', 'Reduction', [blob], propagate_down=no_grad,
                    reduction_param={'operation': caffe_pb2.ReductionParameter.SUMSQ,
                                     'axis': 1})
    # 1/||a||; the shift keeps an all-zero map (every unit off) finite: it stays zero.
    inverse = net.add(prefix + '_inverse_norm', 'Power', [sumsq], propagate_down=no_grad,
                      power_param={'power': -0.5, 'shift': 1e-12})
    return net.add(prefix + '_normalized', 'Scale', [blob, inverse],
                   propagate_down=[False, False] if frozen else [],
                   scale_param={'axis': 0, 'bias_term': False})


def baseline_net(cfg, kind, datalists, root_folder='', inputs=False):
    """NetParameter of a baseline's training net (BASELINE_NETS), docs/baselines.md.

    fitnets_hint: FitNets' hint stage. The student's last conv features go through a learned
    1x1 regressor to the teacher's channels and are resized bilinearly to the teacher's map
    (the teacher sees the image at image_size, the student at student_size); EuclideanLoss
    with loss_weight 1/(H*W) gives 1/(2N) sum_n mean over positions of the squared distance,
    the normalisation of stage 1's RoI regression. No labels.
    attention: the student without KD's net plus ATTENTION_BETA/2 x the mean over images and
    positions of the squared distance between the L2-normalised attention maps of the student's
    and the teacher's last conv layer, the student's map resized to the teacher's.
    The teacher runs inside the net, frozen: in the TEST phase of its layers it computes the
    same features a precomputation would (baseline_teacher_deploy_net), and with
    attention_targets / hint_targets set the net reads those instead (map_target, TRAIN only:
    there is no precomputed map of the test images, so the test net leaves that loss out)."""
    if kind not in BASELINE_NETS:
        raise ValueError('unknown baseline net %r (one of %s)'
                         % (kind, ', '.join(BASELINE_NETS)))
    net = Net(kind)
    data_layers(net, cfg, kind, datalists, root_folder, inputs)
    slice_labels(net, cfg, 'label')
    net.add('silence', 'Silence', ['list_roi'], top=[])
    precomputed = bool(baseline_targets(cfg, kind))
    target = 'map_target' if precomputed else teacher_conv(net, cfg)
    # No precomputed maps of the test images: the test net leaves the teacher's loss out.
    test_without_teacher = precomputed and not inputs
    train_only = caffe_pb2.TRAIN if test_without_teacher else None
    side = conv_map_size(cfg, cfg['image_size'])
    if kind == 'fitnets_hint':
        net.add('silence_label', 'Silence', ['label'], top=[])
        small = net.add('data_size224', 'Interp', ['data'], param_str=param_text([
            ('height', cfg['student_size']), ('width', cfg['student_size'])]))
        conv = conv_blocks(net, cfg, small, False, BACKBONE, pool_last=False)
        regressed = net.add('hint_regressor', 'Convolution', [conv], params=BACKBONE,
                            convolution_param={'num_output': cfg['block_channels'][-1],
                                               'kernel_size': [1],
                                               'weight_filler': {'type': 'xavier'},
                                               'bias_filler': {'type': 'constant',
                                                               'value': 0}})
        aligned = net.add('hint_aligned', 'Interp', [regressed],
                          param_str=param_text([('height', side), ('width', side)]))
        net.add('loss_hint', 'EuclideanLoss', [aligned, target], propagate_down=[True, False],
                loss_weight=1.0 / (side * side), phase=train_only)
        if test_without_teacher:
            net.add('silence_test', 'Silence', [aligned], top=[], phase=caffe_pb2.TEST)
    else:
        logits = classifier(net, cfg, student_trunk(net, cfg, 'data'))
        student_map = attention_map(net, cfg, 'attention_student', last_conv_name(cfg),
                                    frozen=False, resize_to=side)
        teacher_map = target if precomputed else \
            attention_map(net, cfg, 'attention_teacher', target, frozen=True)
        net.add('loss_attention', 'EuclideanLoss', [student_map, teacher_map],
                propagate_down=[True, False], loss_weight=ATTENTION_BETA / (side * side),
                phase=train_only)
        if test_without_teacher:
            net.add('silence_test', 'Silence', [student_map], top=[], phase=caffe_pb2.TEST)
        net.add('loss_sig', 'SigmoidCrossEntropyLoss', [logits, 'label'],
                propagate_down=[True, False], loss_weight=1, loss_param=LABEL_LOSS_PARAM)
    return net.param


def input_scale(net, cfg, blob):
    """A deploy net's stand-in for the data layer's scale: callers feed mean-subtracted pixels,
    as to the original's nets, and the net scales them as its training data was."""
    if cfg['input_scale'] != 1:
        net.add('input_scale', 'Power', [blob], [blob],
                power_param={'power': 1, 'scale': float(cfg['input_scale'])})


def teacher_deploy_net(cfg, name, kd):
    """WSDDN at test time: inputs imagedata (1, 3, S, S) and proposaldata (1, 5B, 1, 1);
    outputs proposal_class_score (N, B, C, 1) and image_level_score (N, 1, C, 1). kd: with the
    KD nets' layer names and stage 2's temperature."""
    net = Net(name)
    size = cfg['image_size']
    net.param.input.extend(['imagedata', 'proposaldata'])
    net.param.input_shape.add(dim=[1, 3, size, size])
    net.param.input_shape.add(dim=[1, 5 * cfg['num_proposals'], 1, 1])
    net.add('roi', 'WsdRoigen', ['proposaldata'])
    input_scale(net, cfg, 'imagedata')
    teacher(net, cfg, 'imagedata', kd=kd, heads=True)
    return net.param


def baseline_teacher_deploy_net(cfg):
    """The frozen teacher's part that the baselines learn from, at test time: input imagedata
    (N, 3, S, S); its last conv features (blob last_conv_name(cfg, kd_teacher=True), the FitNets
    hint) and their L2-normalised attention map (output attention_teacher_normalized), by the
    same layers, names and weights as in the baselines' train nets."""
    net = Net('baseline_teacher')
    size = cfg['image_size']
    net.param.input.append('imagedata')
    net.param.input_shape.add(dim=[1, 3, size, size])
    input_scale(net, cfg, 'imagedata')
    conv = teacher_conv(net, cfg, 'imagedata')
    attention_map(net, cfg, 'attention_teacher', conv, frozen=True)
    return net.param


def wsddn_deploy_net(cfg):
    """The teacher at test time (teacher_deploy_net)."""
    return teacher_deploy_net(cfg, net_name(cfg, 'wsddn'), kd=False)


def stage2_teacher_deploy_net(cfg):
    """The teacher of the stage-2 net alone (its layer names, its temperature): its
    image_level_score is the soft target stage 2 reads (soft_targets)."""
    return teacher_deploy_net(cfg, 'stage2_teacher', kd=True)


def student_deploy_net(cfg):
    """The student at test time: input data (1, 3, S, S) preprocessed like the datalist's images
    (any size works: Interp resizes to student_size); output score = sigmoid(fc8_mscoco)."""
    net = Net('student')
    size = cfg['image_size']
    net.param.input.append('data')
    net.param.input_shape.add(dim=[1, 3, size, size])
    input_scale(net, cfg, 'data')
    logits = classifier(net, cfg, student_trunk(net, cfg, 'data'))
    net.add('score', 'Sigmoid', [logits])
    return net.param


def solver_param(cfg, kind, net_path, snapshot_prefix):
    solver = caffe_pb2.SolverParameter(net=net_path, snapshot_prefix=snapshot_prefix)
    settings = dict(cfg['solver'][BASELINE_NETS.get(kind, kind)])
    if (kind == 'stage1' and cfg['roi_targets']) or (kind == 'fitnets_hint' and
                                                     cfg['hint_targets']):
        # Its test net has no loss (train_net, baseline_net): no testing.
        for key in ('test_iter', 'test_interval', 'test_initialization'):
            settings.pop(key, None)
    test_iter = settings.pop('test_iter', None)
    if test_iter:
        solver.test_iter.append(test_iter)
    for key, value in settings.items():
        setattr(solver, key, value)
    return solver


def to_text(message, header):
    # Single quotes inside param_str need no escape in a double-quoted prototxt string.
    body = text_format.MessageToString(message).replace("\\'", "'")
    return ''.join('# %s\n' % line for line in header) + body


def _path(path, relative_to):
    path = os.path.abspath(path)
    return os.path.relpath(path, relative_to) if relative_to else path


def net_texts(cfg, datalists=None, root_folder='', snapshot_dir=None, relative_to=None,
              out_dir='.'):
    """{key of FILES: file text} of every net and solver."""
    check_config(cfg)
    for key in TARGET_KEYS:
        if cfg[key]:
            cfg = dict(cfg, **{key: _path(cfg[key], relative_to)})
    datalists = dict(cfg['datalists'], **(datalists or {}))
    datalists = {k: _path(v, relative_to) for k, v in datalists.items()}
    if root_folder:
        root_folder = _path(root_folder, relative_to).rstrip('/') + '/'
    snapshot_dir = snapshot_dir or os.path.join(out_dir, 'snapshots')
    prefix = '' if cfg['name'] == 'full' else cfg['name'] + '_'
    header = ['Generated by tools/generate_nets.py (tools/mlic/netgen.py, config "%s").'
              % cfg['name'], 'Edit the generator, not this file.']
    texts = {
        'wsddn_deploy': to_text(wsddn_deploy_net(cfg), header),
        'student_deploy': to_text(student_deploy_net(cfg), header),
        'stage2_teacher_deploy': to_text(stage2_teacher_deploy_net(cfg), header),
        'baseline_teacher_deploy': to_text(baseline_teacher_deploy_net(cfg), header),
    }
    for kind in NETS:
        net_key, solver_key = kind + '_train', kind + '_solver'
        texts[net_key] = to_text(train_net(cfg, kind, datalists, root_folder), header)
        net_path = _path(os.path.join(out_dir, FILES[net_key]), relative_to)
        snapshot = _path(os.path.join(snapshot_dir, prefix + kind), relative_to)
        texts[solver_key] = to_text(solver_param(cfg, kind, net_path, snapshot), header)
    for kind in BASELINE_NETS:
        net_key, solver_key = kind + '_train', kind + '_solver'
        texts[net_key] = to_text(baseline_net(cfg, kind, datalists, root_folder), header)
        net_path = _path(os.path.join(out_dir, FILES[net_key]), relative_to)
        snapshot = _path(os.path.join(snapshot_dir, prefix + kind), relative_to)
        texts[solver_key] = to_text(solver_param(cfg, kind, net_path, snapshot), header)
    return texts


def write_nets(out_dir, cfg, datalists=None, root_folder='', snapshot_dir=None,
               relative_to=None):
    """Writes every net and solver of `cfg` under out_dir (layout: FILES); returns
    {key: path}.

    datalists: {'train': path, 'test': path}, default cfg['datalists'].
    root_folder: prefix of the datalists' image paths ('' = paths as written in the lists).
    snapshot_dir: where the solvers write snapshots (default out_dir/snapshots; created).
    relative_to: the directory caffe will be run from; paths inside the files (datalists, the
    solvers' nets and snapshot prefixes) are written relative to it, or absolute when None.
    """
    snapshot_dir = snapshot_dir or os.path.join(out_dir, 'snapshots')
    texts = net_texts(cfg, datalists, root_folder, snapshot_dir, relative_to, out_dir)
    os.makedirs(snapshot_dir, exist_ok=True)
    paths = {}
    for key, text in texts.items():
        path = os.path.join(out_dir, FILES[key])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
        paths[key] = path
    return paths


def checked_in(small):
    """(out_dir, cfg, keyword arguments) that write the checked-in prototxt/ or prototxt/small/."""
    out_dir = os.path.join(ROOT, 'prototxt', 'small') if small else os.path.join(ROOT, 'prototxt')
    cfg = small_config() if small else copy.deepcopy(FULL)
    datalists = {k: os.path.join(ROOT, v) for k, v in cfg['datalists'].items()}
    return out_dir, cfg, dict(datalists=datalists, snapshot_dir=os.path.join(ROOT, 'snapshots'),
                              relative_to=ROOT)
