"""The whole method on one dataset: teacher, two distillation stages, baselines, evaluation.

Steps (each writes under the run folder and is skipped when its outputs are complete, so an
interrupted run resumes; a step whose settings changed runs again, and so do the steps after it):

  data          the synthetic dataset (demo only; a user's datalists skip it)
  proposals     EdgeBoxes proposals -> the train and test datalists
  then per seed:
  nets          the small nets and solvers (tools/mlic/netgen.py), one copy per training
  teacher       WSDDN trained on image labels
  teacher_eval  its classification metrics, detection AP and CorLoc on the test split
  stage1        feature-level KD: student RoI features regress the teacher's
  stage2        prediction-level KD from stage 1: labels + the teacher's soft scores
  student       the same student on labels only ("w/o KD")
  stage1_only   stage 1, then labels only (ablation)
  stage2_only   stage 2 from the initial student (ablation)
  evaluate      every student on the test split
  and finally:
  report        the table (Markdown, JSON), training curves and the top-3 figure
"""
import copy
import hashlib
import json
import os
import shutil
import sys
import time

import numpy as np

from mlic import caffe_train

STUDENT_ROWS = (('student', 'Student w/o KD'), ('stage1_only', 'Stage 1 only'),
                ('stage2_only', 'Stage 2 only'), ('stage2', 'Student w/ KD'))


def log(message):
    sys.stderr.write('%s %s\n' % (time.strftime('%H:%M:%S'), message))
    sys.stderr.flush()


def deep_update(base, overrides, where='config'):
    """Recursively merges `overrides` into a copy of `base`; unknown keys are errors."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if key not in merged:
            raise KeyError('%s: unknown key %r (known: %s)'
                           % (where, key, ', '.join(sorted(map(str, merged)))))
        if isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = deep_update(merged[key], value, '%s.%s' % (where, key))
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def fingerprint(*parts):
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Step(object):
    """A step's folder and its completion marker (the fingerprint of what it was made from)."""

    def __init__(self, folder, name, key):
        self.name, self.key = name, key
        self.dir = os.path.join(folder, name)
        self.marker = os.path.join(self.dir, 'DONE')

    def done(self):
        if not os.path.exists(self.marker):
            return False
        with open(self.marker) as f:
            return f.read().strip() == self.key

    def finish(self):
        with open(self.marker, 'w') as f:
            f.write(self.key + '\n')

    def start(self):
        # A step redone from scratch must not pick up stale snapshots of other settings; a step
        # interrupted with the same settings keeps its snapshots and resumes from them.
        stamp = os.path.join(self.dir, 'SETTINGS')
        if os.path.exists(stamp) and open(stamp).read().strip() != self.key:
            shutil.rmtree(self.dir)
        os.makedirs(self.dir, exist_ok=True)
        with open(stamp, 'w') as f:
            f.write(self.key + '\n')
