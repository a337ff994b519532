"""tools/train.py and mlic.trainer on the CPU with a small net: the same losses as the real
`caffe train` for the same solver and seed, snapshots, resuming, -weights, Ctrl-C."""
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import run_caffe_tool, toy_config
from mlic.paths import ROOT
from mlic import datalist, netgen, trainer

# Each test trains small nets through pycaffe and, to compare, through caffe train.
pytestmark = pytest.mark.e2e

ITERATIONS = 6
TRAIN_TOOL = os.path.join(ROOT, 'tools', 'train.py')
PYTHON = sys.executable
# glog's iteration line of Solver::Step (display: 1, average_loss: 1: the iteration's loss).
ITERATION_LOSS = re.compile(r'Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)')


def write_dataset(folder, cfg, count, seed):
    """`count` images, each a grey field with one square of its class's colour, the square's box
    among the proposals."""
    rng = np.random.RandomState(seed)
    size, classes, bbox_num = cfg['image_size'], cfg['num_classes'], cfg['num_proposals']
    os.makedirs(folder, exist_ok=True)
    lines = []
    for index in range(count):
        image = np.full((size, size, 3), 110, np.uint8)
        k = index % classes
        side = rng.randint(size // 4, size // 2)
        x, y = rng.randint(0, size - side, 2)
        image[y:y + side, x:x + side] = (40 * k % 256, 255 - 30 * k, 90)
        boxes = [(x, y, x + side - 1, y + side - 1, 1.0)] + \
            [(i, i, i + size // 3, i + size // 3, 0.5) for i in range(bbox_num - 2)]
        path = os.path.join(folder, '%03d.png' % index)
        cv2.imwrite(path, image)
        padded, _ = datalist.pad_proposals(boxes, bbox_num)
        lines.append(datalist.format_line(path, np.eye(classes)[k], padded))
    with open(os.path.join(folder, 'list.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return os.path.join(folder, 'list.txt')


def write_toy_lists(root, cfg):
    """{'train', 'test'}: 8 training and 4 test images of write_dataset under `root`."""
    return {'train': write_dataset(str(root / 'train'), cfg, 8, 0),
            'test': write_dataset(str(root / 'test'), cfg, 4, 1)}


@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    """The small teacher's solver, ITERATIONS long, printing every iteration's own loss."""
    root = tmp_path_factory.mktemp('trainer')
    cfg = toy_config()
    for settings in cfg['solver'].values():
        settings.update(max_iter=ITERATIONS, snapshot=3, test_interval=ITERATIONS, test_iter=1,
                        display=1, average_loss=1)
    lists = write_toy_lists(root, cfg)
    return root, cfg, lists


def solver_copy(nets, folder):
    """The small teacher's solver and net written under `folder`, snapshots inside it."""
    root, cfg, lists = nets
    folder = root / folder
    paths = netgen.write_nets(str(folder), cfg, datalists=lists,
                              snapshot_dir=str(folder / 'snapshots'))
    return paths['wsddn_solver'], str(folder / 'snapshots' / 'small_wsddn')


def caffe_tool_losses(solver, cwd, *args):
    result = run_caffe_tool(['train', '-solver', solver] + list(args), cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:]
    return {int(m.group(1)): float(m.group(2)) for m in ITERATION_LOSS.finditer(result.stdout)}


def log_losses(path):
    if not os.path.exists(path):  # not yet written
        return {}
    with open(path) as f:
        return {int(m.group(1)): float(m.group(2)) for m in ITERATION_LOSS.finditer(f.read())}


def assert_same_losses(ours, theirs):
    assert sorted(ours) == sorted(theirs) and len(ours) >= ITERATIONS
    for iteration in theirs:  # glog prints 6 significant digits
        assert ours[iteration] == pytest.approx(theirs[iteration], rel=2e-5, abs=1e-6), iteration


def test_losses_equal_caffe_trains_for_the_same_solver_and_seed(nets, tmp_path):
    solver, prefix = solver_copy(nets, 'tool')
    theirs = caffe_tool_losses(solver, str(tmp_path))
    solver, prefix = solver_copy(nets, 'ours')
    log = tmp_path / 'train.log'
    outcome = trainer.train(solver, log=str(log), progress=False, cwd=str(tmp_path))
    assert_same_losses(log_losses(str(log)), theirs)
    assert outcome == trainer.Outcome(ITERATIONS, prefix + '_iter_6.caffemodel',
                                      prefix + '_iter_6.solverstate', False)
    assert os.path.exists(prefix + '_iter_3.solverstate') and os.path.exists(outcome.caffemodel)
    # Solve's final test ran (test_interval divides max_iter).
    assert re.search(r'Test net #0 output loss\[0\] = \d', log.read_text())


def test_resuming_a_snapshot_continues_as_caffe_train_snapshot_does(nets, tmp_path):
    """As `caffe train -snapshot` with the data layer started at the snapshot's batch
    (start_batch), which the trainer sets itself: the stream goes on, it is not replayed."""
    from mlic import caffe_train
    solver, prefix = solver_copy(nets, 'resume_from')
    trainer.train(solver, progress=False, log=str(tmp_path / 'first.log'), cwd=str(tmp_path))
    state = prefix + '_iter_3.solverstate'
    solver_tool, _ = solver_copy(nets, 'resume_tool')
    solver_tool = caffe_train.resumed_solver(solver_tool, 3, str(tmp_path))
    assert 'start_batch: 3' in open(solver_tool.replace('.resumed.prototxt',
                                                         '.resumed_net.prototxt')).read()
    theirs = caffe_tool_losses(solver_tool, str(tmp_path), '-snapshot', state)
    solver_ours, prefix_ours = solver_copy(nets, 'resume_ours')
    log = tmp_path / 'resumed.log'
    outcome = trainer.train(solver_ours, snapshot=state, log=str(log), progress=False,
                            cwd=str(tmp_path))
    resumed = log_losses(str(log))
    assert min(resumed) == 3 and outcome.iteration == ITERATIONS  # went on from iteration 3
    assert resumed == pytest.approx(theirs, rel=2e-5, abs=1e-6)
    assert outcome.caffemodel == prefix_ours + '_iter_6.caffemodel'


def test_weights_start_the_training_as_caffe_trains_weights_does(nets, tmp_path):
    solver, prefix = solver_copy(nets, 'weights_from')
    trainer.train(solver, progress=False, log=str(tmp_path / 'a.log'), cwd=str(tmp_path))
    start = prefix + '_iter_6.caffemodel'
    solver_tool, _ = solver_copy(nets, 'weights_tool')
    theirs = caffe_tool_losses(solver_tool, str(tmp_path), '-weights', start)
    solver_ours, _ = solver_copy(nets, 'weights_ours')
    log = tmp_path / 'b.log'
    trainer.train(solver_ours, weights=[start], log=str(log), progress=False,
                  cwd=str(tmp_path))
    assert_same_losses(log_losses(str(log)), theirs)


def test_the_command_line_trains_on_the_cpu_and_prints_the_weights(nets, tmp_path):
    solver, prefix = solver_copy(nets, 'cli')
    result = subprocess.run([PYTHON, TRAIN_TOOL, '--solver', solver, '--log',
                             str(tmp_path / 'cli.log')], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == prefix + '_iter_6.caffemodel'
    # The progress line: iteration, loss, speed, time left.
    assert re.search(r'6/6  loss \d+\.\d{4}  \d+\.\d\d it/s  ETA 0:00', result.stderr)


def test_command_line_mistakes_are_named_before_training(nets, tmp_path):
    solver, prefix = solver_copy(nets, 'mistakes')
    for args, message in (
            (['--solver', str(tmp_path / 'nope.prototxt')],
             'the solver %s' % (tmp_path / 'nope.prototxt')),
            (['--solver', solver, '--weights', 'missing.caffemodel'],
             'missing.caffemodel does not exist'),
            (['--solver', solver, '--gpus', '0,x'], 'give device numbers'),
            (['--solver', solver, '--gpus', '1,1'], 'distinct')):
        result = subprocess.run([PYTHON, TRAIN_TOOL] + args, cwd=str(tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                timeout=120)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)


def test_several_gpus_need_a_caffe_with_nccl(nets, tmp_path, caffe):
    if hasattr(caffe.NCCL, 'new_uid'):
        pytest.skip('this Caffe has NCCL; the GPU check trains on several GPUs')
    solver, _ = solver_copy(nets, 'nccl')
    with pytest.raises(trainer.TrainerError, match='built without NCCL'):
        trainer.train(solver, gpus=(0, 1), progress=False, log=str(tmp_path / 'n.log'),
                      cwd=str(tmp_path))


def test_ctrl_c_snapshots_and_stops_like_caffe_train(nets, tmp_path):
    root, cfg, lists = nets
    cfg = dict(cfg, solver={k: dict(v, max_iter=100000, snapshot=0)
                            for k, v in cfg['solver'].items()})
    folder = tmp_path / 'sigint'
    paths = netgen.write_nets(str(folder), cfg, datalists=lists,
                              snapshot_dir=str(folder / 'snapshots'))
    log = tmp_path / 'sigint.log'
    proc = subprocess.Popen([PYTHON, TRAIN_TOOL, '--solver', paths['wsddn_solver'], '--log',
                             str(log)], cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not log_losses(str(log)).get(3) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    snapshot = out.strip()
    match = re.search(r'_iter_(\d+)\.caffemodel$', snapshot)
    assert match and os.path.exists(snapshot), (out, err)
    iteration = int(match.group(1))
    assert 3 <= iteration < 100000 and 'SIGINT: snapshot and stop' in err
    assert os.path.exists(snapshot.replace('.caffemodel', '.solverstate'))
    # It stopped at the snapshot: the log's last "Iteration N" line is the step that led to it.
    assert max(log_losses(str(log))) == iteration - 1


def test_sighup_snapshots_and_goes_on(nets, tmp_path):
    root, cfg, lists = nets
    cfg = dict(cfg, solver={k: dict(v, max_iter=40, snapshot=0, snapshot_after_train=False)
                            for k, v in cfg['solver'].items()})
    folder = tmp_path / 'sighup'
    paths = netgen.write_nets(str(folder), cfg, datalists=lists,
                              snapshot_dir=str(folder / 'snapshots'))
    log = tmp_path / 'sighup.log'
    proc = subprocess.Popen([PYTHON, TRAIN_TOOL, '--solver', paths['wsddn_solver'], '--log',
                             str(log)], cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not log_losses(str(log)).get(2) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    snapshots = sorted(os.listdir(str(folder / 'snapshots')))
    assert len(snapshots) == 2 and snapshots[0].endswith('.caffemodel'), snapshots
    assert max(log_losses(str(log))) == 40  # it went on to max_iter (Solve's last line)


def test_train_to_end_resumes_the_newest_snapshot_and_skips_a_finished_run(nets, tmp_path):
    solver, prefix = solver_copy(nets, 'to_end')
    final = trainer.train_to_end(solver, str(tmp_path / 'a.log'), cwd=str(tmp_path),
                                 progress=False)
    assert final == prefix + '_iter_6.caffemodel'
    for suffix in ('caffemodel', 'solverstate'):  # as if killed after iteration 3's snapshot
        os.remove('%s_iter_6.%s' % (prefix, suffix))
    log = tmp_path / 'b.log'
    assert trainer.train_to_end(solver, str(log), cwd=str(tmp_path), progress=False) == final
    assert min(log_losses(str(log))) == 3  # resumed, did not start over
    before = os.path.getmtime(final)
    assert trainer.train_to_end(solver, str(log), cwd=str(tmp_path), progress=False) == final
    assert os.path.getmtime(final) == before


def test_the_ranks_get_the_environment_they_are_given(nets, tmp_path):
    """The pipeline hands its trainings an environment (threads, OpenBLAS): a bad glog setting
    in it shows that the ranks ran with it."""
    solver, prefix = solver_copy(nets, 'env')
    log = tmp_path / 'env.log'
    env = dict(os.environ, GLOG_minloglevel='2')  # no glog INFO: no "Iteration N" lines of
    # Caffe's; only the trainer's own last one (Solve's final display) is left
    final = trainer.pipeline_train(solver, str(log), (), progress=False, cwd=str(tmp_path),
                                   env=env)
    assert final == prefix + '_iter_6.caffemodel'
    assert sorted(log_losses(str(log))) == [6] and 'Test net #0' in log.read_text()
