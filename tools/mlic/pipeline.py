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


def load_config(path, quick=False, overrides=None):
    """The pipeline config: the TOML file, its [quick] tables with quick=True, then overrides."""
    import tomllib
    with open(path, 'rb') as f:
        config = tomllib.load(f)
    quick_tables = config.pop('quick', {})
    if quick:
        config = deep_update(config, quick_tables, 'quick')
    if overrides:
        config = deep_update(config, overrides, 'overrides')
    return config


def net_config(config, num_classes):
    """netgen's config: netgen.SMALL under the [nets] tables, sizes from [data]/[proposals]."""
    from mlic import netgen
    nets = dict(config['nets'])
    nets.update(num_classes=num_classes, num_proposals=config['proposals']['bbox_num'],
                image_size=config['data']['image_size'])
    cfg = deep_update(netgen.SMALL, nets, 'nets')
    cfg['batch_size'] = {k: tuple(v) for k, v in cfg['batch_size'].items()}
    netgen.check_config(cfg)
    return cfg


class Pipeline(object):
    """Runs the steps of the module docstring for one config; see run()."""

    def __init__(self, config, folder=None, progress=True):
        self.config = config
        self.folder = os.path.abspath(folder or config['folder'])
        self.progress = progress
        os.makedirs(self.folder, exist_ok=True)
        self.timings = []

    # ---- bookkeeping
    def step(self, name, *inputs, folder=None):
        return Step(folder or self.folder, name, fingerprint(name, *inputs))

    def run_step(self, step, body, describe):
        if step.done():
            log('%-13s done already (%s)' % (step.name, os.path.relpath(step.dir, self.folder)))
            return
        log('%-13s %s' % (step.name, describe))
        start = time.time()
        step.start()
        body(step)
        step.finish()
        self.timings.append((step.dir, time.time() - start))
        log('%-13s finished in %.0f s' % (step.name, time.time() - start))

    # ---- shared steps
    def data(self):
        from mlic import synthetic
        settings = self.config['data']
        step = self.step('data', settings)

        def body(step):
            synthetic.generate(step.dir, num_classes=settings['num_classes'],
                               image_size=settings['image_size'],
                               object_size=tuple(settings['object_size']),
                               objects_per_image=tuple(settings['objects_per_image']),
                               num_train=settings['num_train'], num_test=settings['num_test'],
                               seed=settings['seed'])
        self.run_step(step, body, 'generating %(num_train)d + %(num_test)d synthetic images of '
                      '%(num_classes)d classes at %(image_size)d px' % settings)
        self.data_dir = step.dir
        self.data_key = step.key
        return step

    def proposals(self):
        from mlic import proposals
        settings = self.config['proposals']
        size = self.config['data']['image_size']
        step = self.step('proposals', self.data_key, settings)

        def body(step):
            method = proposals.proposal_settings(settings['method'],
                                                 max_boxes=settings['bbox_num'],
                                                 beta=settings['beta'])
            for split in ('train', 'test'):
                proposals.complete_datalist(
                    os.path.join(self.data_dir, split + '.txt'),
                    os.path.join(step.dir, split + '.txt'), method,
                    os.path.join(self.folder, 'proposal_cache'), new_width=size,
                    new_height=size, bbox_num=settings['bbox_num'],
                    workers=settings['workers'], progress=self.progress)
        self.run_step(step, body, '%s proposals for every image (%d per image at most)'
                      % (settings['method'], settings['bbox_num']))
        self.datalists = {s: os.path.join(step.dir, s + '.txt') for s in ('train', 'test')}
        self.datalist_key = step.key
        return step

    # ---- per-seed steps
    def seed_folder(self, seed):
        return os.path.join(self.folder, 'seed%d' % seed)

    def nets(self, seed):
        from mlic import converters, netgen
        classes = converters.read_classes(os.path.join(self.data_dir, 'classes.txt'))
        cfg = net_config(self.config, len(classes))
        cfg['data_seed'] = seed
        for solver in cfg['solver'].values():
            solver['random_seed'] = seed
        step = self.step('nets', self.datalist_key, cfg, folder=self.seed_folder(seed))

        def body(step):
            netgen.write_nets(step.dir, cfg, datalists=self.datalists,
                              snapshot_dir=os.path.join(step.dir, 'snapshots'))
        self.run_step(step, body, 'small nets and solvers (seed %d)' % seed)
        self.cfg, self.classes = cfg, classes
        self.net_files = {k: os.path.join(step.dir, v) for k, v in netgen.FILES.items()}
        return step

    def train(self, seed, name, kind, after, init=None):
        """Trains the `kind` solver in its own folder; init(step) -> .caffemodel paths or None.
        `after`: the steps whose results it starts from (their keys chain into this one's)."""
        step = self.step(name, [s.key for s in after], folder=self.seed_folder(seed))
        solver_path = self.net_files[kind + '_solver']

        def body(step):
            solver = caffe_train.read_solver(solver_path)
            solver.snapshot_prefix = os.path.join(step.dir, 'snap')
            from google.protobuf import text_format
            local_solver = os.path.join(step.dir, 'solver.prototxt')
            with open(local_solver, 'w') as f:
                f.write(text_format.MessageToString(solver))
            weights = init(step) if init else None
            final = caffe_train.train(local_solver, os.path.join(step.dir, 'train.log'),
                                      weights=weights, label='%s s%d' % (name, seed),
                                      progress=self.progress, cwd=step.dir)
            shutil.copyfile(final, os.path.join(step.dir, 'final.caffemodel'))
        iters = self.cfg['solver'][kind]['max_iter']
        self.run_step(step, body, 'training %s for %d iterations (seed %d)' % (kind, iters, seed))
        step.weights = os.path.join(step.dir, 'final.caffemodel')
        return step

    def run_seed(self, seed):
        from mlic import surgery
        nets = self.nets(seed)
        teacher = self.train(seed, 'teacher', 'wsddn', [nets])
        stage1_net = self.net_files['stage1_train']
        stage2_net = self.net_files['stage2_train']

        def stage1_init(step):
            out = os.path.join(step.dir, 'init.caffemodel')
            surgery.stage1_init(teacher.weights, stage1_net, out)
            return [out]
        stage1 = self.train(seed, 'stage1', 'stage1', [teacher], stage1_init)

        def stage2_init(step):
            out = os.path.join(step.dir, 'init.caffemodel')
            surgery.stage2_init(stage1.weights, teacher.weights, stage2_net, out)
            return [out]
        stage2 = self.train(seed, 'stage2', 'stage2', [stage1], stage2_init)
        student = self.train(seed, 'student', 'student', [nets])
        stage1_only = self.train(seed, 'stage1_only', 'student', [stage1],
                                 lambda step: [stage1.weights])

        def stage2_only_init(step):
            out = os.path.join(step.dir, 'init.caffemodel')
            surgery.stage2_init(None, teacher.weights, stage2_net, out)
            return [out]
        stage2_only = self.train(seed, 'stage2_only', 'stage2', [teacher], stage2_only_init)
        trained = {'teacher': teacher, 'stage1': stage1, 'stage2': stage2, 'student': student,
                   'stage1_only': stage1_only, 'stage2_only': stage2_only}
        return self.evaluate(seed, trained)

    # ---- evaluation
    def evaluate(self, seed, trained):
        from mlic import detection, evaluation, inference
        step = self.step('evaluate', [s.key for s in trained.values()],
                         folder=self.seed_folder(seed))
        results_path = os.path.join(step.dir, 'results.json')

        def body(step):
            test = inference.read_datalist(self.datalists['test'], len(self.classes),
                                           self.cfg['num_proposals'])
            results = {}
            teacher = inference.predict_teacher(self.net_files['wsddn_deploy'],
                                                trained['teacher'].weights, test, self.cfg)
            results['teacher'] = evaluation.evaluate(teacher['scores'], test.labels)
            ground_truth = inference.read_ground_truth(
                os.path.join(self.data_dir, 'test_boxes.json'), test.images)
            results['teacher_detection'] = detection.detection_average_precision(
                teacher['boxes'], teacher['proposal_scores'], ground_truth)
            results['teacher_corloc'] = detection.corloc(
                teacher['boxes'], teacher['proposal_scores'], ground_truth, test.labels)
            np.save(os.path.join(step.dir, 'teacher_scores.npy'), teacher['scores'])
            for name, _ in STUDENT_ROWS:
                scores = inference.predict_student(self.net_files['student_deploy'],
                                                   trained[name].weights, test, self.cfg)
                np.save(os.path.join(step.dir, name + '_scores.npy'), scores)
                results[name] = evaluation.evaluate(scores, test.labels)
            with open(results_path, 'w') as f:
                json.dump(results, f, indent=1)
        self.run_step(step, body, 'teacher and students on the %s split' % 'test')
        with open(results_path) as f:
            results = json.load(f)
        results['folder'] = step.dir
        results['logs'] = {name: os.path.join(s.dir, 'train.log') for name, s in trained.items()}
        return results

    # ---- the whole run
    def run(self, seeds=None):
        seeds = list(seeds or self.config['seeds'])
        start = time.time()
        self.data()
        self.proposals()
        per_seed = [self.run_seed(seed) for seed in seeds]
        report = self.report(seeds, per_seed)
        log('pipeline finished in %.0f s; results in %s' % (time.time() - start, self.folder))
        return report

    def report(self, seeds, per_seed):
        from mlic import caffe_log, plots
        rows = [('Teacher (WSDDN)', [r['teacher'] for r in per_seed])]
        rows += [(label, [r[name] for r in per_seed]) for name, label in STUDENT_ROWS]
        table = plots.results_table(rows)
        markdown = os.path.join(self.folder, 'results.md')
        plots.write_results_table(table, markdown, os.path.join(self.folder, 'results.json'))
        first = per_seed[0]
        plots.plot_training_curves(
            [(name, caffe_log.parse_log(first['logs'][name])) for name in
             ('teacher', 'stage1', 'stage2', 'student', 'stage1_only', 'stage2_only')],
            os.path.join(self.folder, 'training_curves.png'))
        self.top3_figure(first)
        detection_lines = ['', 'Teacher detection on the test split (seed %d): VOC07 mAP@0.5 '
                           '%.1f, CorLoc %.1f' % (seeds[0], 100 * first['teacher_detection']['mAP'],
                                                  100 * first['teacher_corloc']['mean_corloc'])]
        if self.timings:
            detection_lines += ['', 'Steps run this time:', '', '| step | seconds |', '|---|---|']
            detection_lines += ['| %s | %.0f |' % (os.path.relpath(d, self.folder), t)
                                for d, t in self.timings]
        with open(markdown, 'a') as f:
            f.write('\n'.join(detection_lines) + '\n')
        with open(markdown) as f:
            text = f.read()
        print(text)
        return table

    def top3_figure(self, results, count=6):
        from mlic import inference, plots
        test = inference.read_datalist(self.datalists['test'], len(self.classes),
                                       self.cfg['num_proposals'])
        without = np.load(os.path.join(results['folder'], 'student_scores.npy'))
        with_kd = np.load(os.path.join(results['folder'], 'stage2_scores.npy'))
        plots.plot_top_k_comparison(test.images[:count], without[:count], with_kd[:count],
                                    test.labels[:count], self.classes,
                                    os.path.join(self.folder, 'top3_examples.png'))
