#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""The whole method on your own datalists, in one command: checks the datalists, writes the
nets (VGG16 by default), trains the WSDDN teacher, KD stage 1 and stage 2, the student without
KD and the two ablations (stage 1 only, stage 2 only), evaluates them on the test list and
writes the paper's table (results.md / results.json), training_curves.png and
top3_examples.png in the run folder.

  tools/run_pipeline.py --config my.toml                   every step
  tools/run_pipeline.py --config my.toml --seeds 1,2,3     mean and std over seeds
  tools/run_pipeline.py --config my.toml --steps teacher   the teacher only (and what it needs)

Every step is skipped when its outputs are complete, so a rerun resumes where the last one
stopped (an interrupted training resumes from its last snapshot); a changed datalist, setting
or init_weights file reruns the steps that depend on it.

The config is TOML; relative paths are relative to the repository root. Every key is listed
below; tools/run_pipeline.example.toml shows them with their defaults (copy it to start).
Without init_weights every net trains from scratch (a warning says so): the method, and the
preset "full", expect ImageNet VGG16 weights. --print-config shows every setting the run would
use and where it comes from; the run writes the same to its folder (effective_config.toml).
"""
import argparse
import os
import sys
import tomllib

if __name__ == '__main__':
    # pycaffe's own INFO lines (the set-up of every net built in this process) would bury the
    # progress; the training logs keep caffe's full output. Set before mlic loads caffe (glog
    # reads it once, when it is loaded), and only when run as a command, so that main() called
    # in-process leaves the caller's environment alone. GLOG_minloglevel=0 brings them back.
    os.environ.setdefault('GLOG_minloglevel', '2')

from mlic import config_examples, datalist, pipeline, run_config, surgery  # noqa: E402


def help_text():
    return '%s\nSteps (each skipped when complete; --steps names them):\n%s\n\nConfig keys ' \
        '[type; default]:\n%s\n' % (__doc__, pipeline.steps_help(run_config.USER),
                               config_examples.keys_help(run_config.USER))


def main(argv=None):
    parser = argparse.ArgumentParser(description=help_text(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, help='the run\'s TOML config (see above)')
    pipeline.add_run_arguments(parser)
    parser.add_argument('--steps', help='comma-separated steps to run, with the steps they need '
                                        '(default: all)')
    args = parser.parse_args(argv)
    try:
        config = run_config.load_config(args.config, overrides=pipeline.run_overrides(args),
                                        kind=run_config.USER)
        if args.print_config:
            root = pipeline.caffe_train.ROOT
            config = pipeline.sources.with_data_sizes(config, root, os.path.join(
                root, args.folder or config['folder']))  # its cache, if the run exists
            sys.stdout.write(config_examples.effective_toml(config))
            return 0
        steps = args.steps.split(',') if args.steps else None
        pipeline.Pipeline(config, args.folder).run(pipeline.seeds_argument(args), steps)
    except tomllib.TOMLDecodeError as error:
        sys.stderr.write('run_pipeline.py: error: %s: %s\n' % (args.config, error))
        return 1
    except (pipeline.ConfigError, datalist.DatalistError, surgery.SurgeryError,
            pipeline.caffe_train.TrainingError, OSError) as error:
        sys.stderr.write('run_pipeline.py: error: %s\n' % error)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
