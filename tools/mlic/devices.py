"""Where nets run: the config's `gpus` (GPU ids; [] is the CPU), handed to every step that
runs a net. One GPU: `caffe train -gpu N`, pycaffe's set_device, the teacher-target tool's
--gpu. Several GPUs: Caffe's own `caffe train -gpu 0,1` refuses the Python data layer, so a
training on several GPUs goes through multi_gpu_train, the hook of the multi-GPU trainer."""
from mlic.run_config import ConfigError

# The multi-GPU trainer: callable(solver_path, log_path, gpus, weights, label, progress, cwd,
# env) -> the final .caffemodel, as caffe_train.train. None until the trainer library is
# connected here; a config with several gpus is refused before any step runs.
multi_gpu_train = None


def check_gpus(gpus, where):
    """Refuses, before any step runs, what the machine cannot do with `gpus`."""
    if len(set(gpus)) != len(gpus) or any(gpu < 0 for gpu in gpus):
        raise ConfigError('%s: gpus: %r: each GPU id once, none negative' % (where, gpus))
    if len(gpus) > 1 and multi_gpu_train is None:
        raise ConfigError('%s: gpus: %r: training on several GPUs needs the multi-GPU trainer, '
                          'which this pipeline does not run yet; name one GPU' % (where, gpus))


def train(solver_path, log_path, gpus, **kwargs):
    """A training on the CPU (gpus []), one GPU or several (multi_gpu_train); kwargs as
    caffe_train.train's. Returns the final .caffemodel."""
    from mlic import caffe_train
    if len(gpus) > 1:
        return multi_gpu_train(solver_path, log_path, gpus, **kwargs)
    return caffe_train.train(solver_path, log_path, gpu=gpus[0] if gpus else None, **kwargs)


def use_for_inference(gpus):
    """pycaffe in this thread on the first of `gpus` (inference uses one), or the CPU."""
    from mlic import inference
    inference.use_device(gpus[0] if gpus else None)


def targets_arguments(gpus, jobs):
    """tools/compute_teacher_targets.py's device options: its first GPU, or `jobs` forked CPU
    workers (each with its share of the cores)."""
    return ['--gpu', str(gpus[0])] if gpus else ['--workers', str(jobs)]
