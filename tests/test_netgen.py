"""The generated nets: checked-in files, layer-for-layer agreement with the original, shapes."""
import copy
import json
import os

import numpy as np
import pytest

from mlic.paths import ROOT

from mlic import netgen

# Per layer of the four original prototxts: name, type, bottoms, tops, lr/decay mults,
# num_output, phase (our summary of the released wsddn/ and kd/ prototxts).
REFERENCE = os.path.join(ROOT, 'tests', 'data', 'original_layers.json')

WSDDN_TRAIN = 'wsddn/wsddn_train.prototxt'
WSDDN_DEPLOY = 'wsddn/wsddn_deploy.prototxt'
STAGE1 = 'kd/train_stage1.prototxt'
STAGE2 = 'kd/train_stage2.prototxt'
ALL = (WSDDN_TRAIN, WSDDN_DEPLOY, STAGE1, STAGE2)
TRAIN = (WSDDN_TRAIN, STAGE1, STAGE2)
KD = (STAGE1, STAGE2)
WITH_HEADS = (WSDDN_TRAIN, WSDDN_DEPLOY, STAGE2)

# Our generated net for each original prototxt.
OURS = {WSDDN_TRAIN: 'wsddn_train', WSDDN_DEPLOY: 'wsddn_deploy', STAGE1: 'stage1_train',
        STAGE2: 'stage2_train'}


def by_type(type_):
    return lambda layer: layer['type'] == type_


def by_name(name):
    return lambda layer: layer['name'] == name


def teacher_weights(layer):
    return layer['lr_mult'] and ('_wsd_' in layer['name'] or
                                 layer['name'].startswith('temp_branch'))


def teacher_dropout(layer):
    return layer['type'] == 'Dropout' and '_wsd_' in layer['bottom'][0]


# Every documented deviation from the original (docs/deviations.md):
# (original prototxts, which layers, change, argument).
DEVIATIONS = [
    # Our Python data layer (caffe_layers.data_layer.MultiLabelRoIDataLayer) for HumanAttData.
    (TRAIN, by_type('HumanAttData'), 'type', 'Python'),
    # Padding-aware proposal softmax instead of Softmax over axis 1; it reads the RoI rows.
    (WITH_HEADS, by_name('proposal_score'), 'type', 'ProposalSoftmax'),
    (WITH_HEADS, by_name('proposal_score'), 'append_bottom', 'roi'),
    # Stage 1: RoIDistillationLoss (EuclideanLoss when nothing is padded and top_k is 0).
    ((STAGE1,), by_name('loss_euclid'), 'type', 'RoIDistillationLoss'),
    ((STAGE1,), by_name('loss_euclid'), 'append_bottom', 'roi'),
    # A frozen teacher in both KD stages: lr_mult 0 and decay_mult 0 on every teacher param.
    (KD, teacher_weights, 'freeze', None),
    # ... and deterministic teacher features: its dropout layers are left out.
    (KD, teacher_dropout, 'remove', None),
]


def expected_layers(original, layers):
    layers = copy.deepcopy(layers)
    for files, select, change, argument in DEVIATIONS:
        if original not in files:
            continue
        matched = [layer for layer in layers if select(layer)]
        assert matched, 'deviation %s matches no layer of %s' % (change, original)
        for layer in matched:
            if change == 'type':
                layer['type'] = argument
            elif change == 'append_bottom':
                layer['bottom'].append(argument)
            elif change == 'freeze':
                layer['lr_mult'] = [0.0] * len(layer['lr_mult'])
                layer['decay_mult'] = [0.0] * len(layer['decay_mult'])
            elif change == 'remove':
                layers.remove(layer)
    return layers


def summary(net):
    """Our net in the reference's format."""
    from caffe.proto import caffe_pb2
    out = []
    for layer in net.layer:
        num_output = []
        for sub in ('convolution_param', 'inner_product_param'):
            if layer.HasField(sub) and getattr(layer, sub).HasField('num_output'):
                num_output.append(getattr(layer, sub).num_output)
        out.append({'name': layer.name, 'type': layer.type, 'bottom': list(layer.bottom),
                    'top': list(layer.top), 'lr_mult': [p.lr_mult for p in layer.param],
                    'decay_mult': [p.decay_mult for p in layer.param], 'num_output': num_output,
                    'phase': [caffe_pb2.Phase.Name(r.phase) for r in layer.include]})
    return out


