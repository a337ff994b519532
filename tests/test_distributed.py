"""Ranks from a cluster launcher's environment, the NCCL id handed through a file, and the stop
that every rank obeys; tools/train.py under a launcher on a Caffe without NCCL."""
import os
import subprocess
import sys
import threading
import time

import pytest

from mlic.paths import ROOT
from mlic import distributed, trainer

Rank = distributed.Rank


@pytest.mark.parametrize('env, expected', [
    ({'SLURM_PROCID': '5', 'SLURM_NTASKS': '8', 'SLURM_LOCALID': '1'},
     Rank(5, 8, 1, 'Slurm')),
    ({'OMPI_COMM_WORLD_RANK': '3', 'OMPI_COMM_WORLD_SIZE': '4',
      'OMPI_COMM_WORLD_LOCAL_RANK': '3'}, Rank(3, 4, 3, 'Open MPI')),
    ({'RANK': '2', 'WORLD_SIZE': '16', 'LOCAL_RANK': '2'}, Rank(2, 16, 2, 'torchrun')),
    # torchrun started by srun: torchrun's own numbering describes this process.
    ({'RANK': '7', 'WORLD_SIZE': '8', 'LOCAL_RANK': '3', 'SLURM_PROCID': '1',
      'SLURM_NTASKS': '2', 'SLURM_LOCALID': '0'}, Rank(7, 8, 3, 'torchrun')),
    ({'SLURM_PROCID': '0', 'SLURM_NTASKS': '1'}, Rank(0, 1, 0, 'Slurm')),
    ({'PATH': '/usr/bin'}, None),
])
def test_each_launchers_variables_give_the_rank(env, expected):
    assert distributed.rank_from_env(env) == expected


@pytest.mark.parametrize('env, message', [
    ({'SLURM_PROCID': '0'}, 'Slurm sets SLURM_PROCID but not SLURM_NTASKS'),
    ({'RANK': 'one', 'WORLD_SIZE': '2'}, "torchrun sets RANK='one'"),
    ({'OMPI_COMM_WORLD_RANK': '4', 'OMPI_COMM_WORLD_SIZE': '4'}, 'must lie in 0..3'),
    ({'RANK': '0', 'WORLD_SIZE': '2', 'LOCAL_RANK': '-1'}, 'cannot be negative'),
])
def test_inconsistent_launcher_variables_are_named(env, message):
    with pytest.raises(distributed.DistributedError, match=message):
        distributed.rank_from_env(env)


def test_local_rank_picks_the_gpu():
    assert distributed.device_for(1, (), {}) == 1
    assert distributed.device_for(1, (4, 6), {}) == 6
    # --gpus-per-node: every task sees all; --gpus-per-task=1: each sees its own as device 0.
    assert distributed.device_for(3, (), {'CUDA_VISIBLE_DEVICES': '0,1,2,3'}) == 3
    assert distributed.device_for(3, (), {'CUDA_VISIBLE_DEVICES': '3'}) == 0
    with pytest.raises(distributed.DistributedError, match='names only 2 device'):
        distributed.device_for(2, (4, 6), {})
    with pytest.raises(distributed.DistributedError, match='shows 2 GPU'):
        distributed.device_for(2, (), {'CUDA_VISIBLE_DEVICES': '0,1'})


def test_run_keys_tell_launches_apart():
    assert distributed.run_key({'SLURM_JOB_ID': '77', 'SLURM_STEP_ID': '0'}) == '77.0'
    assert distributed.run_key({'TORCHELASTIC_RUN_ID': 'abc'}) == 'abc'
    assert distributed.run_key({}) == ''


def test_the_id_file_hands_rank_0s_id_to_a_rank_that_waits(tmp_path):
    path = str(tmp_path / 'nccl.id')
    uid = bytes(range(128))  # NCCL's ids are 128 bytes, any of them
    got = []
    reader = threading.Thread(target=lambda: got.append(
        distributed.read_id_file(path, key='9.0', timeout_s=30, poll_s=0.05)))
    reader.start()
    time.sleep(0.3)  # the reader is waiting before rank 0 writes
    distributed.write_id_file(path, uid, key='9.0')
    reader.join(30)
    assert got == [uid]
    assert os.listdir(str(tmp_path)) == ['nccl.id']  # no temporary left behind


