"""The steps of one training seed: the nets, the teacher, the teacher's targets computed once,
the two KD stages, the student without KD and the two ablations, and their evaluation.

Each step gets the results of the steps it needs as values (SeedNets, Trained) and returns its
own; nothing is handed on through attributes. A training's fingerprint chains the keys of the
steps it starts from with the text of its own net and solver, so that a new stage-1 learning
rate reruns stage 1 and what starts from it, not the teacher.
"""
import collections
import os
import shutil
import subprocess
import sys

import numpy as np

from mlic import budget, converged, devices, evaluation_steps
from mlic.net_settings import net_config
from mlic.report import BASELINE_TRAININGS, TRAININGS
from mlic.run_config import ConfigError
from mlic.steps import fingerprint, log

SEED_STEPS = ('nets', 'teacher', 'teacher_targets', 'baseline_targets', 'stage1', 'stage2', 'student', 'stage1_only',
              'stage2_only', 'fitnets_hint', 'fitnets', 'attention', 'teacher_eval', 'evaluate')

SeedNets = collections.namedtuple('SeedNets', 'seed folder cfg classes files inputs_key key')
SeedNets.__doc__ = ("One seed's nets: cfg, netgen's config (the same for every seed but the "
                    'seeds); classes, the class names; files, {kind: path} of netgen.FILES; '
                    'inputs_key, the fingerprint of what every net is made from besides its own '
                    "settings (the datalists, init_weights); key, the nets step's")
Trained = collections.namedtuple('Trained', 'key dir weights')
Trained.__doc__ = ("A step's result: its key, its folder and, for a training, its final "
                   '.caffemodel')

TARGET_KINDS = {'soft_targets': 'stage-2 scores', 'roi_targets': 'stage-1 RoI features'}
# The baselines' precomputed maps: {[nets] key: (the baseline that reads them, what they are)}.
BASELINE_TARGET_KINDS = {'attention_targets': ('attention', 'attention maps'),
                         'hint_targets': ('fitnets', 'last conv features')}


def precomputed(config):
    """The [nets] keys of the teacher's outputs computed once: soft_targets, roi_targets."""
    nets = config.get('nets', {})
    return [key for key in TARGET_KINDS if nets.get(key) == 'precomputed']


def baseline_precomputed(config):
    """The [nets] keys of the baselines' maps computed once (attention_targets, hint_targets),
    of the baselines the run trains."""
    nets, baselines = config.get('nets', {}), config.get('baselines', [])
    return [key for key, (baseline, _) in BASELINE_TARGET_KINDS.items()
            if nets.get(key) == 'precomputed' and baseline in baselines]


def check_map_targets_room(key, train_list, map_shape, folder, where):
    """The maps take lines x 2 x C x H x W x 4 bytes (FitNets' hint on VGG16 and MS-COCO:
    hundreds of GB): refuse what the disk cannot hold before the teacher runs."""
    lines = sum(1 for line in open(train_list) if line.strip())
    size = lines * 2 * int(np.prod(map_shape)) * 4
    free = shutil.disk_usage(folder).free
    if size > 0.9 * free:
        raise ConfigError('%s: nets.%s = "precomputed": the teacher\'s %s of %d images x 2 '
                          'sides x %s values take %.1f GB, and %s has %.1f GB free; use "online"'
                          % (where, key, BASELINE_TARGET_KINDS[key][1], lines,
                             ' x '.join(map(str, map_shape)), size / 1e9, folder, free / 1e9))


def check_roi_targets_room(train_list, num_proposals, fc_size, folder, where):
    """The RoI features take lines x 2 x B x fc_size x 4 bytes: refuse what the disk cannot
    hold before the teacher runs over the whole train list (VGG16 on MS-COCO: terabytes)."""
    lines = sum(1 for line in open(train_list) if line.strip())
    size = lines * 2 * num_proposals * fc_size * 4
    free = shutil.disk_usage(folder).free
    if size > 0.9 * free:
        raise ConfigError('%s: nets.roi_targets = "precomputed": the teacher\'s RoI features '
                          'of %d images x 2 sides x %d proposals x %d values take %.1f GB, '
                          'and %s has %.1f GB free; use "online"'
                          % (where, lines, num_proposals, fc_size, size / 1e9, folder,
                             free / 1e9))


