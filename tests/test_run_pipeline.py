"""tools/run_pipeline.py on a user's own datalists: the whole method end to end at toy size,
the resume path, detection skipped without boxes, ImageNet-style initial weights, the VGG16
preset, and errors that name the config key, the file and the line."""
import json
import math
import os
import re
import shutil

import numpy as np
import pytest

from conftest import TOY_PIPELINE_BBOX_NUM, TOY_PIPELINE_NETS, TOY_PIPELINE_SIZE, load_tool, \
    toy_pipeline_lists
from mlic import converters, netgen, pipeline, run_config, surgery
from mlic.paths import ROOT

run_pipeline = load_tool('run_pipeline')

ROWS = ['Teacher (WSDDN)', 'Student w/o KD', 'Stage 1 only', 'Stage 2 only', 'Student w/ KD']
TRAININGS = ('teacher', 'stage1', 'stage2', 'student', 'stage1_only', 'stage2_only')
SIZE, BBOX_NUM, NUM_CLASSES = TOY_PIPELINE_SIZE, TOY_PIPELINE_BBOX_NUM, 4
TINY_NETS = TOY_PIPELINE_NETS


@pytest.fixture(scope='module')
def user_data(tmp_path_factory):
    """Complete datalists made by the project's own tools, as a user would make them."""
    return toy_pipeline_lists(tmp_path_factory.mktemp('user_data'), num_classes=NUM_CLASSES,
                              num_train=12, num_test=8, seed=3)


def write_config(path, user_data, boxes=True, extra_top='', datalists=None, nets=TINY_NETS):
    lists = dict(train=user_data['train'], test=user_data['test'], bbox_num=BBOX_NUM,
                 image_size=SIZE)
    if boxes:
        lists['test_boxes'] = user_data['test_boxes']
    lists.update(datalists or {})
    lists = {k: v for k, v in lists.items() if v is not None}  # None: the key left out
    text = 'folder = "%s"\nseeds = [1]\n%s\n[datalists]\n' % (path.parent / 'run', extra_top)
    text += ''.join('%s = %s\n' % (k, json.dumps(v)) for k, v in lists.items()) + nets
    path.write_text(text)
    return str(path)


def check_table(folder):
    table = json.loads((folder / 'results.json').read_text())
    assert [row['name'] for row in table['rows']] == ROWS
    for row in table['rows']:
        assert row['values']
        for column, cell in row['values'].items():
            assert math.isfinite(cell['mean']) and 0 <= cell['mean'] <= 100, (row, column)
    for png in ('training_curves.png', 'top3_examples.png'):
        assert (folder / png).stat().st_size > 1000, png
    return (folder / 'results.md').read_text()


@pytest.mark.e2e  # trains every net of the method
def test_whole_method_on_user_datalists_then_a_rerun_redoes_nothing(user_data, tmp_path,
                                                                      capfd):
    config = write_config(tmp_path / 'my.toml', user_data)
    assert run_pipeline.main(['--config', config]) == 0
    first = capfd.readouterr().err
    assert 'no init_weights' in first  # the from-scratch warning
    folder = tmp_path / 'run'
    markdown = check_table(folder)
    assert 'Teacher detection on the test split (seed 1): VOC07 mAP@0.5' in markdown
    assert 'fc_size = 16  # %s' % config in (folder / 'effective_config.toml').read_text()
    evaluated = json.loads((folder / 'seed1' / 'evaluate' / 'results.json').read_text())
    assert 0 <= evaluated['teacher_detection']['mAP'] <= 1
    for step in TRAININGS:
        assert (folder / 'seed1' / step / 'final.caffemodel').exists(), step
    # The nets read the user's lists, not the demo's.
    solver_net = (folder / 'seed1' / 'nets' / 'wsddn' / 'train.prototxt').read_text()
    assert user_data['train'] in solver_net and user_data['test'] in solver_net

    assert run_pipeline.main(['--config', config]) == 0
    again = capfd.readouterr().err
    assert 'training' not in again and 'checking' not in again
    assert again.count('done already') == 10  # datalists, nets, 6 trainings, 2 evaluations

    # The datalists are fingerprinted by content: a touched list is still done, a changed one
    # is checked again.
    test_list = user_data['test']
    os.utime(test_list)
    assert run_pipeline.main(['--config', config, '--steps', 'datalists']) == 0
    assert re.search(r'datalists +done already', capfd.readouterr().err)
    changed = tmp_path / 'test_changed.txt'
    shutil.copyfile(test_list, changed)
    shutil.copyfile(test_list + '.classes', str(changed) + '.classes')
    lines = changed.read_text().splitlines()
    changed.write_text('\n'.join(lines[:-1]) + '\n')
    config = write_config(tmp_path / 'my.toml', user_data,
                          datalists={'test': str(changed), 'test_boxes': user_data['test_boxes']})
    assert run_pipeline.main(['--config', config, '--steps', 'datalists']) == 0
    assert re.search(r'datalists +checking', capfd.readouterr().err)