def test_an_earlier_runs_id_file_is_waited_out(tmp_path):
    path = str(tmp_path / 'nccl.id')
    distributed.write_id_file(path, b'old', key='8.0')
    got = []
    reader = threading.Thread(target=lambda: got.append(
        distributed.read_id_file(path, key='9.0', timeout_s=30, poll_s=0.05)))
    reader.start()
    time.sleep(0.3)
    assert got == []
    distributed.write_id_file(path, b'new', key='9.0')
    reader.join(30)
    assert got == [b'new']


def test_a_missing_id_file_times_out_with_what_to_check(tmp_path):
    path = str(tmp_path / 'nccl.id')
    with pytest.raises(distributed.DistributedError,
                       match=r'no NCCL id in .*nccl.id after 0 s \(it does not exist\).*'
                             r'storage every node sees'):
        distributed.read_id_file(path, timeout_s=0.2, poll_s=0.05)
    distributed.write_id_file(path, b'x', key='1.0')
    with pytest.raises(distributed.DistributedError, match='holds the id of another run'):
        distributed.read_id_file(path, key='2.0', timeout_s=0.2, poll_s=0.05)
    (tmp_path / 'other').write_text('not an id\n\n\n')
    with pytest.raises(distributed.DistributedError, match='not an NCCL id file'):
        distributed.read_id_file(str(tmp_path / 'other'), timeout_s=0.2)
    with pytest.raises(distributed.DistributedError, match='does not exist'):
        distributed.write_id_file(str(tmp_path / 'no' / 'such' / 'dir' / 'id'), b'x')


def test_a_posted_stop_reaches_the_other_ranks_through_the_file(tmp_path):
    path = str(tmp_path / 'nccl.id')
    root, other, stranger = (trainer.FileBoard(path, '5.0'), trainer.FileBoard(path, '5.0'),
                             trainer.FileBoard(path, '6.0'))
    assert other.stop_at() is None
    root.request(trainer.STOP)
    assert root.take_request() == trainer.STOP and root.take_request() == trainer.NONE
    # 0.5 s per iteration: the stop is posted 10 s (20 iterations) ahead.
    root.post_stop(100, 0.5, 2)
    assert root.stop_at() == other.stop_at() == 120
    assert stranger.stop_at() is None  # another run's stop is not ours
    root.clear()
    assert trainer.FileBoard(path, '5.0').stop_at() is None


def test_alone_a_stop_is_now_with_others_after_the_next_iteration():
    import multiprocessing
    board = trainer.LocalBoard(multiprocessing.get_context('spawn'))
    board.request(trainer.SNAPSHOT)
    board.request(trainer.STOP)
    assert board.take_request() == trainer.STOP
    board.post_stop(7, 1.0, 1)
    assert board.stop_at() == 7
    board.post_stop(7, 1.0, 4)
    assert board.stop_at() == 8


def run_under_slurm(args, tmp_path):
    env = dict(os.environ, SLURM_PROCID='1', SLURM_NTASKS='2', SLURM_LOCALID='1',
               SLURM_JOB_ID='42', SLURM_STEP_ID='0')
    return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'train.py')] + args,
                          cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300)


def test_under_a_launcher_the_trainer_needs_the_id_file_and_nccl(tmp_path, caffe):
    solver = os.path.join(ROOT, 'prototxt', 'small', 'wsddn', 'solver.prototxt')
    result = run_under_slurm(['--solver', solver], tmp_path)
    assert result.returncode == 1
    assert 'Slurm started 2 ranks: give --nccl-id-file' in result.stderr
    if hasattr(caffe.NCCL, 'new_uid'):
        return  # a GPU build goes on to wait for rank 0: the GPU check trains on 2 GPUs
    result = run_under_slurm(['--solver', solver, '--nccl-id-file',
                              str(tmp_path / 'id')], tmp_path)
    assert result.returncode == 1 and 'built without NCCL' in result.stderr
