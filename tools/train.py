#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Trains a Caffe solver on the CPU, one GPU or several, the way `caffe train` does, with our
Python data layer (which `caffe train -gpu 0,1` refuses).

  tools/train.py --solver S [--weights a.caffemodel,b.caffemodel | --snapshot s.solverstate]
                 [--gpus 0,1,...|all] [--log FILE]

Without --gpus it trains on the CPU (or on the solver's device_id when the solver says
solver_mode: GPU), in one process. With --gpus it starts one process per GPU, joined by NCCL.
Under a cluster launcher (srun, mpirun, torchrun) every process it starts is one rank; give
--nccl-id-file, a path on storage every node sees. Ctrl-C snapshots and stops (SIGHUP snapshots
and goes on), as `caffe train` does by default.
"""
import argparse
import sys

from mlic import distributed, trainer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--solver', required=True, help='the solver prototxt')
    start = parser.add_mutually_exclusive_group()
    start.add_argument('--weights', default='',
                       help='.caffemodel files to start from, separated by commas')
    start.add_argument('--snapshot', help='a .solverstate to resume from')
    parser.add_argument('--gpus', default=None,
                        help='GPUs of this machine, separated by commas, or "all"; none: the '
                             'CPU. Under a launcher: the GPU of each local rank (default: '
                             'local rank r uses visible device r)')
    parser.add_argument('--nccl-id-file',
                        help='under a cluster launcher: where rank 0 leaves the NCCL id for '
                             'the others (shared storage)')
    parser.add_argument('--id-timeout', type=float, default=300.0,
                        help='seconds the other ranks wait for the NCCL id file (default 300)')
    parser.add_argument('--sigint-effect', default='stop', choices=trainer.EFFECTS,
                        help='what Ctrl-C does: snapshot and stop (default), snapshot and go on, '
                             'nothing')
    parser.add_argument('--sighup-effect', default='snapshot', choices=trainer.EFFECTS)
    parser.add_argument('--log', help="append Caffe's output to this file instead of stderr")
    parser.add_argument('--no-progress', action='store_true', help='no progress line')
    args = parser.parse_args(argv)
    weights = tuple(w for w in args.weights.split(',') if w)
    try:
        where = distributed.rank_from_env()
        if where is not None and where.world_size > 1:
            gpus = trainer.parse_gpus(args.gpus) if args.gpus else ()
            outcome = trainer.run_rank_from_env(
                args.solver, where, args.nccl_id_file, gpus, weights, args.snapshot, args.log,
                not args.no_progress, args.sigint_effect, args.sighup_effect,
                id_timeout_s=args.id_timeout)
        else:
            if args.gpus is None:
                gpus = trainer.default_gpus(trainer.read_solver(args.solver))
            else:
                gpus = trainer.parse_gpus(args.gpus)
            outcome = trainer.train(args.solver, gpus, weights, args.snapshot, args.log,
                                    not args.no_progress, args.sigint_effect,
                                    args.sighup_effect)
    except (trainer.TrainerError, distributed.DistributedError) as e:
        sys.stderr.write('tools/train.py: %s\n' % e)
        return 1
    if outcome is not None:
        print(outcome.caffemodel or '')
    return 0


if __name__ == '__main__':
    sys.exit(main())