def fake_imagenet_model(cfg, path, tmp_path):
    """A .caffemodel with the student's conv1_1 .. fc7 (random), as ImageNet VGG16 has them
    for the full nets: what init_weights names."""
    import caffe
    files = netgen.write_nets(str(tmp_path / 'fake_nets'), cfg)
    net = caffe.Net(files['student_deploy'], caffe.TEST)
    rng = np.random.default_rng(0)
    for name, blobs in net.params.items():
        if name.endswith('_bn'):  # BatchNorm statistics: mean 0, variance 1, as stored
            for blob, value in zip(blobs, (0.0, 1.0, 1.0)):
                blob.data[...] = value
            continue
        for blob in blobs:
            blob.data[...] = rng.normal(0, 0.05, blob.data.shape)
    net.save(str(path) + '.full')
    model = surgery.read_net(str(path) + '.full')
    keep = [layer for layer in model.layer if layer.name != 'fc8_mscoco']
    del model.layer[:]
    model.layer.extend(keep)
    path.write_bytes(model.SerializeToString())
    return {name: blobs[0].data.copy() for name, blobs in net.params.items()}


@pytest.mark.e2e  # trains every net of the method
def test_without_boxes_the_report_says_so_and_init_weights_start_the_nets(user_data, tmp_path,
                                                                           caffe, capfd):
    config = write_config(tmp_path / 'my.toml', user_data, boxes=False)
    cfg = pipeline.net_config(pipeline.load_config(config), NUM_CLASSES)
    imagenet = tmp_path / 'imagenet.caffemodel'
    weights = fake_imagenet_model(cfg, imagenet, tmp_path)
    config = write_config(tmp_path / 'my.toml', user_data, boxes=False,
                          extra_top='init_weights = "%s"' % imagenet)
    assert run_pipeline.main(['--config', config]) == 0
    assert 'no init_weights' not in capfd.readouterr().err
    folder = tmp_path / 'run'
    markdown = check_table(folder)
    assert 'Teacher detection: not measured' in markdown and 'CorLoc' not in markdown.replace(
        'mAP@0.5 and CorLoc', '')
    evaluated = json.loads((folder / 'seed1' / 'evaluate' / 'results.json').read_text())
    assert 'teacher_detection' not in evaluated and 'teacher' in evaluated
    # The teacher and the student w/o KD get the file from caffe's -weights ...
    for step in ('teacher', 'student'):
        log = (folder / 'seed1' / step / 'train.log').read_text()
        assert 'Finetuning from %s' % imagenet in log, step
    # ... the students of stage 1 and of stage 2 only through the weight surgery.
    for step in ('stage1', 'stage2_only'):
        init = surgery.weights(str(folder / 'seed1' / step / 'init.caffemodel'))
        for name in ('conv1_1', 'conv3_1', 'fc6', 'fc7'):
            np.testing.assert_array_equal(init[name][0], weights[name], err_msg=(step, name))


def test_init_weights_that_do_not_fit_the_nets_stop_before_training(user_data, tmp_path,
                                                                     caffe, capfd):
    config = write_config(tmp_path / 'my.toml', user_data)
    cfg = pipeline.net_config(pipeline.load_config(config), NUM_CLASSES)
    imagenet = tmp_path / 'other.caffemodel'
    fake_imagenet_model(dict(cfg, fc_size=8), imagenet, tmp_path)  # fc6, fc7 of other sizes
    config = write_config(tmp_path / 'my.toml', user_data,
                          extra_top='init_weights = "%s"' % imagenet)
    assert run_pipeline.main(['--config', config]) == 1
    err = capfd.readouterr().err
    assert 'my.toml: init_weights: %s does not fit the nets' % imagenet in err
    assert 'shape mismatch: layer "fc6"' in err
    assert not (tmp_path / 'run' / 'seed1' / 'teacher').exists()


