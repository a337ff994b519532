"""Where nets run: the config's `gpus` (GPU ids; [] is the CPU), handed to every step that
runs a net. One GPU: `caffe train -gpu N`, pycaffe's set_device, the teacher-target tool's
--gpu. Several GPUs: Caffe's own `caffe train -gpu 0,1` refuses the Python data layer, so a
training on several GPUs goes through the multi-GPU trainer (mlic.trainer: one pycaffe process
per GPU joined by NCCL)."""
from mlic.run_config import ConfigError


def caffe_has_nccl():
    """Whether the pycaffe of this set-up can join processes by NCCL (a USE_NCCL build)."""
    import caffe
    return hasattr(getattr(caffe, 'NCCL', None), 'new_uid')


def check_gpus(gpus, where, has_nccl=caffe_has_nccl):
    """Refuses, before any step runs, what the machine cannot do with `gpus`."""
    if len(set(gpus)) != len(gpus) or any(gpu < 0 for gpu in gpus):
        raise ConfigError('%s: gpus: %r: each GPU id once, none negative' % (where, gpus))
    if len(gpus) > 1 and not has_nccl():
        raise ConfigError('%s: gpus: %r: training on several GPUs joins one process per GPU by '
                          'NCCL, and this Caffe was built without it; rebuild with MLIC_GPU=1 '
                          '(tools/setup/setup.sh) or name one GPU' % (where, gpus))


def train(solver_path, log_path, gpus, **kwargs):
    """A training on the CPU (gpus []), one GPU or several (mlic.trainer); kwargs as
    caffe_train.train's. Returns the final .caffemodel."""
    from mlic import caffe_train
    if len(gpus) > 1:
        from mlic import trainer
        return trainer.pipeline_train(solver_path, log_path, gpus, **kwargs)
    return caffe_train.train(solver_path, log_path, gpu=gpus[0] if gpus else None, **kwargs)


def use_for_inference(gpus):
    """pycaffe in this thread on the first of `gpus` (inference uses one), or the CPU."""
    from mlic import inference
    inference.use_device(gpus[0] if gpus else None)


def targets_arguments(gpus, jobs):
    """tools/compute_teacher_targets.py's device options: its first GPU, or `jobs` forked CPU
    workers (each with its share of the cores)."""
    return ['--gpu', str(gpus[0])] if gpus else ['--workers', str(jobs)]
