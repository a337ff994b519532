#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""The embedded demo: synthetic data -> proposals -> WSDDN teacher -> KD stage 1 -> KD stage 2,
the student without KD and the two ablations, then the paper's table.

  tools/demo.py                 the default run (tools/demo.toml), about 7 minutes on a 2-core Xeon
  tools/demo.py --quick         every step at toy size, a few minutes (a smoke test)
  tools/demo.py --seeds 1,2,3   mean and std over seeds
  tools/demo.py --benchmark     the science benchmark: every student trained until its validation
                                mAP stops rising, 3 seeds, FitNets and attention transfer beside
                                (hours on 2 cores; docs/converged.md)

Outputs go to the config's folder (runs/demo); a rerun skips the steps already complete, so an
interrupted run resumes. The table is printed and written as results.md / results.json, with
training_curves.png and top3_examples.png beside it, and effective_config.toml (every setting
and where it comes from).
"""
import argparse
import os
import sys

# pycaffe's own INFO lines would bury the progress; the training logs keep caffe's full output.
os.environ.setdefault('GLOG_minloglevel', '2')

from mlic import config_examples, pipeline, run_config  # noqa: E402


def help_text():
    return '%s\nSteps (each skipped when complete):\n%s\n\nConfig keys [type; default]:\n%s\n' % (
        __doc__, pipeline.steps_help(run_config.DEMO),
        config_examples.keys_help(run_config.DEMO))


def main(argv=None):
    parser = argparse.ArgumentParser(description=help_text(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=os.path.join(os.path.dirname(__file__), 'demo.toml'))
    parser.add_argument('--quick', action='store_true', help='apply the [quick] tables')
    parser.add_argument('--benchmark', action='store_true',
                        help='apply the [benchmark] tables: the converged comparison over 3 seeds '
                             'with both classic baselines (hours on 2 cores; docs/converged.md)')
    pipeline.add_run_arguments(parser)
    args = parser.parse_args(argv)
    try:
        presets = [name for name in run_config.PRESETS if getattr(args, name)]
        config = run_config.load_config(args.config, presets,
                                        overrides=pipeline.run_overrides(args))
        if args.print_config:
            sys.stdout.write(config_examples.effective_toml(config))
            return 0
        pipeline.Pipeline(config, args.folder).run(pipeline.seeds_argument(args))
    except run_config.ConfigError as error:
        sys.stderr.write('demo.py: error: %s\n' % error)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