def test_full_preset_writes_the_vgg16_nets_with_the_table_overrides(user_data, tmp_path):
    nets = '''
[nets]
preset = "full"
[nets.batch_size]
wsddn = [2, 1]
[nets.solver.wsddn]
max_iter = 123
solver_mode = "CPU"
'''
    config = write_config(tmp_path / 'my.toml', user_data, nets=nets,
                          datalists={'bbox_num': 500, 'image_size': 672})
    assert run_pipeline.main(['--config', config, '--steps', 'nets']) == 0
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    nets_dir = tmp_path / 'run' / 'seed1' / 'nets'
    for name, convs in (('wsddn/train.prototxt', 13), ('kd/student_train.prototxt', 13),
                        ('kd/stage1_train.prototxt', 26)):
        net = text_format.Parse((nets_dir / name).read_text(), caffe_pb2.NetParameter())
        layers = {layer.name: layer for layer in net.layer}
        conv3 = [layer for layer in net.layer if layer.type == 'Convolution'
                 and layer.convolution_param.kernel_size == [3]]
        assert len(conv3) == convs, name
        assert [layers[n].convolution_param.num_output for n in ('conv1_1', 'conv5_3')
                if n in layers] in ([64, 512], [])
        assert all(layers[n].inner_product_param.num_output == 4096
                   for n in ('fc6', 'fc7') if n in layers)
        assert not any(layer.type == 'BatchNorm' for layer in net.layer)
    wsddn = (nets_dir / 'wsddn' / 'train.prototxt').read_text()
    assert 'bbox_num: 500' in wsddn and 'new_width: 672' in wsddn
    assert 'att_num: %d' % NUM_CLASSES in wsddn and 'batch_size: 2' in wsddn
    student = text_format.Parse((nets_dir / 'kd/student_train.prototxt').read_text(),
                                caffe_pb2.NetParameter())
    fc8 = [layer for layer in student.layer if layer.name == 'fc8_mscoco'][0]
    assert fc8.inner_product_param.num_output == NUM_CLASSES
    solver = (nets_dir / 'wsddn' / 'solver.prototxt').read_text()
    assert 'max_iter: 123' in solver and 'base_lr: 5e-05' in solver
    assert not (tmp_path / 'run' / 'seed1' / 'teacher').exists()


@pytest.mark.parametrize('key, value, named', [
    ('train', 'no/such/train.txt', 'datalists.train: datalist'),
    ('classes', 'no/such/classes.txt', 'datalists.classes: classes file'),
    ('test_boxes', 'no/such/boxes.json', 'datalists.test_boxes: ground-truth box file'),
    ('init_weights', 'no/such/vgg16.caffemodel', 'init_weights: weights file'),
])
def test_a_missing_file_names_the_config_and_the_key(user_data, tmp_path, capfd, key, value,
                                                     named):
    if key == 'init_weights':
        config = write_config(tmp_path / 'my.toml', user_data,
                              extra_top='init_weights = "%s"' % value)
    else:
        config = write_config(tmp_path / 'my.toml', user_data, datalists={key: value})
    assert run_pipeline.main(['--config', config]) == 1
    err = capfd.readouterr().err
    assert '%s: %s %s does not exist' % (config, named, os.path.join(ROOT, value)) in err


def test_a_label_count_that_does_not_match_the_classes_names_file_and_line(user_data, tmp_path,
                                                                          capfd):
    classes = tmp_path / 'five.classes'
    converters.write_classes(str(classes), converters.read_classes(user_data['classes'])
                             + ['extra'])
    train = tmp_path / 'train.txt'  # no .classes beside it: only datalists.classes says C
    shutil.copyfile(user_data['train'], train)
    config = write_config(tmp_path / 'my.toml', user_data,
                          datalists={'train': str(train), 'classes': str(classes)})
    assert run_pipeline.main(['--config', config]) == 1
    err = capfd.readouterr().err
    assert 'my.toml: datalists.train: %s has 12 problems' % train in err
    assert '%s:1: fields: ' % train in err and '(C = 5 labels' in err
    assert 'one label per class of %s: 5' % classes in err

    # With its own class file beside it, the list's class order is checked first.
    shutil.copyfile(user_data['classes'], str(train) + '.classes')
    assert run_pipeline.main(['--config', config]) == 1
    assert 'the labels would be read in the wrong order' in capfd.readouterr().err