def parse(text):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    return net


@pytest.mark.parametrize('small', [False, True], ids=['full', 'small'])
def test_checked_in_files_are_what_the_generator_writes(small):
    out_dir, cfg, kwargs = netgen.checked_in(small)
    texts = netgen.net_texts(cfg, out_dir=out_dir, **kwargs)
    assert sorted(texts) == sorted(netgen.FILES)
    for key, text in texts.items():
        path = os.path.join(out_dir, netgen.FILES[key])
        with open(path) as f:
            assert f.read() == text, '%s differs from the generator; run tools/generate_nets.py --update-checked-in' % path


def test_checked_in_solvers_run_from_the_repository_root():
    for key in ('wsddn_solver', 'stage1_solver', 'stage2_solver', 'student_solver'):
        from caffe.proto import caffe_pb2
        from google.protobuf import text_format
        solver = caffe_pb2.SolverParameter()
        with open(os.path.join(ROOT, 'prototxt', netgen.FILES[key])) as f:
            text_format.Merge(f.read(), solver)
        assert os.path.isfile(os.path.join(ROOT, solver.net))
        assert os.path.isdir(os.path.dirname(os.path.join(ROOT, solver.snapshot_prefix)))
        assert not solver.HasField('solver_mode')  # CPU by default, `-gpu N` for GPUs
    assert netgen.FULL['solver']['wsddn']['base_lr'] == 5e-5  # the authors'


@pytest.mark.parametrize('original', ALL)
def test_full_nets_match_the_original_layer_for_layer(original):
    with open(REFERENCE) as f:
        reference = json.load(f)[original]
    texts = netgen.net_texts(netgen.FULL, relative_to=ROOT, out_dir=os.path.join(ROOT, 'prototxt'))
    ours = summary(parse(texts[OURS[original]]))
    expected = expected_layers(original, reference)
    assert [l['name'] for l in ours] == [l['name'] for l in expected]
    for mine, theirs in zip(ours, expected):
        assert mine == theirs


def test_deviations_are_all_needed():
    """Without the deviation list the nets would not match: each entry changes something."""
    with open(REFERENCE) as f:
        reference = json.load(f)
    for original in ALL:
        assert expected_layers(original, reference[original]) != reference[original]


def test_original_settings_the_summary_does_not_show():
    net = {l.name: l for l in parse(netgen.net_texts(netgen.FULL)['stage2_train']).layer}
    assert net['temp_branch1_learn'].scale_param.filler.value == 2
    assert net['temp_branch1_learn'].scale_param.axis == 2
    assert net['temp_branch2_learn'].scale_param.axis == 1
    assert net['fc8_mscoco_soft'].scale_param.filler.value == pytest.approx(0.2)
    assert list(net['loss_soft'].propagate_down) == [True, False]
    assert list(net['loss_soft'].loss_weight) == list(net['loss_sig'].loss_weight) == [1]
    assert list(net['reshape_branch1'].reshape_param.shape.dim) == [-1, 500, 80, 1]
    assert net['image_level_score'].convolution_param.weight_filler.value == 1
    assert not net['image_level_score'].convolution_param.bias_term
    # Sigmoid cross entropy normalised by the batch size, as the fork's (stock default here).
    assert not net['loss_sig'].loss_param.HasField('normalization')
    stage1 = {l.name: l for l in parse(netgen.net_texts(netgen.FULL)['stage1_train']).layer}
    assert list(stage1['loss_euclid'].propagate_down) == [False, True, False]
    assert 'spatial_scale: 0.0625' in stage1['roi_pooling_224'].python_param.param_str
    assert 'single_scale: 224 origin_scale: 672' in stage1['roi_224'].python_param.param_str
    wsddn = [l for l in parse(netgen.net_texts(netgen.FULL)['wsddn_train']).layer
             if l.type == 'Python']
    assert [l.python_param.param_str.count('scale_factors') for l in wsddn] == [5, 0]
    assert "batch_size: 32" in wsddn[0].python_param.param_str
    assert "batch_size: 16" in wsddn[1].python_param.param_str


