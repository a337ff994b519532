"""The whole method on one dataset: teacher, two distillation stages, baselines, evaluation.

Steps (each writes under the run folder and is skipped when its outputs are complete, so an
interrupted run resumes; a step whose settings changed runs again, and so do the steps after it.
A training's settings are the text of its own net and solver: a new stage-1 learning rate reruns
stage 1 and the students that start from it, not the teacher):

  data          the synthetic dataset (the demo's [data] table)
  proposals     EdgeBoxes proposals -> the train and test datalists (the demo's [proposals])
  pretrain      the demo's ImageNet stand-in ([pretrain]): the student net trained to classify
                object-centric images of every shape and pattern; without fc8 it is the
                init_weights of every net below, as ImageNet VGG16 is the original's
  datalists     instead of both, for a config with a [datalists] table: the user's complete
                datalists are checked line by line and fingerprinted by content
  then per seed:
  nets          the nets and solvers (tools/mlic/netgen.py), one copy per training
  teacher       WSDDN trained on image labels
  teacher_eval  its classification metrics, detection AP and CorLoc on the test split
                (detection needs ground-truth boxes); it runs when a job has no training left
                to start, after the teacher's targets, which take every core
  teacher_targets  with [nets] soft_targets or roi_targets = "precomputed": the teacher's
                stage-2 soft targets (for both stage-2 nets) and its stage-1 RoI features of
                every train image, as read and mirrored, computed once
  stage1        feature-level KD: student RoI features regress the teacher's
  stage2        prediction-level KD from stage 1: labels + the teacher's soft scores
  student       the same student on labels only ("w/o KD")
  stage1_only   stage 1, then labels only (ablation)
  stage2_only   stage 2 from the initial student (ablation)
  evaluate      every student on the test split, with the teacher's results beside them
  and finally:
  report        the table (Markdown, JSON), training curves and the top-3 figure

A config with `init_weights` (ImageNet VGG16) starts the teacher, the student w/o KD and the
students of stage 1 and stage 2 only from it, as the original does; without it everything
trains from scratch.
"""
import functools
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from mlic import caffe_train
from mlic.report import STUDENT_ROWS, TRAININGS
from mlic.net_settings import data_sizes, net_config, preset_config, solver_overrides  # noqa
from mlic.run_config import ConfigError, deep_update, load_config  # noqa: F401
from mlic.steps import Step, file_fingerprint, fingerprint, log, run_graph  # noqa: F401

SEED_STEPS = ('nets', 'teacher', 'teacher_targets', 'stage1', 'stage2', 'student', 'stage1_only',
              'stage2_only', 'teacher_eval', 'evaluate')


def add_run_arguments(parser):
    """The command-line options of a run that tools/demo.py and tools/run_pipeline.py share;
    apply_run_arguments puts them into the config."""
    parser.add_argument('--seeds', help='comma-separated training seeds (default: the config\'s)')
    parser.add_argument('--jobs', type=int, help='trainings run at once (default: the config\'s '
                        'jobs, else 1); each gets cores/jobs BLAS threads')
    parser.add_argument('--folder', help='run folder (default: the config\'s folder)')


def apply_run_arguments(config, args):
    """Sets config's jobs from --jobs; returns the --seeds list (None: the config's)."""
    if args.jobs is not None:
        config['jobs'] = args.jobs
    return [int(s) for s in args.seeds.split(',')] if args.seeds else None


def resolve_paths(config, root):
    """The user data's paths made absolute (relative ones are relative to `root`), every file
    checked to exist; errors name the config file and the key."""
    where = config.get('config_path', 'config')
    lists = config['datalists']

    def existing(key, path, what):
        full = os.path.join(root, path)
        if not os.path.isfile(full):
            raise ConfigError('%s: %s: %s %s does not exist' % (where, key, what, full))
        return os.path.abspath(full)
    paths = {}
    for split in ('train', 'test'):
        if split not in lists:
            raise ConfigError('%s: datalists.%s: missing (the %s datalist with labels and '
                              'proposals)' % (where, split, split))
        paths[split] = existing('datalists.' + split, lists[split], 'datalist')
    from mlic import converters
    if lists.get('classes'):
        paths['classes'] = existing('datalists.classes', lists['classes'], 'classes file')
    else:
        paths['classes'] = existing('datalists.classes', converters.classes_path(
            lists['train']), 'classes file (not given, so the one beside datalists.train)')
    paths['test_boxes'] = (existing('datalists.test_boxes', lists['test_boxes'],
                                    'ground-truth box file')
                           if lists.get('test_boxes') else None)
    # Caffe runs in each step's folder: relative image paths must not depend on it.
    root_folder = os.path.join(root, lists.get('root_folder', ''))
    if not os.path.isdir(root_folder):
        raise ConfigError('%s: datalists.root_folder: folder %s does not exist'
                          % (where, root_folder))
    paths['root_folder'] = os.path.abspath(root_folder).rstrip('/') + '/'
    if config.get('init_weights'):
        paths['init_weights'] = existing('init_weights', config['init_weights'],
                                         'weights file')
    else:
        paths['init_weights'] = None
    return paths