def test_a_bad_line_fails_early_with_file_line_and_field(user_data, tmp_path, capfd):
    test = tmp_path / 'test.txt'
    lines = open(user_data['test']).read().splitlines()
    fields = lines[2].split()
    fields[2] = '2'  # labels[1]
    lines[2] = ' '.join(fields)
    test.write_text('\n'.join(lines) + '\n')
    config = write_config(tmp_path / 'my.toml', user_data, datalists={'test': str(test)})
    assert run_pipeline.main(['--config', config]) == 1
    err = capfd.readouterr().err
    assert 'my.toml: datalists.test: ' in err
    assert '%s:3: labels[1]: 2 is not 0, 1 or -1 (ignore)' % test in err
    assert not (tmp_path / 'run' / 'seed1').exists()


def test_example_config_and_help(capsys):
    with pytest.raises(SystemExit):
        run_pipeline.main(['--help'])
    text = capsys.readouterr().out
    assert '[datalists]' in text and 'init_weights' in text and 'preset' in text
    # Every step of a user's run, from the step list; every key, from the schema.
    for name, _ in pipeline.STEP_HELP:
        if name not in ('data', 'proposals', 'pretrain'):
            assert '\n  %s ' % name in text, name
    for key in run_config.SCHEMA['nets'] + run_config.SCHEMA['datalists']:
        assert '    %s ' % key.name in text, key.name
    assert 'gpus' in text and '--print-config' in text
    example = os.path.join(ROOT, 'tools', 'run_pipeline.example.toml')
    config = pipeline.load_config(example)
    cfg = pipeline.net_config(config, 80)
    assert cfg['fc_size'] == 4096 and cfg['image_size'] == 672 and cfg['num_proposals'] == 500


def test_an_unknown_step_or_key_is_named(user_data, tmp_path, capfd):
    config = write_config(tmp_path / 'my.toml', user_data)
    assert run_pipeline.main(['--config', config, '--steps', 'teacher,stage3']) == 1
    assert "no step 'stage3' (steps: datalists, nets, teacher" in capfd.readouterr().err
    config = write_config(tmp_path / 'my.toml', user_data, datalists={'bbox_nums': 4})
    assert run_pipeline.main(['--config', config]) == 1
    assert 'my.toml: datalists.bbox_nums: unknown key (known: train, test' in capfd.readouterr().err
    nets = TINY_NETS.replace('preset = "small"\n', 'preset = "small"\nfc_sizes = 3\n')
    config = write_config(tmp_path / 'my.toml', user_data, nets=nets)
    assert run_pipeline.main(['--config', config, '--steps', 'nets']) == 1
    assert 'my.toml: nets.fc_sizes: unknown key (known: preset, name' in capfd.readouterr().err


def test_the_example_configs_are_the_schemas():
    # As the prototxts are netgen's: tools/generate_configs.py writes them.
    from mlic import config_examples
    for kind, relative in config_examples.EXAMPLE_FILES.items():
        with open(os.path.join(ROOT, relative)) as f:
            assert f.read() == config_examples.example_toml(kind), (
                '%s differs from the schema: run tools/generate_configs.py' % relative)


def test_the_nets_settings_follow_the_preset_unless_the_config_sets_them(tmp_path):
    example = open(os.path.join(ROOT, 'tools', 'run_pipeline.example.toml')).read()
    small = tmp_path / 'small.toml'
    small.write_text(example.replace('preset = "full"', 'preset = "small"'))
    cfg = pipeline.net_config(pipeline.load_config(str(small)), NUM_CLASSES)
    for net in netgen.NETS:
        assert cfg['solver'][net]['base_lr'] == netgen.SMALL['solver'][net]['base_lr'], net
        assert cfg['batch_size'][net] == tuple(netgen.SMALL['batch_size'][net]), net
    assert cfg['fc_size'] == netgen.SMALL['fc_size']
    small.write_text(small.read_text().replace('[nets.solver.wsddn]\n',
                                               '[nets.solver.wsddn]\nbase_lr = 0.25\n'))
    config = pipeline.load_config(str(small))
    assert pipeline.net_config(config, NUM_CLASSES)['solver']['wsddn']['base_lr'] == 0.25
    from mlic import net_settings
    origins = {key: (value, origin) for key, value, origin in
               net_settings.effective_config(config)}
    assert origins['nets.solver.wsddn.base_lr'] == (0.25, str(small))
    assert origins['nets.solver.stage1.base_lr'] == (netgen.SMALL['solver']['stage1']['base_lr'],
                                                     'preset small')
    assert origins['nets.preset'] == ('small', str(small))
    assert origins['jobs'] == (1, str(small))