def test_teacher_names_round_trip():
    for kd, wsddn in (('conv_wsd_5_3', 'conv5_3'), ('fc_wsd_6', 'fc6'), ('fc_wsd_8_c', 'fc8_c'),
                      ('pool_wsd_1', 'pool1'), ('image_level_score', 'image_level_score')):
        assert netgen.teacher_layer_name(kd) == wsddn
    assert netgen.kd_teacher_name('conv1_2') == 'conv_wsd_1_2'
    assert netgen.kd_teacher_name('fc8_c') == 'fc_wsd_8_c'


@pytest.mark.parametrize('overrides, message', [
    ({'student_size': 30}, 'student_size'),
    ({'block_convs': [1, 1]}, 'block_channels and block_convs'),
    ({'num_clases': 3}, 'unknown config key'),
    ({'batch_size': {'wsddn': (0, 1), 'stage1': (1, 1), 'stage2': (1, 1), 'student': (1, 1)}},
     'batch_size'),
])
def test_bad_small_config_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        netgen.small_config(**overrides)


def test_write_nets_paths(tmp_path):
    cfg = netgen.small_config(num_classes=3, num_proposals=6)
    paths = netgen.write_nets(str(tmp_path / 'nets'), cfg,
                              datalists={'train': str(tmp_path / 'a.txt'),
                                         'test': str(tmp_path / 'b.txt')},
                              root_folder=str(tmp_path / 'images'))
    assert sorted(paths) == sorted(netgen.FILES)
    text = open(paths['wsddn_train']).read()
    assert "source: '%s'" % (tmp_path / 'a.txt') in text
    assert "root_folder: '%s/'" % (tmp_path / 'images') in text
    assert 'att_num: 3 bbox_num: 6' in text
    solver = open(paths['stage2_solver']).read()
    assert 'net: "%s"' % paths['stage2_train'] in solver
    assert 'snapshot_prefix: "%s"' % (tmp_path / 'nets' / 'snapshots' / 'small_stage2') in solver
    assert (tmp_path / 'nets' / 'snapshots').is_dir()


def batch_one(cfg):
    cfg = copy.deepcopy(cfg)
    cfg['batch_size'] = {net: (1, 1) for net in netgen.NETS}
    return cfg


def require_layer_types(caffe, net_param):
    """Fails (rather than letting Caffe abort the process) when a layer type is not built."""
    known = set(caffe.layer_type_list())
    missing = sorted(set(l.type for l in net_param.layer) - known)
    assert not missing, 'layer types not in this build: %s' % ', '.join(missing)


def instantiate(caffe, tmp_path, net_param, constant_fillers=True):
    """pycaffe Net of a NetParameter (TRAIN); constant fillers keep VGG16's set-up quick."""
    from google.protobuf import text_format
    require_layer_types(caffe, net_param)
    if constant_fillers:
        for layer in net_param.layer:
            for sub in ('convolution_param', 'inner_product_param'):
                if layer.HasField(sub):
                    getattr(layer, sub).weight_filler.type = 'constant'
    path = tmp_path / (net_param.name + '.prototxt')
    path.write_text(text_format.MessageToString(net_param))
    return caffe.Net(str(path), caffe.TRAIN)


def shapes(net):
    return {name: tuple(blob.data.shape) for name, blob in net.blobs.items()}


FULL_TEACHER_SHAPES = {
    'data': (1, 3, 672, 672), 'labels': (1, 80), 'list_roi': (1, 2500), 'roi': (500, 6),
    'conv1_2': (1, 64, 672, 672), 'pool4': (1, 512, 42, 42), 'conv5_3': (1, 512, 42, 42),
    'roi_pooling': (500, 512, 7, 7), 'fc6': (500, 4096), 'fc7': (500, 4096),
    'fc8_c': (500, 80), 'reshape_branch2': (1, 500, 80, 1), 'class_score': (1, 500, 80, 1),
    'proposal_score': (1, 500, 80, 1), 'proposal_class_score': (1, 500, 80, 1),
    'image_level_score': (1, 1, 80, 1), 'loss': (),
}


