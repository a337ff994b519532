#!/usr/bin/env python3
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
or init_weights file reruns the steps that depend on it. Steps: datalists, nets, teacher,
stage1, stage2, student, stage1_only, stage2_only, evaluate, report.

The config (TOML; relative paths are relative to the repository root; every key of the
example tools/run_pipeline.example.toml is explained there):

  folder = "runs/coco"                  # everything the run writes
  seeds = [1]                           # one training per seed; the table reports mean/std
  init_weights = "models/VGG_ILSVRC_16_layers.caffemodel"   # optional, ImageNet VGG16

  [datalists]                           # complete lists: tools/make_datalist.py and
  train = "datalists/coco/train.txt"    #   tools/compute_proposals.py write them
  test = "datalists/coco/test.txt"
  classes = "datalists/coco/train.txt.classes"  # default: the train list's .classes
  root_folder = ""                      # prefix of relative image paths (default: the
                                        #   repository root)
  test_boxes = "datalists/coco/test_boxes.json" # optional: teacher detection mAP, CorLoc
  bbox_num = 500                        # proposals per image the nets take
  image_size = 672                      # the teacher's input; proposals are in its pixels

  [nets]
  preset = "full"                       # "full": VGG16 as the original; "small": the demo's
  [nets.batch_size]                     # any key of tools/mlic/netgen.py's config overrides
  wsddn = [32, 16]                      #   the preset's
  [nets.solver.wsddn]                   # any Caffe SolverParameter field
  max_iter = 40000

Without init_weights every net trains from scratch (a warning says so): the method, and the
preset "full", expect ImageNet VGG16 weights.
"""
import argparse
import os
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mlic import datalist, pipeline, surgery  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', required=True, help='the run\'s TOML config (see above)')
    pipeline.add_run_arguments(parser)
    parser.add_argument('--steps', help='comma-separated steps to run, with the steps they need '
                                        '(default: all)')
    args = parser.parse_args(argv)
    try:
        config = pipeline.load_config(args.config)
        seeds = pipeline.apply_run_arguments(config, args)
        if 'datalists' not in config:
            raise pipeline.ConfigError('%s: datalists: missing (the [datalists] table names your '
                                       'train and test lists; tools/demo.py runs the synthetic '
                                       'demo)' % args.config)
        steps = args.steps.split(',') if args.steps else None
        pipeline.Pipeline(config, args.folder).run(seeds, steps)
    except tomllib.TOMLDecodeError as error:
        sys.stderr.write('run_pipeline.py: error: %s: %s\n' % (args.config, error))
        return 1
    except (pipeline.ConfigError, datalist.DatalistError, surgery.SurgeryError,
            pipeline.caffe_train.TrainingError, OSError) as error:
        sys.stderr.write('run_pipeline.py: error: %s\n' % error)
        return 1
    return 0


if __name__ == '__main__':
    # pycaffe's own INFO lines would bury the progress; the training logs keep caffe's full
    # output. Set here, not on import, so that main() called in-process leaves the caller's
    # environment alone.
    os.environ.setdefault('GLOG_minloglevel', '2')
    sys.exit(main())