@pytest.mark.parametrize('line, table, error', [
    ('jobs = "two"', '', "jobs: 'two' is not a whole number >= 1"),
    ('seeds = 1', '', 'seeds: 1 is not a list of whole numbers'),
    ('gpus = [0.5]', '', 'gpus: [0.5] is not a list of whole numbers'),
    ('bbox_num = 1.5', 'datalists', 'datalists.bbox_num: 1.5 is not a whole number >= 1'),
    ('fc_size = "big"', 'nets', "nets.fc_size: 'big' is not a whole number >= 1"),
    ('batch_norm = 1', 'nets', 'nets.batch_norm: 1 is not true or false'),
    ('wsddn = [4]', 'nets.batch_size', 'nets.batch_size.wsddn: [4] is not a pair'),
    ('teacher = [4, 4]', 'nets.batch_size', 'nets.batch_size.teacher: not a net'),
    ('num_classes = 3', 'nets', 'nets.num_classes: set by the data'),
])
def test_a_value_of_the_wrong_type_names_the_file_and_the_key(tmp_path, line, table, error):
    tables = {'': '', 'datalists': 'train = "t.txt"\ntest = "v.txt"\n', 'nets': '',
              'nets.batch_size': ''}
    tables[table] += line + '\n'
    text = tables.pop('') + 'folder = "run"\n'
    text += ''.join('[%s]\n%s' % (name, body) for name, body in tables.items())
    path = tmp_path / 'my.toml'
    path.write_text(text)
    with pytest.raises(pipeline.ConfigError) as raised:
        pipeline.load_config(str(path))
    assert '%s: %s' % (path, error) in str(raised.value)


@pytest.mark.parametrize('table', run_config.PRESETS)
def test_a_preset_table_in_your_own_config_is_refused_not_ignored(tmp_path, table):
    path = tmp_path / 'my.toml'
    path.write_text('folder = "run"\n[datalists]\ntrain = "t.txt"\ntest = "v.txt"\n'
                    '[%s]\nseeds = [1, 2]\n' % table)
    with pytest.raises(pipeline.ConfigError) as raised:
        run_config.load_config(str(path), kind=run_config.USER)
    assert "%s: [%s]: only the demo's config has preset tables" % (path, table) in \
        str(raised.value)


def test_print_config_shows_every_setting_and_its_origin(user_data, tmp_path, capsys):
    config = write_config(tmp_path / 'my.toml', user_data)
    assert run_pipeline.main(['--config', config, '--print-config', '--gpus', '0']) == 0
    text = capsys.readouterr().out
    assert 'gpus = [0]  # %s' % config not in text  # the command line is not the file
    assert 'gpus = [0]  # command line' in text
    assert 'preset = "small"  # %s' % config in text
    assert 'fc_size = 16  # %s' % config in text
    assert 'dropout_ratio = 0.5  # preset small' in text
    assert 'base_lr = 0.005  # preset small' in text and 'max_iter = 4  # %s' % config in text
    assert not (tmp_path / 'run').exists()


def sizes_in_text(path, num_classes):
    """(most proposals on a line, largest box corner, its line number) of a datalist, from its
    text: image, num_classes labels, then x1 y1 x2 y2 score per proposal (padding: -1)."""
    most, corner, at = 0, -1.0, None
    with open(path) as f:
        for number, line in enumerate(f, 1):
            values = [float(v) for v in line.split()[1 + num_classes:]]
            boxes = [values[i:i + 5] for i in range(0, len(values), 5)]
            boxes = [box for box in boxes if box[0] >= 0]
            most = max(most, len(boxes))
            for box in boxes:
                if max(box[:4]) > corner:
                    corner, at = max(box[:4]), number
    return most, int(corner), at