def test_full_wsddn_net_has_the_original_shapes(caffe, tmp_path):
    net = instantiate(caffe, tmp_path, netgen.train_net(batch_one(netgen.FULL), 'wsddn', None,
                                                        inputs=True))
    got = shapes(net)
    for name, shape in FULL_TEACHER_SHAPES.items():
        assert got[name] == shape, name
    assert net.params['fc6'][0].data.shape == (4096, 25088)
    assert net.params['image_level_score'][0].data.shape == (1, 500, 1, 1)


def test_full_stage1_net_has_the_original_shapes(caffe, tmp_path):
    net = instantiate(caffe, tmp_path, netgen.train_net(batch_one(netgen.FULL), 'stage1', None,
                                                        inputs=True))
    got = shapes(net)
    expected = {'roi': (500, 6), 'roi_224': (500, 6), 'conv_wsd_5_3': (1, 512, 42, 42),
                'roi_pooling': (500, 512, 7, 7), 'fc_wsd_7': (500, 4096),
                'data_size224': (1, 3, 224, 224), 'conv5_3': (1, 512, 14, 14),
                'roi_pooling_224': (500, 512, 7, 7), 'fc7': (500, 4096), 'loss_euclid': ()}
    for name, shape in expected.items():
        assert got[name] == shape, name
    assert net.params['fc6'][0].data.shape == net.params['fc_wsd_6'][0].data.shape


def test_full_stage2_and_student_nets_have_the_original_shapes(caffe, tmp_path):
    cfg = batch_one(netgen.FULL)
    net = instantiate(caffe, tmp_path, netgen.train_net(cfg, 'stage2', None, inputs=True))
    got = shapes(net)
    expected = {'conv_wsd_5_3': (1, 512, 42, 42), 'temp_branch1_learn': (1, 500, 80, 1),
                'image_level_score': (1, 1, 80, 1), 'data_size224': (1, 3, 224, 224),
                'pool5': (1, 512, 7, 7), 'fc6': (1, 4096), 'fc8_mscoco': (1, 80),
                'fc8_mscoco_soft': (1, 80), 'loss_soft': (), 'loss_sig': ()}
    for name, shape in expected.items():
        assert got[name] == shape, name
    # The stage-1 student's fc6 (on 7x7 RoI features) fits stage 2's fc6 (on pool5).
    assert net.params['fc6'][0].data.shape == (4096, 25088)
    assert net.params['temp_branch1_learn'][0].data.shape == (80,)
    assert net.params['temp_branch2_learn'][0].data.shape == (500,)
    del net
    student = instantiate(caffe, tmp_path, netgen.train_net(cfg, 'student', None, inputs=True))
    assert shapes(student)['fc8_mscoco'] == (1, 80) and 'loss_sig' in student.blobs


def test_full_deploy_nets(caffe):
    for key in ('wsddn_deploy', 'student_deploy'):
        require_layer_types(caffe, parse(netgen.net_texts(netgen.FULL)[key]))
    teacher = caffe.Net(os.path.join(ROOT, 'prototxt', 'wsddn', 'deploy.prototxt'), caffe.TEST)
    got = shapes(teacher)
    assert got['imagedata'] == (1, 3, 672, 672) and got['proposaldata'] == (1, 2500, 1, 1)
    for name in ('roi', 'conv5_3', 'roi_pooling', 'fc7', 'proposal_class_score',
                 'image_level_score'):
        assert got[name] == FULL_TEACHER_SHAPES[name], name
    del teacher
    student = caffe.Net(os.path.join(ROOT, 'prototxt', 'kd', 'student_deploy.prototxt'),
                        caffe.TEST)
    got = shapes(student)
    assert got['data_size224'] == (1, 3, 224, 224) and got['pool5'] == (1, 512, 7, 7)
    assert got['score'] == (1, 80)


