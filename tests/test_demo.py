"""The embedded demo in quick mode: every step through the real caffe tool, the table produced
with finite numbers, and a rerun that redoes nothing (the resume path)."""
import json
import math
import os
import re
import subprocess
import sys

import cv2
import pytest

from mlic.paths import ROOT

# The quick demo trains every net of the method through the caffe tool.
pytestmark = pytest.mark.e2e

DEMO = os.path.join(ROOT, 'tools', 'demo.py')
# The quick demo adds the classic baselines and trains under the equal budget.
ROWS = ['Teacher (WSDDN)', 'Student w/o KD', 'Stage 1 only', 'Stage 2 only', 'FitNets',
        'Attention transfer', 'Student w/ KD']


def run_demo(folder):
    return subprocess.run([sys.executable, DEMO, '--quick', '--folder', str(folder)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)


def test_quick_demo_produces_the_table_and_resumes(tmp_path):
    folder = tmp_path / 'quick'
    first = run_demo(folder)
    assert first.returncode == 0, first.stdout[-3000:]
    table = json.loads((folder / 'results.json').read_text())
    assert [row['name'] for row in table['rows']] == ROWS
    for row in table['rows']:
        for column, cell in row['values'].items():
            assert math.isfinite(cell['mean']), (row['name'], column, cell)
            assert 0 <= cell['mean'] <= 100
    markdown = (folder / 'results.md').read_text()
    assert all(name in markdown for name in ROWS) and 'CorLoc' in markdown
    assert '| seed1/teacher | ' in markdown  # the step times of this run
    effective = (folder / 'effective_config.toml').read_text()
    assert 'num_train = 96  # ' in effective and 'preset = "small"  # default' in effective
    for png in ('training_curves.png', 'top3_examples.png'):
        image = cv2.imread(str(folder / png))
        assert image is not None and image.std() > 0, png
    for step in ('teacher', 'stage1', 'stage2', 'student', 'stage1_only', 'stage2_only',
                 'fitnets_hint', 'fitnets', 'attention'):
        assert (folder / 'seed1' / step / 'final.caffemodel').exists(), step
    # Equal budget: 20 x 4 + 20 x 4 images for every row, the student at batch 8.
    assert '- Student w/o KD: 20 x 8 = 160 images' in markdown
    assert '- Stage 2 only: 40 x 4 = 160 images' in markdown
    assert '- FitNets: 20 x 4 + 10 x 8 = 160 images' in markdown
    assert '_iter_40.caffemodel' in (folder / 'seed1' / 'stage2_only' / 'train.log').read_text()
    # FitNets' label stage starts from the hint stage's convolutions and the initial fc6; the
    # baselines start from the same teacher as the KD nets.
    from mlic import surgery
    seed = folder / 'seed1'
    hint = surgery.weights(str(seed / 'fitnets_hint' / 'final.caffemodel'))
    label_init = surgery.weights(str(seed / 'fitnets' / 'init.caffemodel'))
    backbone = surgery.weights(str(folder / 'pretrain' / 'backbone.caffemodel'))
    assert (label_init['conv1_1'][0] == hint['conv1_1'][0]).all()
    assert not (hint['conv1_1'][0] == backbone['conv1_1'][0]).all()  # the hint stage learned
    assert (label_init['fc6'][0] == backbone['fc6'][0]).all()
    # They read the trained teacher's maps, computed once (no teacher inside their nets).
    attention = surgery.weights(str(seed / 'attention' / 'final.caffemodel'))
    assert not [name for name in attention if surgery.is_teacher_layer(name)]
    assert_maps_of_the_teacher(seed)
    # The demo's KD stages read the teacher's outputs computed once; two trainings ran at once.
    for key, net in (('soft_targets', 'stage2'), ('roi_targets', 'stage1')):
        assert (folder / 'seed1' / 'teacher_targets' / (key + '.npy')).exists()
        assert "%s: '%s" % (key, folder) in (folder / 'seed1' / 'nets' / 'kd' /
                                             (net + '_train.prototxt')).read_text()
    # ... and so do the baselines: the teacher's attention maps and last conv features.
    for key, net in (('attention_targets', 'attention'), ('hint_targets', 'fitnets_hint')):
        assert (folder / 'seed1' / 'baseline_targets' / (key + '.npy')).exists()
        text = (folder / 'seed1' / 'nets' / 'baselines' / (net + '_train.prototxt')).read_text()
        assert "map_targets: '%s" % folder in text and '_wsd_' not in text, net
    finished = {m.group(1): m.start() for m in re.finditer(r'(\w+) +finished in', first.stdout)}
    assert finished['student'] < finished['teacher']
    # The ImageNet stand-in starts the teacher and the students: Caffe says it loaded it.
    assert (folder / 'pretrain' / 'backbone.caffemodel').exists()
    for step in ('teacher', 'student'):
        log = (folder / 'seed1' / step / 'train.log').read_text()
        assert 'backbone.caffemodel' in log and 'Finetuning from' in log, step

    again = run_demo(folder)
    assert again.returncode == 0, again.stdout[-3000:]
    assert 'training' not in again.stdout and 'generating' not in again.stdout
    # data, proposals, pretrain .. evaluate, with the three trainings of the baselines and
    # their teacher's maps
    assert again.stdout.count('done already') == 17


def assert_maps_of_the_teacher(seed):
    """The stored attention map and last conv features of the first train image, as read, are
    the trained teacher's (the same deploy net and weights: the same numbers)."""
    import numpy as np
    from mlic import deploy, inference, netgen, surgery
    nets = seed / 'nets'
    net_path = str(nets / netgen.FILES['baseline_teacher_deploy'])
    weights = str(seed / 'baseline_teacher.caffemodel')
    surgery.baseline_init(str(seed / 'teacher' / 'final.caffemodel'), net_path, weights)
    cfg = deploy.describe(net_path)
    param = deploy.data_param_beside(net_path)
    train_list = re.search(r"source: '([^']+)'", param).group(1)
    root = re.search(r"root_folder: '([^']*)'", param)
    first = os.path.join(root.group(1) if root else '', open(train_list).readline().split()[0])
    net = inference.open_net(net_path, weights)
    convs = [name for name in net.params if name.startswith('conv_wsd_')
             and net.layer_dict[name].type == 'Convolution']
    attention, features = inference.baseline_maps(net, inference.load_images([first], cfg),
                                                  convs[-1])
    stored = np.load(str(seed / 'baseline_targets' / 'attention_targets.npy'), mmap_mode='r')
    hint = np.load(str(seed / 'baseline_targets' / 'hint_targets.npy'), mmap_mode='r')
    # The tool's workers may sum in another order than this process's BLAS threads: each
    # convolution's sum of n products is within n float32 roundings of their absolute sum,
    # added up over the layers, twice for the two passes and twice for the absolute sums.
    products = sum(int(np.prod(net.params[name][0].data.shape[1:])) for name in convs)
    tolerance = 4 * products * np.finfo(np.float32).eps / 2 * np.abs(features).max()
    np.testing.assert_allclose(hint[0, 0], features[0], rtol=0, atol=tolerance)
    # The map of features within that: a = E / ||E|| moves by about 2 |F| tolerance / ||E||
    # per entry, at most doubled by the normalisation.
    energy = np.linalg.norm((features.astype(np.float64) ** 2).mean(axis=1))
    np.testing.assert_allclose(stored[0, 0], attention[0], rtol=0,
                               atol=4 * np.abs(features).max() * tolerance / energy + 1e-6)


def test_help_lists_every_step_and_key_of_the_demo():
    from mlic import pipeline, run_config
    done = subprocess.run([sys.executable, DEMO, '--help'], stdout=subprocess.PIPE, text=True,
                          timeout=120)
    assert done.returncode == 0
    for name, _ in pipeline.STEP_HELP:
        if name != 'datalists':
            assert '\n  %s ' % name in done.stdout, name
    for section in ('data', 'proposals', 'pretrain', 'nets'):
        assert '  [%s]' % section in done.stdout
        for key in run_config.SCHEMA[section]:
            assert '    %s ' % key.name in done.stdout, (section, key.name)


def test_print_config_shows_the_quick_demo_and_where_each_value_comes_from(tmp_path):
    done = subprocess.run([sys.executable, DEMO, '--quick', '--print-config', '--jobs', '1',
                           '--folder', str(tmp_path / 'run')], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    toml = os.path.join(ROOT, 'tools', 'demo.toml')
    assert 'folder = "runs/demo-quick"  # %s' % toml in done.stdout
    assert 'jobs = 1  # command line' in done.stdout
    assert 'gpus = []  # default' in done.stdout
    assert 'preset = "small"  # default' in done.stdout
    assert 'fc_size = 32  # %s' % toml in done.stdout  # the [quick] table's
    assert 'score_scale = 1.0  # preset small' in done.stdout
    assert not (tmp_path / 'run').exists()


def test_benchmark_is_the_converged_comparison_and_combines_with_quick():
    def settings(*options):
        done = subprocess.run([sys.executable, DEMO, *options, '--print-config'],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout
        return done.stdout

    toml = os.path.join(ROOT, 'tools', 'demo.toml')
    benchmark = settings('--benchmark')
    for line in ('folder = "runs/demo-converged"', 'seeds = [1, 2, 3]', 'validation = 0.1',
                 'schedule = "converged"', 'baselines = ["fitnets", "attention"]',
                 'num_train = 1600'):
        assert '\n%s  # %s\n' % (line, toml) in benchmark, line
    plain = settings()
    assert 'schedule = "fixed"  # default' in plain and 'validation = 0.1' not in plain

    def max_iters(text):
        """{net: max_iter} of the printed [nets.solver.NET] tables and the pretraining's."""
        found = {net: int(n) for net, n in re.findall(
            r'\[nets\.solver\.(\w+)\]\n[^[]*?\nmax_iter = (\d+)', text)}
        found['pretrain'] = int(re.search(r'\nsolver = \{[^}]*max_iter = (\d+)', text).group(1))
        return {net: found[net] for net in ('pretrain', 'wsddn', 'stage1', 'stage2', 'student')}

    # The benchmark keeps the longer fixed trainings its documented table was measured with.
    assert max_iters(benchmark) == dict(pretrain=400, wsddn=400, stage1=900, stage2=1800,
                                        student=1800)
    assert all(plain_iters < benchmark_iters for plain_iters, benchmark_iters
               in zip(max_iters(plain).values(), max_iters(benchmark).values()))
    # Both: the benchmark's converged schedule at the quick tables' toy size and folder.
    both = settings('--benchmark', '--quick')
    assert 'schedule = "converged"  # %s' % toml in both
    assert 'num_train = 96  # %s' % toml in both
    assert 'folder = "runs/demo-quick"  # %s' % toml in both


def test_a_wrong_type_in_the_demo_config_is_named_before_anything_runs(tmp_path):
    config = tmp_path / 'demo.toml'
    config.write_text(open(os.path.join(ROOT, 'tools', 'demo.toml')).read().replace(
        'num_train = 1600', 'num_train = "many"'))
    done = subprocess.run([sys.executable, DEMO, '--config', str(config), '--folder',
                           str(tmp_path / 'run')], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    assert done.returncode == 1
    assert "%s: data.num_train: 'many' is not a whole number >= 1" % config in done.stdout
    assert not (tmp_path / 'run').exists()