def test_sizes_left_out_are_read_from_the_datalists(user_data, tmp_path, capfd):
    config = write_config(tmp_path / 'my.toml', user_data,
                          datalists={'bbox_num': None, 'image_size': None})
    found = [sizes_in_text(user_data[split], NUM_CLASSES) for split in ('train', 'test')]
    most = max(f[0] for f in found)
    widest = max(found, key=lambda f: f[1])
    assert run_pipeline.main(['--config', config, '--print-config']) == 0
    out, err = capfd.readouterr()
    assert 'bbox_num = %d  # datalist\n' % most in out
    assert 'image_size = %d  # datalist\n' % (widest[1] + 1) in out
    assert 'datalists.image_size = %d px, from the largest box corner' % (widest[1] + 1) in err
    assert '%d classes (%s)' % (NUM_CLASSES, user_data['classes']) in err
    assert run_pipeline.main(['--config', config, '--steps', 'nets']) == 0
    wsddn = (tmp_path / 'run' / 'seed1' / 'nets' / 'wsddn' / 'train.prototxt').read_text()
    assert 'bbox_num: %d' % most in wsddn and 'new_width: %d' % (widest[1] + 1) in wsddn
    effective = (tmp_path / 'run' / 'effective_config.toml').read_text()
    assert 'image_size = %d  # datalist\n' % (widest[1] + 1) in effective
    # A value the config sets wins, and keeps its origin.
    config = write_config(tmp_path / 'my.toml', user_data,
                          datalists={'bbox_num': most + 3, 'image_size': 2 * SIZE})
    assert run_pipeline.main(['--config', config, '--print-config']) == 0
    out = capfd.readouterr().out
    assert 'bbox_num = %d  # %s' % (most + 3, config) in out
    assert 'image_size = %d  # %s' % (2 * SIZE, config) in out


def test_an_image_size_too_small_for_the_boxes_is_refused_naming_the_line(user_data, tmp_path,
                                                                          capfd):
    # The box of the largest corner of both lists (the train list's when they tie).
    corner, line, path = max((sizes_in_text(user_data[split], NUM_CLASSES)[1:] + (split,)
                              for split in ('train', 'test')), key=lambda found: found[0])
    config = write_config(tmp_path / 'my.toml', user_data, datalists={'image_size': corner})
    assert run_pipeline.main(['--config', config]) == 1
    err = capfd.readouterr().err
    assert ('my.toml: datalists.image_size: %d px is too small for the proposals: %s:%d: a box '
            'reaches pixel %d' % (corner, user_data[path], line, corner)) in err
    assert not (tmp_path / 'run').exists()  # before any step


def test_max_pixels_reaches_the_image_check_the_data_layers_and_the_evaluation(
        user_data, tmp_path, capfd):
    config = write_config(tmp_path / 'my.toml', user_data, datalists={'max_pixels': 100})
    assert run_pipeline.main(['--config', config, '--steps', 'datalists']) == 1
    err = capfd.readouterr().err
    assert 'my.toml: datalists.train: ' in err
    assert '%d x %d pixels is more than the limit of 100 ' % (SIZE, SIZE) in err
    # The nets' data layers and the evaluation's image loading (inference.load_images) read it
    # from the nets' config.
    config = write_config(tmp_path / 'my.toml', user_data, datalists={'max_pixels': 10 ** 8})
    assert pipeline.net_config(pipeline.load_config(config), NUM_CLASSES)['max_pixels'] == 10 ** 8
    assert run_pipeline.main(['--config', config, '--steps', 'nets']) == 0
    wsddn = (tmp_path / 'run' / 'seed1' / 'nets' / 'wsddn' / 'train.prototxt').read_text()
    assert wsddn.count('max_pixels: 100000000') == 2
    assert run_pipeline.main(['--config', config, '--print-config']) == 0
    assert 'max_pixels = 100000000  # %s' % config in capfd.readouterr().out


def test_the_sizes_of_an_unchanged_list_are_read_once_per_run_folder(user_data, tmp_path,
                                                                     monkeypatch):
    from mlic import datalist, sources
    reads = []
    read = datalist.datalist_sizes
    monkeypatch.setattr(datalist, 'datalist_sizes',
                        lambda *args: reads.append(args) or read(*args))
    folder = tmp_path / 'run'
    folder.mkdir()
    train = tmp_path / 'train.txt'
    shutil.copyfile(user_data['train'], train)
    first = sources.datalist_sizes(str(train), NUM_CLASSES, str(folder))
    assert first['num_proposals'] == sizes_in_text(str(train), NUM_CLASSES)[0]
    assert sources.datalist_sizes(str(train), NUM_CLASSES, str(folder)) == first
    assert len(reads) == 1
    # A changed list (another size) is read again, not taken from the cache.
    lines = train.read_text().splitlines()
    train.write_text('\n'.join(lines[:1]) + '\n')
    again = sources.datalist_sizes(str(train), NUM_CLASSES, str(folder))
    assert len(reads) == 2
    assert again['num_proposals'] == sizes_in_text(str(train), NUM_CLASSES)[0]
    assert again == read(str(train), NUM_CLASSES)