def test_generate_nets_command_line(tmp_path):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'generate_nets.py'),
                           '--out', 'nets', '--small', '--num-classes', '3',
                           '--train-list', 'lists/train.txt', '--test-list', 'lists/test.txt',
                           '--soft-targets', 'lists/soft_targets.npy',
                           '--attention-targets', 'lists/attention_targets.npy'],
                          cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == len(netgen.FILES)
    net = (tmp_path / 'nets' / 'wsddn' / 'train.prototxt').read_text()
    assert "source: 'lists/train.txt'" in net and 'att_num: 3' in net
    solver = (tmp_path / 'nets' / 'wsddn' / 'solver.prototxt').read_text()
    assert 'net: "nets/wsddn/train.prototxt"' in solver
    assert 'snapshot_prefix: "nets/snapshots/small_wsddn"' in solver
    stage2 = (tmp_path / 'nets' / 'kd' / 'stage2_train.prototxt').read_text()
    assert "soft_targets: 'lists/soft_targets.npy'" in stage2 and 'conv_wsd' not in stage2
    attention = (tmp_path / 'nets' / 'baselines' / 'attention_train.prototxt').read_text()
    assert "map_targets: 'lists/attention_targets.npy'" in attention and 'conv_wsd' not in \
        attention
    hint = (tmp_path / 'nets' / 'baselines' / 'fitnets_hint_train.prototxt').read_text()
    assert 'map_targets' not in hint and 'conv_wsd' in hint  # its teacher stays inside


def run_generate_nets(cwd, *args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'generate_nets.py')]
                          + list(args), cwd=str(cwd), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def write_list(path, classes, lines):
    """A datalist with lines (labels, [(x1, y1, x2, y2, s), ...]) and its .classes."""
    from mlic.datalist import format_line
    with open(path, 'w') as f:
        for index, (labels, boxes) in enumerate(lines):
            f.write(format_line('img%d.png' % index, labels, boxes) + '\n')
    with open(str(path) + '.classes', 'w') as f:
        f.write(''.join(name + '\n' for name in classes))


def test_generate_nets_reads_the_sizes_from_the_datalist(tmp_path):
    write_list(tmp_path / 'train.txt', ['circle', 'square', 'star'],
               [([1, 0, 0], [(0, 0, 191, 120, 0.9), (10, 10, 20, 20, 0.5)]),
                ([0, 1, -1], [(5, 5, 100, 150, 0.8)] * 3 + [(-1, -1, -1, -1, -1)] * 2)])
    done = run_generate_nets(tmp_path, '--out', 'nets', '--small', '--datalist', 'train.txt')
    assert done.returncode == 0, done.stderr
    assert 'image size 192 px from the largest box corner (a lower bound' in done.stderr
    net = (tmp_path / 'nets' / 'wsddn' / 'train.prototxt').read_text()
    # 3 classes, 3 proposals (padding rows do not count), 192 px; the list is the training list.
    assert 'att_num: 3 bbox_num: 3' in net and 'new_width: 192 new_height: 192' in net
    assert "source: 'train.txt'" in net
    done = run_generate_nets(tmp_path, '--out', 'nets', '--small', '--datalist', 'train.txt',
                             '--image-size', '160')
    assert done.returncode == 1
    assert 'train.txt:1: a box reaches pixel 191, outside --image-size 160' in done.stderr
    done = run_generate_nets(tmp_path, '--out', 'nets2', '--small', '--train-list', 'train.txt',
                             '--image-size', '224', '--num-proposals', '5')
    assert done.returncode == 0, done.stderr
    net = (tmp_path / 'nets2' / 'wsddn' / 'train.prototxt').read_text()
    assert 'att_num: 3 bbox_num: 5' in net and 'new_width: 224 new_height: 224' in net


def test_max_pixels_reaches_the_data_layers_only_when_it_is_not_the_default(tmp_path):
    write_list(tmp_path / 'train.txt', ['circle', 'square'], [([1, 0], [(0, 0, 63, 63, 0.9)])])
    done = run_generate_nets(tmp_path, '--out', 'nets', '--small', '--datalist', 'train.txt',
                             '--max-pixels', '120000000')
    assert done.returncode == 0, done.stderr
    for name in ('wsddn/train.prototxt', 'kd/stage1_train.prototxt', 'kd/student_train.prototxt'):
        net = (tmp_path / 'nets' / name).read_text()
        assert net.count('max_pixels: 120000000') == 2, name  # TRAIN and TEST
    done = run_generate_nets(tmp_path, '--out', 'default', '--small', '--datalist', 'train.txt')
    assert done.returncode == 0, done.stderr
    assert 'max_pixels' not in (tmp_path / 'default' / 'wsddn' / 'train.prototxt').read_text()
    done = run_generate_nets(tmp_path, '--out', 'bad', '--small', '--datalist', 'train.txt',
                             '--max-pixels', '-1')
    assert done.returncode == 1 and '--max-pixels must be 0 (no limit) or positive' in done.stderr


