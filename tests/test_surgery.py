"""Weight surgery between the small nets: complete, exact, and loud when something is wrong."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import toy_config, without_cuda_startup_noise
from mlic.paths import ROOT

from mlic import netgen, surgery


@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    out = tmp_path_factory.mktemp('nets')
    return netgen.write_nets(str(out), toy_config())


def saved_model(caffe, prototxt, path, phase=None):
    """A .caffemodel of the net's filler-initialised weights (a stand-in for a trained one)."""
    net = caffe.Net(prototxt, caffe.TEST if phase is None else phase)
    rng = np.random.RandomState(len(path))
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.randn(*blob.data.shape)
    net.save(path)
    return {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}


def test_stage1_init_copies_the_teacher_under_kd_names(caffe, nets, tmp_path):
    teacher = saved_model(caffe, nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    report = surgery.stage1_init(str(tmp_path / 'teacher.caffemodel'), nets['stage1_train'],
                                 str(tmp_path / 'init.caffemodel'))
    init = surgery.weights(str(tmp_path / 'init.caffemodel'))
    teacher_layers = [n for n in report if '_wsd_' in n]
    assert sorted(teacher_layers) == sorted(
        ['conv_wsd_1_1', 'conv_wsd_2_1', 'conv_wsd_3_1', 'fc_wsd_6', 'fc_wsd_7'])
    for name in teacher_layers:
        for got, want in zip(init[name], teacher[netgen.teacher_layer_name(name)]):
            np.testing.assert_array_equal(got, want)
    # Without an ImageNet model the student starts from its fillers: listed, not copied.
    assert [n for n, source in report.items() if source == 'filler'] == [
        'conv1_1', 'conv2_1', 'conv3_1', 'fc6', 'fc7']
    assert 'conv1_1' not in init


def test_stage1_init_with_an_imagenet_model_fills_the_student(caffe, nets, tmp_path):
    saved_model(caffe, nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    imagenet = saved_model(caffe, nets['student_deploy'], str(tmp_path / 'imagenet.caffemodel'))
    report = surgery.stage1_init(str(tmp_path / 'teacher.caffemodel'), nets['stage1_train'],
                                 str(tmp_path / 'init.caffemodel'),
                                 str(tmp_path / 'imagenet.caffemodel'))
    assert 'filler' not in report.values()
    init = surgery.weights(str(tmp_path / 'init.caffemodel'))
    np.testing.assert_array_equal(init['fc6'][0], imagenet['fc6'][0])
    # The loaded net really takes them (Caffe's own copy, by name).
    net = caffe.Net(nets['student_deploy'], str(tmp_path / 'init.caffemodel'), caffe.TEST)
    np.testing.assert_array_equal(net.params['conv2_1'][0].data, imagenet['conv2_1'][0])


def test_stage2_init_takes_student_from_stage1_and_teacher_with_heads(caffe, nets, tmp_path):
    teacher = saved_model(caffe, nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    surgery.stage1_init(str(tmp_path / 'teacher.caffemodel'), nets['stage1_train'],
                        str(tmp_path / 'init1.caffemodel'))
    # A stage-1 "result": the init with the student filled too.
    stage1 = caffe.Net(nets['student_deploy'], caffe.TEST)
    for name in ('conv1_1', 'fc7'):
        stage1.params[name][0].data[...] = 0.5
    stage1.save(str(tmp_path / 'student.caffemodel'))
    merged = surgery.weights(str(tmp_path / 'init1.caffemodel'))
    merged.update(surgery.weights(str(tmp_path / 'student.caffemodel')))
    del merged['fc8_mscoco']  # stage 1 has no classifier
    from caffe.proto import caffe_pb2
    out = caffe_pb2.NetParameter()
    for name, arrays in merged.items():
        layer = out.layer.add(name=name)
        for array in arrays:
            layer.blobs.add().MergeFromString(surgery.blob_bytes(array, array.shape))
    (tmp_path / 'stage1.caffemodel').write_bytes(out.SerializeToString())

    report = surgery.stage2_init(str(tmp_path / 'stage1.caffemodel'),
                                 str(tmp_path / 'teacher.caffemodel'), nets['stage2_train'],
                                 str(tmp_path / 'init2.caffemodel'))
    assert sorted(n for n, s in report.items() if s == 'filler') == sorted(
        surgery.STAGE2_FROM_FILLERS)
    init = surgery.weights(str(tmp_path / 'init2.caffemodel'))
    np.testing.assert_array_equal(init['fc_wsd_8_d'][1], teacher['fc8_d'][1])
    np.testing.assert_array_equal(init['image_level_score'][0], teacher['image_level_score'][0])
    assert (init['conv1_1'][0] == 0.5).all() and (init['fc7'][0] == 0.5).all()


def test_stage2_without_stage1_starts_the_student_from_fillers(caffe, nets, tmp_path):
    teacher = saved_model(caffe, nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    report = surgery.stage2_init(None, str(tmp_path / 'teacher.caffemodel'),
                                 nets['stage2_train'], str(tmp_path / 'init2.caffemodel'))
    assert report['conv1_1'] == 'filler' and report['fc7'] == 'filler'
    init = surgery.weights(str(tmp_path / 'init2.caffemodel'))
    np.testing.assert_array_equal(init['conv_wsd_1_1'][0], teacher['conv1_1'][0])
    assert 'conv1_1' not in init


def test_missing_layer_names_both_layers(caffe, nets, tmp_path):
    saved_model(caffe, nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    # A stage-1 model lacking the student's conv2_1.
    surgery.stage1_init(str(tmp_path / 'teacher.caffemodel'), nets['stage1_train'],
                        str(tmp_path / 'stage1.caffemodel'))
    with pytest.raises(surgery.SurgeryError) as error:
        surgery.stage2_init(str(tmp_path / 'stage1.caffemodel'),
                            str(tmp_path / 'teacher.caffemodel'), nets['stage2_train'],
                            str(tmp_path / 'init2.caffemodel'))
    text = str(error.value)
    assert 'layer "conv1_1" of' in text and 'needs layer "conv1_1" of' in text
    assert 'stage1.caffemodel' in text and 'stage2_train.prototxt' in text
    assert not (tmp_path / 'init2.caffemodel').exists()


def test_swapped_models_are_refused(caffe, nets, tmp_path):
    """The student shares the teacher's layer names and shapes: a swap must not pass silently."""
    saved_model(caffe, nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    saved_model(caffe, nets['student_deploy'], str(tmp_path / 'student.caffemodel'))
    with pytest.raises(surgery.SurgeryError, match='student.caffemodel is not a trained WSDDN'):
        surgery.stage1_init(str(tmp_path / 'student.caffemodel'), nets['stage1_train'],
                            str(tmp_path / 'init.caffemodel'))
    with pytest.raises(surgery.SurgeryError, match='teacher.caffemodel is not a stage-1 result'):
        surgery.stage2_init(str(tmp_path / 'teacher.caffemodel'),
                            str(tmp_path / 'teacher.caffemodel'), nets['stage2_train'],
                            str(tmp_path / 'init2.caffemodel'))


def test_shape_mismatch_names_both_layers(caffe, nets, tmp_path):
    other = netgen.write_nets(str(tmp_path / 'other'), toy_config(fc_size=32))
    saved_model(caffe, other['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    with pytest.raises(surgery.SurgeryError,
                       match=r'shape mismatch: layer "fc_wsd_6" param 0 of .*stage1_train'
                             r'.prototxt is 64x512 but layer "fc6" param 0 of .*teacher'
                             r'.caffemodel is 32x512'):
        surgery.stage1_init(str(tmp_path / 'teacher.caffemodel'), nets['stage1_train'],
                            str(tmp_path / 'init.caffemodel'))


def test_not_a_caffemodel(nets, tmp_path):
    (tmp_path / 'bad.caffemodel').write_bytes(b'\xff\xff\xff garbage')
    with pytest.raises(surgery.SurgeryError, match='bad.caffemodel: not a Caffe'):
        surgery.weights(str(tmp_path / 'bad.caffemodel'))
    with pytest.raises(surgery.SurgeryError, match='no such file'):
        surgery.weights(str(tmp_path / 'none.caffemodel'))


def test_legacy_4d_blobs_are_accepted_like_caffe_does():
    array = np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3)
    assert surgery._fits(array, (2, 3))
    assert not surgery._fits(array, (3, 2))


def test_command_line_tool(caffe, nets, tmp_path):
    saved_model(caffe, nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    tool = os.path.join(ROOT, 'tools', 'net_surgery.py')
    done = subprocess.run([sys.executable, tool, 'stage1', '--teacher',
                           str(tmp_path / 'teacher.caffemodel'), '--net', nets['stage1_train'],
                           '--out', str(tmp_path / 'init.caffemodel')],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, done.stderr
    assert 'fc_wsd_7' in done.stdout and (tmp_path / 'init.caffemodel').exists()
    done = subprocess.run([sys.executable, tool, 'stage2', '--stage1',
                           str(tmp_path / 'teacher.caffemodel'), '--teacher',
                           str(tmp_path / 'teacher.caffemodel'), '--net', nets['stage2_train'],
                           '--out', str(tmp_path / 'init2.caffemodel')],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 1 and 'net_surgery: error: ' in done.stderr


def test_backbone_drops_only_the_classifier(caffe, nets, tmp_path):
    """A pretrained classifier without fc8 fits the teacher and the student by name, and Caffe
    loads it into both with everything but fc8 / the WSDDN heads copied."""
    trained = saved_model(caffe, nets['student_deploy'], str(tmp_path / 'classifier.caffemodel'))
    report = surgery.backbone(str(tmp_path / 'classifier.caffemodel'), nets['student_train'],
                              str(tmp_path / 'backbone.caffemodel'))
    assert report['fc8_mscoco'] == 'filler'
    backbone = surgery.weights(str(tmp_path / 'backbone.caffemodel'))
    assert sorted(backbone) == sorted(n for n in trained if n != 'fc8_mscoco')
    teacher = caffe.Net(nets['wsddn_deploy'], str(tmp_path / 'backbone.caffemodel'), caffe.TEST)
    for name in backbone:
        for got, want in zip(teacher.params[name], trained[name]):
            np.testing.assert_array_equal(got.data, want)


def test_a_stage1_net_without_teacher_needs_no_teacher_and_any_other_does(caffe, nets, tmp_path):
    """roi_targets: the stage-1 net reads the teacher's features and holds only the student."""
    roi_nets = netgen.write_nets(str(tmp_path / 'roi'), toy_config(
        roi_targets=str(tmp_path / 'roi_targets.npy')))
    imagenet = saved_model(caffe, nets['student_deploy'], str(tmp_path / 'imagenet.caffemodel'))
    report = surgery.stage1_init(None, roi_nets['stage1_train'], str(tmp_path / 'init.caffemodel'),
                                 str(tmp_path / 'imagenet.caffemodel'))
    assert sorted(report) == sorted(name for name in imagenet if name != 'fc8_mscoco')
    init = surgery.weights(str(tmp_path / 'init.caffemodel'))
    np.testing.assert_array_equal(init['conv1_1'][0], imagenet['conv1_1'][0])
    with pytest.raises(surgery.SurgeryError, match=r'stage1_train.prototxt runs the teacher .*'
                                                   r'needs the trained WSDDN'):
        surgery.stage1_init(None, nets['stage1_train'], str(tmp_path / 'init2.caffemodel'))
    # Its result has no teacher layers; stage 2 still refuses what is not a stage-1 result.
    saved_model(caffe, nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    report = surgery.stage2_init(str(tmp_path / 'init.caffemodel'),
                                 str(tmp_path / 'teacher.caffemodel'), nets['stage2_train'],
                                 str(tmp_path / 'stage2.caffemodel'))
    assert report['fc7'].endswith('init.caffemodel:fc7')
    with pytest.raises(surgery.SurgeryError, match=r'imagenet.caffemodel is not a stage-1 '
                                                   r'result: it has a classifier \(fc8_mscoco;'):
        surgery.stage2_init(str(tmp_path / 'imagenet.caffemodel'),
                            str(tmp_path / 'teacher.caffemodel'), nets['stage2_train'],
                            str(tmp_path / 'stage2b.caffemodel'))


@pytest.fixture(scope='module')
def small_nets(tmp_path_factory):
    """The small preset's nets for 3 classes (another class count than the preset's)."""
    out = tmp_path_factory.mktemp('small_nets')
    return netgen.write_nets(str(out), netgen.small_config(num_classes=3))


def run_tool(*args):
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'net_surgery.py')]
                          + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    done.stderr = without_cuda_startup_noise(done.stderr)
    return done


def test_without_net_the_tool_finds_the_preset_of_the_teacher(caffe, small_nets, tmp_path):
    teacher = saved_model(caffe, small_nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    done = run_tool('stage1', '--teacher', str(tmp_path / 'teacher.caffemodel'),
                    '--out', str(tmp_path / 'init1.caffemodel'))
    assert done.returncode == 0, done.stderr
    assert "net: the small preset's stage1 net for 3 classes" in done.stdout
    # Caffe's set-up log of the nets it builds stays out of the terminal: a line per layer
    # filled and a few more.
    report_lines = [line for line in done.stdout.splitlines() if ' <- ' in line]
    assert len(done.stdout.splitlines()) == len(report_lines) + 2
    assert done.stderr == ''
    init = surgery.weights(str(tmp_path / 'init1.caffemodel'))
    np.testing.assert_array_equal(init['conv_wsd_4_2'][0], teacher['conv4_2'][0])
    # The init loads into the nets generated for the data (3 classes): same names and shapes.
    net = caffe.Net(small_nets['stage2_teacher_deploy'], str(tmp_path / 'init1.caffemodel'),
                    caffe.TEST)
    np.testing.assert_array_equal(net.params['fc_wsd_7'][0].data, teacher['fc7'][0])
    done = run_tool('stage2', '--stage1', str(tmp_path / 'init1.caffemodel'), '--teacher',
                    str(tmp_path / 'teacher.caffemodel'), '--out',
                    str(tmp_path / 'init2.caffemodel'))
    assert done.returncode == 1
    assert 'init1.caffemodel' in done.stderr and 'conv1_1' in done.stderr


def test_a_teacher_of_neither_preset_is_named_with_its_shapes(caffe, nets, tmp_path):
    saved_model(caffe, nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    done = run_tool('stage1', '--teacher', str(tmp_path / 'teacher.caffemodel'),
                    '--out', str(tmp_path / 'init.caffemodel'))
    assert done.returncode == 1 and done.stdout == ''
    assert done.stderr.count('\n') == 1, done.stderr
    assert ('teacher.caffemodel (3 convolutions, 8-16-32 filters, fc7 64 outputs) matches '
            'neither preset: the full one has 13 convolutions, 64-128-256-512-512 filters, fc7 '
            '4096 outputs, the small one 6 convolutions, 16-32-64-128 filters, fc7 256 outputs, '
            'BatchNorm. Give the net you generated for it with --net') in done.stderr
    assert not (tmp_path / 'init.caffemodel').exists()


def test_a_net_of_another_preset_says_which_preset_the_teacher_has(caffe, nets, small_nets,
                                                                   tmp_path):
    saved_model(caffe, small_nets['wsddn_deploy'], str(tmp_path / 'teacher.caffemodel'))
    done = run_tool('stage1', '--teacher', str(tmp_path / 'teacher.caffemodel'),
                    '--net', nets['stage1_train'], '--out', str(tmp_path / 'init.caffemodel'))
    assert done.returncode == 1 and done.stdout == ''
    assert 'shape mismatch' in done.stderr
    assert ("teacher.caffemodel has the small preset's shapes: leave out --net to use that "
            "preset's net") in done.stderr
    assert len(done.stderr.splitlines()) == 2


def test_the_presets_trunk_shapes_are_those_of_their_nets(caffe, small_nets):
    net = caffe.Net(small_nets['wsddn_deploy'], caffe.TEST)
    model = {name: [blob.data for blob in blobs] for name, blobs in net.params.items()}
    assert surgery.model_trunk(model) == surgery.trunk_shapes(netgen.SMALL)
    assert surgery.matching_preset('small', model) is netgen.SMALL