class SeedSteps(object):
    """The per-seed steps of a run over `dataset` (sources.Dataset) starting from `init`
    (sources.Init). user_data: whether inputs only a user's data has enter the keys (see
    sources). root: the repository root (where tools/compute_teacher_targets.py lies)."""

    def __init__(self, workspace, config, dataset, init, user_data, root):
        self.work, self.config, self.data, self.init = workspace, config, dataset, init
        self.user_data, self.root = user_data, root
        self.where = config.get('config_path', 'config')
        self.gpus = config.get('gpus', [])
        self.precomputed = precomputed(config)
        self.baseline_precomputed = baseline_precomputed(config)
        self.baselines = list(config.get('baselines', []))
        self.budget = config.get('budget', 'schedules')

    def seed_folder(self, seed):
        return os.path.join(self.work.folder, 'seed%d' % seed)

    def user_inputs(self, *inputs):
        """Inputs of a step that only a user's data has: left out of the demo's fingerprints,
        so that demo runs made before they existed still resume."""
        return inputs if self.user_data else ()

    def targets_path(self, seed, key):
        """The .npy of the teacher's precomputed outputs, key 'soft_targets' or 'roi_targets'
        (step teacher_targets), 'attention_targets' or 'hint_targets' (step
        baseline_targets)."""
        step = 'baseline_targets' if key in BASELINE_TARGET_KINDS else 'teacher_targets'
        return os.path.join(self.seed_folder(seed), step, key + '.npy')

    # ---- the nets
    def nets(self, seed):
        from mlic import converters, netgen
        classes = converters.read_classes(self.data.classes_file)
        cfg = net_config(self.config, len(classes))
        cfg['data_seed'] = seed
        for solver in cfg['solver'].values():
            solver['random_seed'] = seed
        for key in BASELINE_TARGET_KINDS:  # in the nets of the baselines trained, else online
            cfg[key] = None
        for key in self.precomputed + self.baseline_precomputed:
            cfg[key] = self.targets_path(seed, key)
        inputs = list(self.user_inputs(self.data.root_folder)) + (
            [self.init.key] if self.init.key else [])
        folder = self.seed_folder(seed)
        step = self.work.step('nets', self.data.key, cfg, *inputs, folder=folder)

        def body(step):
            # With a validation split, the TEST phase that caffe runs during training reads
            # the validation list: nothing seen while training comes from the test split.
            datalists = self.data.datalists
            if 'val' in datalists:
                datalists = dict(datalists, test=datalists['val'])
            paths = netgen.write_nets(step.dir, cfg, datalists=datalists,
                                      root_folder=self.data.root_folder,
                                      snapshot_dir=os.path.join(step.dir, 'snapshots'))
            if self.init.weights:
                self.check_init_weights(paths)
        self.work.run_step(step, body, '%s nets and solvers (seed %d)' % (cfg['name'], seed))
        files = {k: os.path.join(step.dir, v) for k, v in netgen.FILES.items()}
        # What every net is made from besides its own settings; each training chains this with
        # the text of its own net and solver (files_key), not with the whole config.
        return SeedNets(seed, folder, cfg, classes, files,
                        fingerprint(self.data.key, *inputs), step.key)

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
            surgery.check_pretrained(self.init.weights, net_files['student_train'], trunk)
        except surgery.SurgeryError as error:
            raise ConfigError('%s: init_weights: %s does not fit the nets: %s'
                              % (self.where, self.init.weights, error))

    def files_key(self, nets, *kinds):
        """Fingerprint of the nets' inputs and the text of the named files of FILES: a step
        that uses only these files is redone when they change, and not when another net's
        settings do (a new stage-1 learning rate must not retrain the teacher)."""
        texts = []
        for kind in kinds:
            with open(nets.files[kind]) as f:
                texts.append(f.read())
        return fingerprint(nets.inputs_key, *texts)

    # ---- the trainings
    def row_solver(self, nets, name):
        """The solver fields over its net's that the run's budget sets for training `name`
        (mlic.budget; {} under budget "schedules")."""
        return budget.step_solvers(nets.cfg, self.budget, self.rows()).get(name, {})

    def rows(self):
        """The table's student rows this run trains (budget.ROW_TRAININGS' keys)."""
        return [row for row in budget.ROW_TRAININGS if row in TRAININGS or row in self.baselines]

    def train(self, nets, name, kind, after, init=None, solver_fields=None):
        """Trains the `kind` solver in its own folder; init(step) -> .caffemodel paths or None.
        `after`: the steps whose results it starts from; their keys chain into this one's, with
        the text of its net and solver and what the nets are made from (init_weights, the
        datalists). solver_fields: SolverParameter fields over the solver's (the budget's
        max_iter and steps); they enter the key."""
        from mlic import caffe_train
        fields = dict(solver_fields or {})
        validated = 'val' in self.data.datalists and name in converged.VALIDATED
        rule = (converged.rule_of(self.config)
                if validated and self.config.get('schedule') == 'converged' else None)
        solver_path = nets.files[kind + '_solver']
        iters = fields.get('max_iter', caffe_train.read_solver(solver_path).max_iter)
        # A row's last training is capped by the row's images (budget.last_training_caps); the
        # cap enters the key only where it differs from max_factor x its own max_iter.
        cap_limit = (budget.last_training_caps(nets.cfg, self.budget, self.rows(),
                                               rule.max_factor).get(name) if rule else None)
        if rule and cap_limit == rule.max_factor * iters:
            cap_limit = None
        step = self.work.step(name, [s.key for s in after],
                              self.files_key(nets, kind + '_train', kind + '_solver'),
                              *([sorted(fields.items())] if fields else []),
                              # (the rule's version: the learning rate follows the mAP)
                              *([tuple(rule) + ('lr by validation',)] if rule else []),
                              *([('cap', cap_limit)] if cap_limit is not None else []),
                              folder=nets.folder)

        def body(step):
            from google.protobuf import text_format
            solver = caffe_train.read_solver(solver_path)
            for key, value in fields.items():
                if isinstance(value, list):
                    del getattr(solver, key)[:]
                    getattr(solver, key).extend(value)
                else:
                    setattr(solver, key, value)
            solver.snapshot_prefix = os.path.join(step.dir, 'snap')
            local_solver = os.path.join(step.dir, 'solver.prototxt')

            own_base_lr, drops = solver.base_lr, converged.lr_drops(solver)

            def write_solver(max_iter=None, snapshot=None, lr_scale=None):
                if max_iter is not None:
                    solver.max_iter, solver.snapshot = max_iter, snapshot
                if lr_scale is not None:  # converged: the rate follows the validation mAP
                    solver.lr_policy, solver.base_lr = 'fixed', own_base_lr * lr_scale
                with open(local_solver, 'w') as f:
                    f.write(text_format.MessageToString(solver))
            write_solver()
            weights = init(step) if init else None

            def run_training():
                return devices.train(local_solver, os.path.join(step.dir, 'train.log'),
                                     self.gpus, weights=weights,
                                     label='%s s%d' % (name, nets.seed),
                                     progress=self.work.training_progress(), cwd=step.dir,
                                     env=self.work.training_env())
            final = os.path.join(step.dir, 'final.caffemodel')
            if not validated:
                shutil.copyfile(run_training(), final)
                return
            validation = converged.Validation(step.dir, nets.files['student_deploy'],
                                              self.data.datalists['val'], nets.cfg,
                                              self.data.root_folder, self.gpus)
            if rule:
                picked, why, kept = converged.train_converged(
                    write_solver, run_training, validation, iters, rule,
                    log=lambda text: log('%-15s %s' % (name, text)), drops=drops,
                    gamma=solver.gamma, cap_limit=cap_limit)
                shutil.copyfile(kept, final)
            else:
                shutil.copyfile(run_training(), final)
                validation.evaluate_all()
                validation.write()
        if rule:
            describe = ('training %s until its validation mAP stops rising, at most %d '
                        'iterations (seed %d)' % (kind, converged.cap_of(iters, rule, cap_limit),
                                                  nets.seed))
        else:
            describe = 'training %s for %d iterations (seed %d)' % (kind, iters, nets.seed)
        self.work.run_step(step, body, describe)
        return Trained(step.key, step.dir, os.path.join(step.dir, 'final.caffemodel'))

    def run_targets_tool(self, tool_name, nets, deploy, teacher, keys):
        """Runs tools/<tool_name> (compute_teacher_targets.py or compute_baseline_targets.py):
        the teacher `deploy` net with `teacher`'s weights over the train list, writing the .npy
        of each of `keys` (targets_path), in its own process with the trainings' share of the
        cores; raises with the end of its output when it fails."""
        tool = os.path.join(self.root, 'tools', tool_name)
        args = [sys.executable, tool, '--net', deploy, '--teacher', teacher.weights,
                '--datalist', self.data.datalists['train'], '--root-folder', self.data.root_folder,
                '--max-pixels', str(nets.cfg['max_pixels'])]
        args += devices.targets_arguments(self.gpus, self.work.jobs)
        for key in keys:
            args += ['--' + key.replace('_', '-'), self.targets_path(nets.seed, key)]
        done = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(self.work.training_env(), GLOG_minloglevel='2'))
        if done.returncode != 0:
            raise RuntimeError('%s failed (exit %d):\n%s'
                               % (' '.join(args), done.returncode, done.stdout[-3000:]))

    def teacher_targets(self, nets, teacher):
        """The teacher's outputs computed once (self.precomputed) of the train list from
        `teacher`, by tools/compute_teacher_targets.py in its own process: with its share of the
        cores beside another training, and not holding this process's interpreter."""
        keys = self.precomputed
        step = self.work.step('teacher_targets', teacher.key, keys,
                              self.files_key(nets, 'stage2_teacher_deploy'), folder=nets.folder)

        def body(step):
            if 'roi_targets' in keys:
                check_roi_targets_room(self.data.datalists['train'], nets.cfg['num_proposals'],
                                       nets.cfg['fc_size'], nets.folder, self.where)
            self.run_targets_tool('compute_teacher_targets.py', nets,
                                  nets.files['stage2_teacher_deploy'], teacher, keys)
        self.work.run_step(step, body, 'the teacher\'s %s of the train images, as read and '
                           'mirrored (seed %d)' % (' and '.join(TARGET_KINDS[key] for key in keys),
                                                   nets.seed))
        return Trained(step.key, step.dir, None)

    def baseline_targets(self, nets, teacher):
        """The teacher's maps of the baselines computed once (self.baseline_precomputed) of the
        train list from `teacher`, by tools/compute_baseline_targets.py in its own process. A
        step of its own, apart from teacher_targets: the KD stages chain that step's key, and
        turning a baseline's maps on must not retrain them."""
        from mlic import netgen
        keys = self.baseline_precomputed
        step = self.work.step('baseline_targets', teacher.key, keys,
                              self.files_key(nets, 'baseline_teacher_deploy'),
                              folder=nets.folder)

        def body(step):
            for key in keys:
                shape = netgen.baseline_map_shape(nets.cfg, netgen.BASELINE_TARGET_KEYS[key])
                check_map_targets_room(key, self.data.datalists['train'], shape, nets.folder,
                                       self.where)
            self.run_targets_tool('compute_baseline_targets.py', nets,
                                  nets.files['baseline_teacher_deploy'], teacher, keys)
        self.work.run_step(step, body, 'the teacher\'s %s of the train images, as read and '
                           'mirrored (seed %d)' % (' and '.join(BASELINE_TARGET_KINDS[key][1]
                                                              for key in keys), nets.seed))
        return Trained(step.key, step.dir, None)

    # ---- the graph
    def graph(self, seed):
        """{name: (the names it needs, callable(done) -> its result)} of one seed."""
        from mlic import surgery
        init_weights = self.init.weights
        pretrained = [init_weights] if init_weights else None
        evaluate = evaluation_steps.Evaluation(self.work, self.data, self.gpus, self.user_data)

        def initialised(make):
            def init(step):
                out = os.path.join(step.dir, 'init.caffemodel')
                make(out)
                return [out]
            return init

        # The teacher's outputs computed once: the nets that read them wait for them and chain
        # their key (stage 1 for the RoI features, both stage-2 nets for the soft targets).
        soft = ('teacher_targets',) if 'soft_targets' in self.precomputed else ()
        roi = ('teacher_targets',) if 'roi_targets' in self.precomputed else ()

        def stage1(done):
            nets, teacher = done['nets'], done['teacher']
            return self.train(nets, 'stage1', 'stage1', [teacher] + [done[n] for n in roi],
                              initialised(lambda out: surgery.stage1_init(
                                  teacher.weights, nets.files['stage1_train'], out,
                                  init_weights)))

        def stage2(done):
            nets, stage1, teacher = done['nets'], done['stage1'], done['teacher']
            init = initialised(lambda out: surgery.stage2_init(
                stage1.weights, teacher.weights, nets.files['stage2_train'], out))
            return self.train(nets, 'stage2', 'stage2', [stage1] + [done[n] for n in soft], init)

        def stage1_only(done):
            nets, stage1 = done['nets'], done['stage1']
            return self.train(nets, 'stage1_only', 'student', [stage1],
                              lambda step: [stage1.weights],
                              self.row_solver(nets, 'stage1_only'))

        def stage2_only(done):
            nets, teacher = done['nets'], done['teacher']
            init = initialised(lambda out: surgery.stage2_init(
                None, teacher.weights, nets.files['stage2_train'], out,
                imagenet_model=init_weights))
            return self.train(nets, 'stage2_only', 'stage2', [teacher] + [done[n] for n in soft],
                              init, self.row_solver(nets, 'stage2_only'))

        def student(done):
            nets = done['nets']
            return self.train(nets, 'student', 'student', [], lambda step: pretrained,
                              self.row_solver(nets, 'student'))

        # The classic baselines (docs/baselines.md): the teacher runs inside their nets, or
        # they read its maps computed once (and chain that step's key).
        hint = ('baseline_targets',) if 'hint_targets' in self.baseline_precomputed else ()
        maps = ('baseline_targets',) if 'attention_targets' in self.baseline_precomputed else ()

        def fitnets_hint(done):
            nets, teacher = done['nets'], done['teacher']
            init = initialised(lambda out: surgery.baseline_init(
                teacher.weights, nets.files['fitnets_hint_train'], out, init_weights))
            return self.train(nets, 'fitnets_hint', 'fitnets_hint',
                              [teacher] + [done[n] for n in hint], init)

        def fitnets(done):
            nets, hint = done['nets'], done['fitnets_hint']
            init = initialised(lambda out: surgery.hint_label_init(
                hint.weights, nets.files['student_train'], out, init_weights))
            return self.train(nets, 'fitnets', 'student', [hint], init,
                              self.row_solver(nets, 'fitnets'))

        def attention(done):
            nets, teacher = done['nets'], done['teacher']
            init = initialised(lambda out: surgery.baseline_init(
                teacher.weights, nets.files['attention_train'], out, init_weights))
            return self.train(nets, 'attention', 'attention',
                              [teacher] + [done[n] for n in maps], init,
                              self.row_solver(nets, 'attention'))

        def files_key(kind):
            return lambda nets: self.files_key(nets, kind)

        trainings = TRAININGS + tuple(step for name in self.baselines
                                      for step in BASELINE_TRAININGS[name])

        steps = {
            'nets': ((), lambda done: self.nets(seed)),
            'teacher': (('nets',), lambda done: self.train(
                done['nets'], 'teacher', 'wsddn', [], lambda step: pretrained)),
            'stage1': (('nets', 'teacher') + roi, stage1),
            'stage2': (('nets', 'teacher', 'stage1') + soft, stage2),
            'student': (('nets',), student),
            'stage1_only': (('nets', 'stage1'), stage1_only),
            'stage2_only': (('nets', 'teacher') + soft, stage2_only),
            # After the targets (when precomputed): they run one process per job.
            'teacher_eval': (('nets', 'teacher') + (soft or roi) + (hint or maps),
                             lambda done: evaluate.teacher(
                done['nets'], done['teacher'], files_key('wsddn_deploy')(done['nets']))),
            'evaluate': (('nets', 'teacher_eval') + trainings, lambda done: evaluate.students(
                done['nets'], {name: done[name] for name in trainings}, done['teacher_eval'],
                files_key('student_deploy')(done['nets']))),
        }
        if 'fitnets' in self.baselines:
            steps['fitnets_hint'] = (('nets', 'teacher') + hint, fitnets_hint)
            steps['fitnets'] = (('nets', 'fitnets_hint'), fitnets)
        if 'attention' in self.baselines:
            steps['attention'] = (('nets', 'teacher') + maps, attention)
        if self.precomputed:
            steps['teacher_targets'] = (('nets', 'teacher'), lambda done: self.teacher_targets(
                done['nets'], done['teacher']))
        if self.baseline_precomputed:
            # After teacher_targets when both run: each runs one process per job.
            steps['baseline_targets'] = (('nets', 'teacher') + (soft or roi), lambda done:
                                         self.baseline_targets(done['nets'], done['teacher']))
        return steps