def test_the_data_layer_reads_the_max_pixels_netgen_writes():
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    from mlic.preprocess import DEFAULT_MAX_PIXELS
    from caffe_layers import data_layer
    cfg = netgen.small_config(max_pixels=7 * DEFAULT_MAX_PIXELS)
    net = text_format.Parse(netgen.net_texts(cfg)['wsddn_train'],
                            caffe_pb2.NetParameter())
    layer = [layer for layer in net.layer if layer.type == 'Python'][0]
    assert data_layer.parse_param(layer.python_param.param_str).max_pixels == (
        7 * DEFAULT_MAX_PIXELS)


def test_generate_nets_never_overwrites_the_shipped_nets_unasked(tmp_path):
    before = {path: open(path).read() for path in
              [os.path.join(ROOT, 'prototxt', 'small', 'wsddn', 'train.prototxt')]}
    done = run_generate_nets(tmp_path, '--small')
    assert done.returncode == 2 and '--out is required' in done.stderr
    done = run_generate_nets(tmp_path, '--small', '--num-classes', '3', '--out',
                             os.path.join(ROOT, 'prototxt', 'small'))
    assert done.returncode == 2 and 'inside the shipped' in done.stderr
    for path, text in before.items():
        assert open(path).read() == text


def test_deploy_nets_describe_themselves(tmp_path):
    from mlic import deploy
    paths = netgen.write_nets(str(tmp_path), netgen.small_config(
        num_classes=7, fc_size=24, num_proposals=9, image_size=96, mean_value=[90, 100, 110]))
    mean = [90.0, 100.0, 110.0]  # from the train net beside each deploy net
    assert deploy.describe(paths['wsddn_deploy']) == {
        'kind': 'teacher', 'image_size': 96, 'num_classes': 7, 'num_proposals': 9,
        'fc_size': 24, 'mean_value': mean}
    assert deploy.describe(paths['stage2_teacher_deploy']) == {
        'kind': 'stage2_teacher', 'image_size': 96, 'num_classes': 7, 'num_proposals': 9,
        'fc_size': 24, 'mean_value': mean}
    assert deploy.describe(paths['student_deploy']) == {
        'kind': 'student', 'image_size': 96, 'num_classes': 7, 'num_proposals': 0,
        'fc_size': 24, 'mean_value': mean}
    with pytest.raises(ValueError, match='not a deploy net'):
        deploy.describe(paths['stage2_train'])


def test_input_scale_reaches_the_data_layers_and_the_deploy_nets(caffe, tmp_path):
    cfg = netgen.small_config(num_classes=3, input_scale=0.25)
    paths = netgen.write_nets(str(tmp_path), cfg)
    for kind in netgen.NETS:
        text = open(paths[kind + '_train']).read()
        assert text.count('123.675 scale: 0.25') == 2, kind  # the TRAIN and the TEST data layer
    net = caffe.Net(paths['student_deploy'], caffe.TEST)
    pixels = np.random.RandomState(0).uniform(-128, 128, net.blobs['data'].data.shape)
    net.blobs['data'].data[...] = pixels
    net.forward()
    np.testing.assert_allclose(net.blobs['data'].data, 0.25 * pixels, rtol=1e-6)