class Pipeline(object):
    """Runs the steps of the module docstring for one config; see run().

    root: what relative paths of the config are relative to (the repository root)."""

    def __init__(self, config, folder=None, progress=True, root=None):
        self.config = config
        self.where = config.get('config_path', 'config')
        self.root = root or caffe_train.ROOT
        self.user_data = 'datalists' in config
        if self.user_data:
            self.paths = resolve_paths(config, self.root)
            preset_config(config)
        if folder:
            self.folder = os.path.abspath(folder)
        elif config.get('folder'):
            self.folder = os.path.abspath(os.path.join(self.root, config['folder']))
        else:
            raise ConfigError('%s: folder: missing (where the run writes everything)'
                              % self.where)
        self.progress = progress
        self.jobs = config.get('jobs', 1)
        if not isinstance(self.jobs, int) or isinstance(self.jobs, bool) or self.jobs < 1:
            raise ConfigError('%s: jobs: %r is not a whole number >= 1 (how many trainings run '
                              'at once)' % (self.where, self.jobs))
        self.seed_nets, self.net_inputs_keys = {}, {}
        os.makedirs(self.folder, exist_ok=True)
        self.timings = []
        self.init_weights = self.paths['init_weights'] if self.user_data else None
        self.init_key = None
        if self.init_weights:
            self.init_key = file_fingerprint(self.init_weights, self.hash_cache())

    def user_inputs(self, *inputs):
        """Inputs of a step that only a user's data has: left out of the demo's fingerprints,
        so that demo runs made before they existed still resume."""
        return inputs if self.user_data else ()

    def hash_cache(self):
        return os.path.join(self.folder, 'file_hashes.json')

    def training_env(self):
        """The environment of a caffe training: with `jobs` trainings at once each gets its
        share of the cores for BLAS (the small nets gain nothing from a second thread), unless
        the caller chose a thread count."""
        env = dict(os.environ)
        if self.jobs > 1:
            threads = str(max(1, len(os.sched_getaffinity(0)) // self.jobs))
            for name in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS'):
                env.setdefault(name, threads)
        return env

    # ---- bookkeeping
    def step(self, name, *inputs, folder=None):
        return Step(folder or self.folder, name, fingerprint(name, *inputs))

    def run_step(self, step, body, describe):
        if step.done():
            log('%-15s done already (%s)' % (step.name, os.path.relpath(step.dir, self.folder)))
            return
        log('%-15s %s' % (step.name, describe))
        start = time.time()
        step.start()
        body(step)
        step.finish()
        self.timings.append((step.dir, time.time() - start))
        log('%-15s finished in %.0f s' % (step.name, time.time() - start))

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
        # How many processes compute them changes nothing in them.
        step = self.step('proposals', self.data_key,
                         {k: v for k, v in settings.items() if k != 'workers'})

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
        self.classes_file = os.path.join(self.data_dir, 'classes.txt')
        self.test_boxes = os.path.join(self.data_dir, 'test_boxes.json')
        self.root_folder = ''
        return step

    def pretrain(self):
        """The demo's ImageNet stand-in: the student net (its own Interp, conv blocks, fc6, fc7)
        trained once, for every seed, to tell object-centric images of every shape x pattern
        pair at the student's input size; its weights without fc8 become init_weights."""
        from mlic import converters, netgen, surgery, synthetic
        settings = self.config['pretrain']
        nets = self.config['nets']
        size = nets['student_size']
        # Not the solvers, batches or stage-1 choice of the nets it initialises: changing those
        # must not redo the pretraining.
        trunk = {k: v for k, v in nets.items()
                 if k not in ('solver', 'batch_size', 'stage1_fc_frozen', 'soft_targets',
                              'roi_targets')}
        step = self.step('pretrain', settings, trunk)
        backbone = os.path.join(step.dir, 'backbone.caffemodel')

        def body(step):
            datalist = synthetic.generate_pretraining(
                os.path.join(step.dir, 'data'), image_size=size,
                object_size=tuple(settings['object_size']), count=settings['num_images'],
                seed=settings['seed'])
            classes = converters.read_classes(converters.classes_path(datalist))
            cfg = net_config(self.config, len(classes))
            cfg.update(num_proposals=1, image_size=size, scale_factors=[1.0],
                       data_seed=settings['seed'], soft_targets=None, roi_targets=None)
            cfg['batch_size']['student'] = (settings['batch_size'], settings['batch_size'])
            # On the preset's solver, not the configured student's: the fingerprint leaves the
            # nets' solvers out, so they must not reach the pretraining.
            cfg['solver']['student'] = dict(preset_config(self.config)['solver']['student'],
                                            **settings['solver'], random_seed=settings['seed'])
            files = netgen.write_nets(os.path.join(step.dir, 'nets'), cfg,
                                      datalists={'train': datalist, 'test': datalist},
                                      snapshot_dir=os.path.join(step.dir, 'snapshots'))
            final = caffe_train.train(files['student_solver'],
                                      os.path.join(step.dir, 'train.log'), label='pretrain',
                                      progress=self.progress and (
                                          'lines' if self.jobs > 1 else True),
                                      cwd=step.dir, env=self.training_env())
            surgery.backbone(final, files['student_train'], backbone)
        self.run_step(step, body, 'the ImageNet stand-in: %d object-centric images at %d px, '
                      '%d iterations' % (settings['num_images'], size,
                                         settings['solver']['max_iter']))
        self.init_weights, self.init_key = backbone, step.key
        return step

    def datalists_step(self):
        """The user's datalists, checked (every line, the image files, the boxes inside the
        resized image) and fingerprinted by content: a changed list reruns what follows."""
        from mlic import converters
        paths = self.paths
        image_size, bbox_num = data_sizes(self.config)
        files = ['train', 'test', 'classes'] + (['test_boxes'] if paths['test_boxes'] else [])
        contents = {key: file_fingerprint(paths[key], self.hash_cache()) for key in files}
        step = self.step('datalists', contents, paths['root_folder'], image_size, bbox_num)
        try:
            classes = converters.read_classes(paths['classes'])
        except (ValueError, UnicodeDecodeError) as error:
            raise ConfigError('%s: datalists.classes: %s' % (self.where, error))

        def body(step):
            entries = {split: self.check_datalist(split, classes, image_size)
                       for split in ('train', 'test')}
            if paths['test_boxes']:
                self.check_test_boxes(classes, image_size, entries['test'])
            counts = {split: len(e) for split, e in entries.items()}
            with open(os.path.join(step.dir, 'datalists.json'), 'w') as f:
                json.dump(dict(paths, images=counts, classes=classes, image_size=image_size,
                               bbox_num=bbox_num), f, indent=1)
        self.run_step(step, body, 'checking %s and %s (%d classes, boxes inside %d px, '
                      '%d proposals per image)' % (paths['train'], paths['test'], len(classes),
                                                   image_size, bbox_num))
        self.datalists = {s: paths[s] for s in ('train', 'test')}
        self.datalist_key = step.key
        self.classes_file = paths['classes']
        self.test_boxes = paths['test_boxes']
        self.root_folder = paths['root_folder']
        return step

    def check_datalist(self, split, classes, image_size):
        """The entries of one datalist, or ConfigError with every `file:line: field:
        reason` problem (datalist.scan_datalist's checks)."""
        from mlic import converters, datalist
        path = self.paths[split]
        beside = converters.classes_path(path)
        if os.path.isfile(beside) and os.path.abspath(beside) != self.paths['classes']:
            own = converters.read_classes(beside)
            if own != classes:
                raise ConfigError(
                    '%s: datalists.%s: %s has the class order %s (%d classes) beside it, but '
                    'datalists.classes is %s (%d classes): the labels would be read in the '
                    'wrong order' % (self.where, split, path, beside, len(own),
                                     self.paths['classes'], len(classes)))
        entries, problems = datalist.scan_datalist(path, len(classes), image_size, image_size,
                                                   self.paths['root_folder'])
        if problems:
            error = datalist.DatalistError(problems)
            hint = ''
            if any(': fields: ' in p for p in problems):
                hint = ('\n(every line needs one label per class of %s: %d; then 5 numbers per '
                        'proposal)' % (self.paths['classes'], len(classes)))
            raise ConfigError('%s: datalists.%s: %s has %d problems:\n%s%s'
                              % (self.where, split, path, len(problems), error, hint))
        return entries

    def check_test_boxes(self, classes, image_size, test_entries):
        from mlic import inference
        path = self.paths['test_boxes']
        images = [os.path.join(self.paths['root_folder'], e.image_path) for e in test_entries]
        try:
            with open(path) as f:
                names = json.load(f).get('classes')
            if names is not None and list(names) != list(classes):
                raise ValueError('its classes (%d) are not those of %s (%d) in the same order'
                                 % (len(names), self.paths['classes'], len(classes)))
            inference.read_ground_truth(path, images, self.paths['root_folder'],
                                        (image_size, image_size))
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError('%s: datalists.test_boxes: %s: %s' % (self.where, path, error))

    # ---- per-seed steps
    def seed_folder(self, seed):
        return os.path.join(self.folder, 'seed%d' % seed)

    def nets(self, seed):
        from mlic import converters, netgen
        classes = converters.read_classes(self.classes_file)
        cfg = net_config(self.config, len(classes))
        cfg['data_seed'] = seed
        for solver in cfg['solver'].values():
            solver['random_seed'] = seed
        for key in self.precomputed():
            cfg[key] = self.targets_path(seed, key)
        inputs = list(self.user_inputs(self.root_folder)) + ([self.init_key] if self.init_key
                                                             else [])
        step = self.step('nets', self.datalist_key, cfg, *inputs, folder=self.seed_folder(seed))
        # What every net is made from besides its own settings; each training chains this with
        # the text of its own net and solver (files_key), not with the whole config.
        self.net_inputs_keys[seed] = fingerprint(self.datalist_key, *inputs)

        def body(step):
            paths = netgen.write_nets(step.dir, cfg, datalists=self.datalists,
                                      root_folder=self.root_folder,
                                      snapshot_dir=os.path.join(step.dir, 'snapshots'))
            if self.init_weights:
                self.check_init_weights(paths)
        self.run_step(step, body, '%s nets and solvers (seed %d)' % (cfg['name'], seed))
        # cfg differs between seeds only in the seeds; the nets' files differ in their folder.
        self.cfg, self.classes = cfg, classes
        self.seed_nets[seed] = {k: os.path.join(step.dir, v) for k, v in netgen.FILES.items()}
        return step

    def files_key(self, seed, *kinds):
        """Fingerprint of the nets' inputs and the text of the named files of FILES: a step
        that uses only these files is redone when they change, and not when another net's
        settings do (a new stage-1 learning rate must not retrain the teacher)."""
        texts = []
        for kind in kinds:
            with open(self.seed_nets[seed][kind]) as f:
                texts.append(f.read())
        return fingerprint(self.net_inputs_keys[seed], *texts)

    def targets_path(self, seed, key):
        """The .npy of the teacher's precomputed outputs, key 'soft_targets' or 'roi_targets'."""
        return os.path.join(self.seed_folder(seed), 'teacher_targets', key + '.npy')

    def precomputed(self):
        """The [nets] keys of the teacher's outputs computed once: soft_targets, roi_targets."""
        nets = self.config.get('nets', {})
        return [key for key in ('soft_targets', 'roi_targets') if nets.get(key) == 'precomputed']

    def check_roi_targets_room(self, seed):
        """The RoI features take lines x 2 x B x fc_size x 4 bytes: refuse what the disk cannot
        hold before the teacher runs over the whole train list (VGG16 on MS-COCO: terabytes)."""
        lines = sum(1 for line in open(self.datalists['train']) if line.strip())
        size = lines * 2 * self.cfg['num_proposals'] * self.cfg['fc_size'] * 4
        folder = self.seed_folder(seed)
        free = shutil.disk_usage(folder).free
        if size > 0.9 * free:
            raise ConfigError('%s: nets.roi_targets = "precomputed": the teacher\'s RoI features '
                              'of %d images x 2 sides x %d proposals x %d values take %.1f GB, '
                              'and %s has %.1f GB free; use "online"'
                              % (self.where, lines, self.cfg['num_proposals'],
                                 self.cfg['fc_size'], size / 1e9, folder, free / 1e9))

    def teacher_targets(self, seed, teacher):
        """The teacher's outputs computed once (self.precomputed()) of the train list from
        `teacher`, by tools/compute_teacher_targets.py in its own process: with its share of the
        cores beside another training, and not holding this process's interpreter."""
        files = self.seed_nets[seed]
        keys = self.precomputed()
        step = self.step('teacher_targets', teacher.key, keys,
                         self.files_key(seed, 'stage2_teacher_deploy'),
                         folder=self.seed_folder(seed))

        def body(step):
            if 'roi_targets' in keys:
                self.check_roi_targets_room(seed)
            tool = os.path.join(self.root, 'tools', 'compute_teacher_targets.py')
            args = [sys.executable, tool, '--net', files['stage2_teacher_deploy'],
                    '--teacher', teacher.weights, '--datalist', self.datalists['train'],
                    '--root-folder', self.root_folder, '--workers', str(self.jobs)]
            for key in keys:
                args += ['--' + key.replace('_', '-'), self.targets_path(seed, key)]
            done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, env=dict(self.training_env(),
                                                      GLOG_minloglevel='2'))
            if done.returncode != 0:
                raise RuntimeError('%s failed (exit %d):\n%s'
                                   % (' '.join(args), done.returncode, done.stdout[-3000:]))
        what = {'soft_targets': 'stage-2 scores', 'roi_targets': 'stage-1 RoI features'}
        self.run_step(step, body, 'the teacher\'s %s of the train images, as read and mirrored '
                      '(seed %d)' % (' and '.join(what[key] for key in keys), seed))
        return step

    def check_init_weights(self, net_files):
        """init_weights must hold every weight layer of the student but its classifier, with
        the nets' shapes: the teacher's conv1_1 .. fc7 have the same names and shapes."""
        from mlic import surgery
        from caffe.proto import caffe_pb2
        from google.protobuf import text_format
        net = caffe_pb2.NetParameter()
        with open(net_files['student_train']) as f:
            text_format.Merge(f.read(), net)
        trunk = [layer.name for layer in net.layer
                 if layer.type in ('Convolution', 'InnerProduct', 'BatchNorm', 'Scale')
                 and layer.name != 'fc8_mscoco']
        try:
            surgery.check_pretrained(self.init_weights, net_files['student_train'], trunk)
        except surgery.SurgeryError as error:
            raise ConfigError('%s: init_weights: %s does not fit the nets: %s'
                              % (self.where, self.init_weights, error))

    def train(self, seed, name, kind, after, init=None):
        """Trains the `kind` solver in its own folder; init(step) -> .caffemodel paths or None.
        `after`: the steps whose results it starts from; their keys chain into this one's, with
        the text of its net and solver and what the nets are made from (init_weights, the
        datalists)."""
        step = self.step(name, [s.key for s in after],
                         self.files_key(seed, kind + '_train', kind + '_solver'),
                         folder=self.seed_folder(seed))
        solver_path = self.seed_nets[seed][kind + '_solver']

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
                                      progress=self.progress and (
                                          'lines' if self.jobs > 1 else True),
                                      cwd=step.dir, env=self.training_env())
            shutil.copyfile(final, os.path.join(step.dir, 'final.caffemodel'))
        iters = self.cfg['solver'][kind]['max_iter']
        self.run_step(step, body, 'training %s for %d iterations (seed %d)' % (kind, iters, seed))
        step.weights = os.path.join(step.dir, 'final.caffemodel')
        return step

    def seed_steps(self, seed):
        """{name: (the names it needs, callable(done) -> its Step or results)} of one seed."""
        from mlic import surgery
        pretrained = [self.init_weights] if self.init_weights else None
        files = lambda: self.seed_nets[seed]  # noqa: E731  (set by the nets step)

        def initialised(make):
            def init(step):
                out = os.path.join(step.dir, 'init.caffemodel')
                make(out)
                return [out]
            return init

        # The teacher's outputs computed once: the nets that read them wait for them and chain
        # their key (stage 1 for the RoI features, both stage-2 nets for the soft targets).
        precomputed = self.precomputed()
        soft = ('teacher_targets',) if 'soft_targets' in precomputed else ()
        roi = ('teacher_targets',) if 'roi_targets' in precomputed else ()

        def stage1(done):
            teacher = done['teacher']
            return self.train(seed, 'stage1', 'stage1', [teacher] + [done[n] for n in roi],
                              initialised(lambda out: surgery.stage1_init(
                                  teacher.weights, files()['stage1_train'], out,
                                  self.init_weights)))

        def stage2(done):
            stage1, teacher = done['stage1'], done['teacher']
            init = initialised(lambda out: surgery.stage2_init(
                stage1.weights, teacher.weights, files()['stage2_train'], out))
            return self.train(seed, 'stage2', 'stage2', [stage1] + [done[n] for n in soft], init)

        def stage1_only(done):
            stage1 = done['stage1']
            return self.train(seed, 'stage1_only', 'student', [stage1],
                              lambda step: [stage1.weights])

        def stage2_only(done):
            teacher = done['teacher']
            init = initialised(lambda out: surgery.stage2_init(
                None, teacher.weights, files()['stage2_train'], out,
                imagenet_model=self.init_weights))
            return self.train(seed, 'stage2_only', 'stage2', [teacher] + [done[n] for n in soft],
                              init)

        steps = {
            'nets': ((), lambda done: self.nets(seed)),
            'teacher': (('nets',), lambda done: self.train(
                seed, 'teacher', 'wsddn', [], lambda step: pretrained)),
            'stage1': (('nets', 'teacher') + roi, stage1),
            'stage2': (('nets', 'teacher', 'stage1') + soft, stage2),
            'student': (('nets',), lambda done: self.train(
                seed, 'student', 'student', [], lambda step: pretrained)),
            'stage1_only': (('nets', 'stage1'), stage1_only),
            'stage2_only': (('nets', 'teacher') + soft, stage2_only),
            # After the targets (when precomputed): they run one process per job.
            'teacher_eval': (('nets', 'teacher') + (soft or roi),
                             lambda done: self.teacher_eval(seed, done['teacher'])),
            'evaluate': (('nets', 'teacher_eval') + TRAININGS, lambda done: self.evaluate(
                seed, {name: done[name] for name in TRAININGS}, done['teacher_eval'])),
        }
        if precomputed:
            steps['teacher_targets'] = (('nets', 'teacher'), lambda done: self.teacher_targets(
                seed, done['teacher']))
        return steps

    def run_seeds(self, seeds, targets=('evaluate',)):
        """Runs the steps of every seed that `targets` need, up to `jobs` at a time; returns
        {seed: evaluation results} for the seeds whose evaluate ran."""
        def by_name(run, done):
            return run({name: result for (_, name), result in done.items()})

        graph = {}
        for seed in seeds:
            for name, (needs, run) in self.seed_steps(seed).items():
                graph[(seed, name)] = ([(seed, need) for need in needs],
                                       functools.partial(by_name, run))
        wanted = [(seed, name) for seed in seeds for name in targets]
        # Among the steps ready at once: the earliest in SEED_STEPS first (teachers before the
        # students that wait for them), then the lower seed.
        order = lambda key: (SEED_STEPS.index(key[1]), seeds.index(key[0]))  # noqa: E731
        done = run_graph(graph, wanted, self.jobs, order)
        return {seed: done[(seed, 'evaluate')] for seed in seeds if (seed, 'evaluate') in done}

    # ---- evaluation
    def run_results_step(self, step, make, describe):
        """Runs a step whose output is the dict that make(step) returns, kept as its
        results.json; returns that dict, read back (also when the step was done already)."""
        path = os.path.join(step.dir, 'results.json')

        def body(step):
            results = make(step)
            with open(path, 'w') as f:
                json.dump(results, f, indent=1)
        self.run_step(step, body, describe)
        with open(path) as f:
            return json.load(f)

    def test_set(self):
        from mlic import inference
        return inference.read_datalist(self.datalists['test'], len(self.classes),
                                       self.cfg['num_proposals'], self.root_folder)

    def teacher_eval(self, seed, teacher):
        """The teacher's classification (and, with the test boxes, detection) results in its
        Step's results.json; a step of its own so that it runs beside the last students instead
        of after them. Returns the Step."""
        from mlic import detection, evaluation, inference
        boxes_key = (file_fingerprint(self.test_boxes, self.hash_cache())
                     if self.test_boxes else None)
        step = self.step('teacher_eval', teacher.key, self.files_key(seed, 'wsddn_deploy'),
                         *self.user_inputs(boxes_key), folder=self.seed_folder(seed))

        def make(step):
            test = self.test_set()
            predicted = inference.predict_teacher(self.seed_nets[seed]['wsddn_deploy'],
                                                  teacher.weights, test, self.cfg)
            results = {'teacher': evaluation.evaluate(predicted['scores'], test.labels)}
            if self.test_boxes:
                size = self.cfg['image_size']
                ground_truth = inference.read_ground_truth(self.test_boxes, test.images,
                                                           self.root_folder, (size, size))
                results['teacher_detection'] = detection.detection_average_precision(
                    predicted['boxes'], predicted['proposal_scores'], ground_truth)
                results['teacher_corloc'] = detection.corloc(
                    predicted['boxes'], predicted['proposal_scores'], ground_truth,
                    test.labels)
            np.save(os.path.join(step.dir, 'teacher_scores.npy'), predicted['scores'])
            return results
        self.run_results_step(step, make, 'the teacher on the test split')
        return step

    def evaluate(self, seed, trained, teacher_eval):
        from mlic import evaluation, inference
        students = [name for name, _ in STUDENT_ROWS]
        step = self.step('evaluate', [trained[name].key for name in students],
                         teacher_eval.key, self.files_key(seed, 'student_deploy'),
                         folder=self.seed_folder(seed))

        def make(step):
            test = self.test_set()
            with open(os.path.join(teacher_eval.dir, 'results.json')) as f:
                results = json.load(f)
            for name in students:
                scores = inference.predict_student(self.seed_nets[seed]['student_deploy'],
                                                   trained[name].weights, test, self.cfg)
                np.save(os.path.join(step.dir, name + '_scores.npy'), scores)
                results[name] = evaluation.evaluate(scores, test.labels)
            return results
        results = self.run_results_step(step, make, 'the students on the test split')
        results['folder'] = step.dir
        results['logs'] = {name: os.path.join(s.dir, 'train.log') for name, s in trained.items()}
        return results

    # ---- the whole run
    def step_names(self):
        """Every step's name, in order (what run()'s `steps` may name)."""
        shared = list(self.shared_steps())
        per_seed = [name for name in SEED_STEPS
                    if name != 'teacher_targets' or self.precomputed()]
        return shared + per_seed + ['report']

    def shared_steps(self):
        """{name: (the names it needs, callable(done) -> its Step)} of the steps every seed
        shares, in the order one job runs them."""
        if self.user_data:
            return {'datalists': ((), lambda done: self.datalists_step())}
        steps = {'data': ((), lambda done: self.data()),
                 'proposals': (('data',), lambda done: self.proposals())}
        if 'pretrain' in self.config:
            # It makes its own images: with two jobs it trains while the scenes and their
            # proposals are made, which is most of their time.
            steps['pretrain'] = ((), lambda done: self.pretrain())
        return steps

    def run(self, seeds=None, steps=None):
        """Runs every step, or only those named in `steps` and the steps they need (each
        skipped when complete). Returns the results table when the report is made."""
        seeds = list(seeds or self.config.get('seeds', [1]))
        known = self.step_names()
        steps = list(steps or known)
        unknown = [name for name in steps if name not in known]
        if unknown:
            raise ConfigError('no step %r (steps: %s)' % (unknown[0], ', '.join(known)))
        start = time.time()
        if self.user_data and not self.init_weights:
            log('WARNING: %s sets no init_weights: the teacher and every student train from '
                'scratch, where the method starts them from ImageNet VGG16' % self.where)
        shared = self.shared_steps()
        run_graph(shared, list(shared), self.jobs, order=list(shared).index)
        targets = ['evaluate'] if 'report' in steps else [s for s in steps if s in SEED_STEPS]
        results = self.run_seeds(seeds, targets) if targets else {}
        per_seed = [results[seed] for seed in seeds if seed in results]
        report = self.report(seeds, per_seed) if 'report' in steps else None
        log('pipeline finished in %.0f s; results in %s' % (time.time() - start, self.folder))
        return report

    def report(self, seeds, per_seed):
        from mlic import report
        return report.write_report(self.folder, seeds, per_seed, self.test_set(), self.classes,
                                   self.timings, self.where)
