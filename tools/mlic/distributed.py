"""Who is who in a training over several GPUs: ranks, the launcher's environment, the NCCL id.

Caffe's multi-GPU training gives every GPU its own solver (its own process here), numbered by a
rank from 0 to world_size - 1; rank 0 is the root solver that tests, snapshots and prints. The
ranks meet through NCCL, which needs one id made by rank 0 and handed to every other rank.

Two ways to start the ranks:
  - one machine: tools/train.py --gpus 0,1,... starts one process per GPU itself and hands them
    the id directly;
  - a cluster: a launcher (Slurm's srun, Open MPI's mpirun, torchrun and the like) starts one
    tools/train.py per GPU on every node and tells each its rank in environment variables; the
    id then travels through a file on storage that every node sees (`--nccl-id-file`).
"""
import collections
import os
import time

import numpy as np


class DistributedError(RuntimeError):
    pass


# (rank, world size, rank on this node) as each launcher names them, in the order they are
# looked for: a torchrun-style launcher started under Slurm sets both, and its own variables
# describe the process we are.
LAUNCHERS = collections.OrderedDict([
    ('torchrun', ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')),
    ('Open MPI', ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_LOCAL_RANK')),
    ('Slurm', ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID')),
])

Rank = collections.namedtuple('Rank', 'rank world_size local_rank launcher')


def _integer(env, name, launcher):
    text = env[name]
    try:
        return int(text)
    except ValueError:
        raise DistributedError('%s sets %s=%r, which is not a whole number'
                               % (launcher, name, text))


def rank_from_env(env=None):
    """The Rank a cluster launcher gave this process, or None when no launcher set one.

    A launcher counts when its rank variable is set. A world of one (`srun -n 1`, or a Slurm
    batch script's own shell, where SLURM_PROCID is 0 and SLURM_NTASKS 1) is still returned:
    the caller decides that one rank is a plain single-process run."""
    env = os.environ if env is None else env
    for launcher, (rank_var, size_var, local_var) in LAUNCHERS.items():
        if rank_var not in env:
            continue
        if size_var not in env:
            raise DistributedError('%s sets %s but not %s: cannot tell how many ranks there are'
                                   % (launcher, rank_var, size_var))
        rank = _integer(env, rank_var, launcher)
        size = _integer(env, size_var, launcher)
        local = _integer(env, local_var, launcher) if local_var in env else rank
        if size < 1 or not 0 <= rank < size:
            raise DistributedError('%s sets %s=%d and %s=%d: the rank must lie in 0..%d'
                                   % (launcher, rank_var, rank, size_var, size, size - 1))
        if local < 0:
            raise DistributedError('%s sets %s=%d: a local rank cannot be negative'
                                   % (launcher, local_var, local))
        return Rank(rank, size, local, launcher)
    return None


def device_for(local_rank, gpus, env=None):
    """The GPU a rank uses on its node: the local_rank-th of --gpus when given; else the
    local_rank-th visible device, or the only one when the launcher gives each rank its own
    (Slurm's --gpus-per-task=1 sets CUDA_VISIBLE_DEVICES to one GPU per task)."""
    env = os.environ if env is None else env
    if not gpus:
        visible = [d for d in env.get('CUDA_VISIBLE_DEVICES', '').split(',') if d.strip()]
        if len(visible) == 1:
            return 0
        if visible and local_rank >= len(visible):
            raise DistributedError('local rank %d but CUDA_VISIBLE_DEVICES=%s shows %d GPU(s)'
                                   % (local_rank, env['CUDA_VISIBLE_DEVICES'], len(visible)))
        return local_rank
    if local_rank >= len(gpus):
        raise DistributedError('this node runs rank %d (local rank %d) but --gpus names only %d '
                               'device(s): %s' % (local_rank, local_rank, len(gpus),
                                                  ','.join(str(g) for g in gpus)))
    return gpus[local_rank]


def shard_order(order, rank, count):
    """The part of one epoch's image order that `rank` of `count` trains on: every count-th
    image from the rank-th on. The parts are disjoint and together hold every image of the
    epoch once; their sizes differ by at most one."""
    if count < 1 or not 0 <= rank < count:
        raise ValueError('rank %d of %d' % (rank, count))
    return np.asarray(order)[rank::count]


def rank_seed(seed, rank):
    """The seed of a rank's scale and mirror draws: different for every rank, so N ranks
    augment N batches differently, and fixed by (seed, rank), so a run can be repeated."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1)[0])


def run_key(env=None):
    """What tells this launch from an earlier one that wrote the same id file: the launcher's
    job (and step) id where it has one, else ''."""
    env = os.environ if env is None else env
    for names in (('SLURM_JOB_ID', 'SLURM_STEP_ID'), ('OMPI_MCA_ess_base_jobid',),
                  ('TORCHELASTIC_RUN_ID',)):
        if names[0] in env:
            return '.'.join(env.get(name, '') for name in names)
    return ''


ID_FILE_HEADER = 'mlic-kd-wsd NCCL id'


def write_id_file(path, uid, key=''):
    """Rank 0: writes the NCCL id (bytes) where the other ranks will read it, with the run's
    key. Written to a temporary name and renamed, so that a reader never sees half an id."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise DistributedError('--nccl-id-file %s: the folder %s does not exist (it must be on '
                               'storage every node sees)' % (path, directory))
    temporary = '%s.tmp.%d' % (path, os.getpid())
    with open(temporary, 'w') as f:
        f.write('%s\n%s\n%s\n' % (ID_FILE_HEADER, key, bytes(uid).hex()))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _parse_id_file(path, text):
    lines = text.split('\n')
    if len(lines) < 3 or lines[0] != ID_FILE_HEADER:
        raise DistributedError('%s is not an NCCL id file written by tools/train.py (line 1 is '
                               '%r); give --nccl-id-file a path of its own' % (path, lines[0]))
    try:
        return lines[1], bytes.fromhex(lines[2])
    except ValueError:
        raise DistributedError('%s line 3: not a hexadecimal NCCL id' % path)


def read_id_file(path, key='', timeout_s=300.0, poll_s=0.5):
    """Ranks other than 0: waits until rank 0 has written the id file of this run (its key
    equals ours) and returns the id. A file an earlier run left behind, with another key, is
    waited out: rank 0 of this run replaces it."""
    deadline = time.time() + timeout_s
    seen = None
    while True:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            text = None
        if text and text.endswith('\n'):
            seen, uid = _parse_id_file(path, text)
            if seen == key:
                return uid
        if time.time() > deadline:
            found = ('it holds the id of another run (%r, this is %r)' % (seen, key)
                     if seen is not None else 'it does not exist')
            raise DistributedError(
                'no NCCL id in %s after %.0f s (%s): rank 0 writes it when it starts; check that '
                'rank 0 is running, that every rank was given the same --nccl-id-file, and that '
                'the file lies on storage every node sees' % (path, timeout_s, found))
        time.sleep(poll_s)