def test_batch_norm_follows_every_conv_and_fc6_fc7_and_freezes_with_the_teacher(caffe, tmp_path):
    cfg = netgen.small_config(num_classes=3, batch_norm=True)
    paths = netgen.write_nets(str(tmp_path), cfg)
    stage2 = {l.name: l for l in parse(open(paths['stage2_train']).read()).layer}
    for conv in ('conv1_1', 'conv2_1', 'conv3_1', 'fc6', 'fc7'):
        teacher = netgen.kd_teacher_name(conv)
        for name, frozen in ((conv, False), (teacher, True)):
            bn, scale = stage2[name + '_bn'], stage2[name + '_scale']
            assert bn.type == 'BatchNorm' and list(bn.bottom) == list(bn.top) == [name]
            assert bn.batch_norm_param.use_global_stats == frozen
            assert [p.lr_mult for p in bn.param] == [0, 0, 0]
            assert scale.type == 'Scale' and scale.scale_param.bias_term
            assert all((p.lr_mult == 0) == frozen for p in scale.param)
            assert netgen.teacher_layer_name(teacher + '_bn') == conv + '_bn'
    net = caffe.Net(paths['student_deploy'], caffe.TEST)
    assert net.blobs['fc7'].data.shape == (1, cfg['fc_size'])


def test_head_params_set_the_classifier_multipliers_only(tmp_path):
    default = netgen.write_nets(str(tmp_path / 'a'), netgen.small_config())
    chosen = netgen.write_nets(str(tmp_path / 'b'),
                               netgen.small_config(head_params=[[10, 10], [20, 0]]))
    for key in ('wsddn_train', 'stage2_train', 'student_train'):
        before = {l.name: l for l in parse(open(default[key]).read()).layer}
        after = {l.name: l for l in parse(open(chosen[key]).read()).layer}
        heads = [n for n in after if n in ('fc8_c', 'fc8_d', 'fc8_mscoco')]
        assert heads
        for name in heads:
            assert [(p.lr_mult, p.decay_mult) for p in before[name].param] == [(1, 1), (2, 0)]
            assert [(p.lr_mult, p.decay_mult) for p in after[name].param] == [(10, 10), (20, 0)]
        for name in set(after) - set(heads):
            assert after[name] == before[name], name


def test_soft_loss_weight_weighs_the_soft_loss_only(tmp_path):
    default = netgen.net_texts(netgen.small_config())
    chosen = netgen.net_texts(netgen.small_config(soft_loss_weight=5))
    for key in set(default) - {'stage2_train'}:
        assert chosen[key] == default[key], key
    before = {l.name: l for l in parse(default['stage2_train']).layer}
    after = {l.name: l for l in parse(chosen['stage2_train']).layer}
    assert list(after['loss_soft'].loss_weight) == [5]
    assert list(after['loss_sig'].loss_weight) == [1]
    for name in set(after) - {'loss_soft'}:
        assert after[name] == before[name], name


@pytest.mark.parametrize('batch_norm', [False, True])
def test_stage1_fc_frozen_freezes_the_students_fc6_fc7_in_stage1_only(tmp_path, batch_norm):
    cfg = netgen.small_config(stage1_fc_frozen=True, batch_norm=batch_norm)
    paths = netgen.write_nets(str(tmp_path), cfg)
    stage1 = {l.name: l for l in parse(open(paths['stage1_train']).read()).layer}
    for name in ('fc6', 'fc7') + (('fc6_scale', 'fc7_scale') if batch_norm else ()):
        assert [p.lr_mult for p in stage1[name].param] == [0, 0], name
    if batch_norm:
        assert stage1['fc6_bn'].batch_norm_param.use_global_stats
        assert not stage1['conv1_1_bn'].batch_norm_param.use_global_stats
    # A frozen layer runs as at test time: no dropout after the student's fc6/fc7 (the frozen
    # teacher has none either), while the unfrozen stage 1 keeps the original's.
    assert 'drop6' not in stage1 and 'drop7' not in stage1
    # The convolutions still learn, and nothing changes in the other nets.
    assert [p.lr_mult for p in stage1['conv1_1'].param] == [1, 2]
    free = netgen.write_nets(str(tmp_path / 'free'), netgen.small_config(batch_norm=batch_norm))
    for key in ('stage2_train', 'student_train', 'wsddn_train'):
        assert open(paths[key]).read() == open(free[key]).read()
    free_stage1 = {l.name: l for l in parse(open(free['stage1_train']).read()).layer}
    assert [p.lr_mult for p in free_stage1['fc6'].param] == [1, 2]
    assert free_stage1['drop7'].type == 'Dropout'


