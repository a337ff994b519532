#!/usr/bin/env python3
"""The embedded demo: synthetic data -> proposals -> WSDDN teacher -> KD stage 1 -> KD stage 2,
the student without KD and the two ablations, then the paper's table.

  tools/demo.py                 the default run (tools/demo.toml), about 14 minutes on 2 cores
  tools/demo.py --quick         every step at toy size, under a minute (a smoke test)
  tools/demo.py --seeds 1,2,3   mean and std over seeds

Outputs go to the config's folder (runs/demo); a rerun skips the steps already complete, so an
interrupted run resumes. The table is printed and written as results.md / results.json, with
training_curves.png and top3_examples.png beside it.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pycaffe's own INFO lines would bury the progress; the training logs keep caffe's full output.
os.environ.setdefault('GLOG_minloglevel', '2')

from mlic import pipeline  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=os.path.join(os.path.dirname(__file__), 'demo.toml'))
    parser.add_argument('--quick', action='store_true', help='apply the [quick] tables')
    pipeline.add_run_arguments(parser)
    args = parser.parse_args(argv)
    config = pipeline.load_config(args.config, quick=args.quick)
    seeds = pipeline.apply_run_arguments(config, args)
    folder = args.folder or os.path.join(pipeline.caffe_train.ROOT, config['folder'])
    pipeline.Pipeline(config, folder).run(seeds)


if __name__ == '__main__':
    main()