def test_precomputed_soft_targets_take_the_teacher_out_of_stage2(tmp_path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    cfg = netgen.small_config(soft_targets=str(tmp_path / 'run' / 'soft.npy'))
    texts = netgen.net_texts(cfg, relative_to=str(tmp_path))
    net = text_format.Parse(texts['stage2_train'], caffe_pb2.NetParameter())
    layers = {layer.name: layer for layer in net.layer}
    assert not [name for name in layers if '_wsd_' in name or name == 'roi']
    train_data, test_data = [layer for layer in net.layer if layer.type == 'Python']
    assert list(train_data.top) == ['data', 'label_roi', 'soft_target']
    assert "soft_targets: 'run/soft.npy'" in train_data.python_param.param_str
    assert list(test_data.top) == ['data', 'label_roi']
    assert 'soft_targets' not in test_data.python_param.param_str
    soft_loss = layers['loss_soft']
    assert list(soft_loss.bottom) == ['fc8_mscoco_soft', 'soft_target']
    assert [rule.phase for rule in soft_loss.include] == [caffe_pb2.TRAIN]
    # The other nets do not change; the teacher's stage-2 deploy net names its layers as stage 2.
    plain = netgen.net_texts(netgen.small_config(), relative_to=str(tmp_path))
    for key in ('wsddn_train', 'stage1_train', 'student_train', 'stage2_teacher_deploy'):
        assert texts[key] == plain[key], key
    deploy = text_format.Parse(plain['stage2_teacher_deploy'], caffe_pb2.NetParameter())
    names = [layer.name for layer in deploy.layer]
    assert 'conv_wsd_1_1' in names and 'temp_branch1_learn' in names
    assert names[-1] == 'image_level_score'


def test_precomputed_roi_targets_take_the_teacher_out_of_stage1(caffe, tmp_path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    cfg = netgen.small_config(roi_targets=str(tmp_path / 'run' / 'roi.npy'))
    texts = netgen.net_texts(cfg, relative_to=str(tmp_path))
    net = text_format.Parse(texts['stage1_train'], caffe_pb2.NetParameter())
    layers = {layer.name: layer for layer in net.layer}
    assert not [name for name in layers if '_wsd_' in name]
    train_data, test_data = [layer for layer in net.layer if layer.type == 'Python']
    assert list(train_data.top) == ['data', 'label_roi', 'roi_target']
    assert "roi_targets: 'run/roi.npy'" in train_data.python_param.param_str
    assert list(test_data.top) == ['data', 'label_roi']
    loss = layers['loss_euclid']
    assert list(loss.bottom) == ['roi_target', 'fc7', 'roi']
    assert [rule.phase for rule in loss.include] == [caffe_pb2.TRAIN]
    assert [rule.phase for rule in layers['silence_test'].include] == [caffe_pb2.TEST]
    # Its solver tests nothing (no targets for the test images); the others keep their tests.
    solver = text_format.Parse(texts['stage1_solver'], caffe_pb2.SolverParameter())
    assert not solver.test_iter and not solver.HasField('test_interval')
    assert text_format.Parse(texts['stage2_solver'], caffe_pb2.SolverParameter()).test_iter
    plain = netgen.net_texts(netgen.small_config(), relative_to=str(tmp_path))
    for key in ('wsddn_train', 'stage2_train', 'student_train', 'stage2_teacher_deploy'):
        assert texts[key] == plain[key], key
    # The student's layers and shapes are those of the stage-1 net with the teacher inside,
    # and the target blob is as wide as the teacher's fc7.
    with_inputs = instantiate(caffe, tmp_path, netgen.train_net(cfg, 'stage1', None,
                                                                inputs=True))
    online = instantiate(caffe, tmp_path, netgen.train_net(netgen.small_config(), 'stage1',
                                                           None, inputs=True))
    assert shapes(with_inputs)['roi_target'] == shapes(online)['fc_wsd_7']
    student = {name: [b.data.shape for b in blobs] for name, blobs in with_inputs.params.items()}
    assert student == {name: [b.data.shape for b in blobs]
                       for name, blobs in online.params.items() if '_wsd_' not in name}
