"""The whole method on one dataset: teacher, two distillation stages, baselines, evaluation.

Every step writes under the run folder and is skipped when its outputs are complete, so an
interrupted run resumes; a step whose settings changed runs again, and so do the steps after it.
A training's settings are the text of its own net and solver: a new stage-1 learning rate reruns
stage 1 and the students that start from it, not the teacher. STEP_HELP says what each does.

The parts: mlic.run_config (the config's schema), mlic.net_settings (the nets' settings from
the preset), mlic.sources (the demo's data or the user's datalists), mlic.seed_steps and
mlic.evaluation_steps (one seed's steps), mlic.steps (the runner and the fingerprints),
mlic.devices (CPU or GPUs), mlic.report (the table and figures).
"""
import functools
import os
import time

from mlic import caffe_train, converged, devices, run_config, sources
from mlic.net_settings import net_config  # noqa: F401  (the pipeline's API)
from mlic.report import BASELINE_TRAININGS, TRAININGS  # noqa: F401
from mlic.run_config import ConfigError, load_config  # noqa: F401
from mlic.seed_steps import SEED_STEPS, SeedSteps, baseline_precomputed, precomputed
from mlic.steps import Workspace, check_location, log, run_graph

OPTIONAL_TRAININGS = [step for steps in BASELINE_TRAININGS.values() for step in steps]

# Every step's name and what it does, in the order of a run: the tools' --help lists them.
STEP_HELP = (
    ('data', 'demo: the synthetic dataset ([data])'),
    ('proposals', 'demo: EdgeBoxes proposals -> the train and test datalists ([proposals])'),
    ('pretrain', "demo: the ImageNet stand-in ([pretrain]): the student net trained on "
                 'object-centric images; without fc8 it initialises every net'),
    ('datalists', "your data: the [datalists] checked line by line, fingerprinted by content"),
    ('val_split', 'with validation set: the train list split into train\' and a validation '
                  'list (never the test list; docs/converged.md)'),
    ('nets', 'per seed: the nets and solvers (tools/mlic/netgen.py), one copy per training'),
    ('teacher', 'the WSDDN teacher, trained on image labels'),
    ('teacher_targets', 'with nets.soft_targets or nets.roi_targets = "precomputed": the '
                        "teacher's stage-2 scores / stage-1 RoI features of every train image"),
    ('baseline_targets', 'with a baseline and nets.attention_targets or nets.hint_targets = '
                         '"precomputed": the teacher\'s attention maps / last conv features of '
                         'every train image'),
    ('stage1', "KD stage 1: the student's RoI features regress the teacher's"),
    ('stage2', "KD stage 2 from stage 1: labels + the teacher's soft scores"),
    ('student', 'the same student on labels only ("w/o KD")'),
    ('stage1_only', 'ablation: stage 1, then labels only'),
    ('stage2_only', 'ablation: stage 2 from the initial student'),
    ('fitnets_hint', 'with baselines = ["fitnets"]: FitNets\' hint stage, the student\'s last '
                     "conv features regress the teacher's"),
    ('fitnets', 'FitNets: labels only from the hint stage'),
    ('attention', 'with baselines = ["attention"]: labels + attention transfer from the '
                  'teacher'),
    ('teacher_eval', "the teacher's classification, detection mAP and CorLoc on the test split "
                     '(detection needs test boxes); runs beside the last students'),
    ('evaluate', 'every student on the test split, the teacher beside them'),
    ('report', 'the table (results.md, results.json), training curves, top-3 figure'),
)


def steps_help(kind=None):
    """The step list of --help: every step, or a kind's (run_config.DEMO or USER)."""
    skip = {run_config.DEMO: ('datalists',),
            run_config.USER: ('data', 'proposals', 'pretrain')}.get(kind, ())
    import textwrap
    lines = []
    for name, text in STEP_HELP:
        if name not in skip:
            text = text.replace('demo: ', '').replace('your data: ', '')
            lines += textwrap.wrap(text, 99, initial_indent='  %-17s' % name,
                                   subsequent_indent=' ' * 19)
    return '\n'.join(lines)


def add_run_arguments(parser):
    """The command-line options of a run that tools/demo.py and tools/run_pipeline.py share;
    apply_run_arguments puts them into the config."""
    parser.add_argument('--seeds', help='comma-separated training seeds (default: the config\'s)')
    parser.add_argument('--jobs', type=int, help='trainings run at once (default: the config\'s '
                        'jobs, else 1); each gets cores/jobs BLAS threads')
    parser.add_argument('--gpus', help='comma-separated GPU ids for every step that runs a net '
                                       '(default: the config\'s gpus, else the CPU)')
    parser.add_argument('--folder', help='run folder (default: the config\'s folder)')
    parser.add_argument('--baselines', help='comma-separated classic distillation rows to add: '
                        'fitnets, attention ("" for none; default: the config\'s baselines)')
    parser.add_argument('--budget', choices=('schedules', 'equal'),
                        help='"equal": every student row sees as many images as stage 1 + '
                             'stage 2 (default: the config\'s budget)')
    parser.add_argument('--validation', type=float,
                        help='fraction of the train list held out as the validation split '
                             '(default: the config\'s validation, else none)')
    parser.add_argument('--schedule', choices=('fixed', 'converged'),
                        help='"converged": each student until its validation mAP stops rising, '
                             'then its best snapshot (docs/converged.md; default: the config\'s '
                             'schedule)')
    parser.add_argument('--print-config', action='store_true',
                        help='print every setting the run would use, with where it comes from '
                             '(the config file, the nets\' preset or the default), and exit')


def run_overrides(args):
    """The config values that the shared options set: a dict for load_config's overrides."""
    overrides = {}
    if args.jobs is not None:
        overrides['jobs'] = args.jobs
    if args.gpus is not None:
        overrides['gpus'] = [int(g) for g in args.gpus.split(',') if g.strip()]
    if getattr(args, 'baselines', None) is not None:
        overrides['baselines'] = [b.strip() for b in args.baselines.split(',') if b.strip()]
    if getattr(args, 'budget', None) is not None:
        overrides['budget'] = args.budget
    if getattr(args, 'validation', None) is not None:
        overrides['validation'] = args.validation
    if getattr(args, 'schedule', None) is not None:
        overrides['schedule'] = args.schedule
    return overrides


def seeds_argument(args):
    """The --seeds list (None: the config's)."""
    return [int(s) for s in args.seeds.split(',')] if args.seeds else None


class Pipeline(object):
    """Runs the steps of STEP_HELP for one config (run_config.load_config's); see run().

    root: what relative paths of the config are relative to (the repository root)."""

    def __init__(self, config, folder=None, progress=True, root=None):
        self.config = run_config.check(config, config.get('config_path', 'config'))
        self.where = self.config.get('config_path', 'config')
        self.root = root or caffe_train.ROOT
        if folder:
            folder = os.path.abspath(folder)
        else:
            folder = os.path.abspath(os.path.join(self.root, self.config['folder']))
        devices.check_gpus(self.config['gpus'], self.where)
        converged.check(self.config, self.where)
        check_location(folder)
        # The nets' sizes that a user's datalists fix, read (and checked) before any step runs
        # and before the run folder is made (cached there from the second run on).
        self.config = sources.with_data_sizes(self.config, self.root, folder)
        self.work = Workspace(folder, self.config['jobs'], progress)
        self.folder = folder
        self.source = sources.source_of(self.config, self.work, self.root)

    def step_names(self):
        """Every step's name, in order (what run()'s `steps` may name)."""
        baselines = [step for name in self.config['baselines']
                     for step in BASELINE_TRAININGS[name]]
        per_seed = [name for name in SEED_STEPS
                    if (name != 'teacher_targets' or precomputed(self.config))
                    and (name != 'baseline_targets' or baseline_precomputed(self.config))
                    and (name not in OPTIONAL_TRAININGS or name in baselines)]
        return list(self.source.steps()) + per_seed + ['report']

    def run(self, seeds=None, steps=None):
        """Runs every step, or only those named in `steps` and the steps they need (each
        skipped when complete). Returns the results table when the report is made."""
        seeds = list(seeds or self.config['seeds'])
        known = self.step_names()
        steps = list(steps or known)
        unknown = [name for name in steps if name not in known]
        if unknown:
            raise ConfigError('no step %r (steps: %s)' % (unknown[0], ', '.join(known)))
        start = time.time()
        if self.source.user_data and not self.config.get('init_weights'):
            log('WARNING: %s sets no init_weights: the teacher and every student train from '
                'scratch, where the method starts them from ImageNet VGG16' % self.where)
        write_effective_config(self.config, self.folder)
        shared = self.source.steps()
        done = run_graph(shared, list(shared), self.work.jobs, order=list(shared).index)
        dataset = self.source.dataset(done)
        if self.config.get('validation') is not None:
            dataset = converged.split_dataset(self.work, dataset, self.config)
        seed_steps = SeedSteps(self.work, self.config, dataset,
                               self.source.init(done), self.source.user_data, self.root)
        targets = ['evaluate'] if 'report' in steps else [s for s in steps if s in SEED_STEPS]
        done = run_seeds(seed_steps, seeds, targets, self.work.jobs) if targets else {}
        report = None
        if 'report' in steps:
            from mlic import evaluation_steps, report as reporting
            nets = done[(seeds[0], 'nets')]
            report = reporting.write_report(
                self.folder, seeds, [done[(seed, 'evaluate')] for seed in seeds],
                evaluation_steps.test_set(seed_steps.data, nets), nets.classes,
                self.work.timings, self.where, row_budgets(nets.cfg, self.config))
        log('pipeline finished in %.0f s; results in %s' % (time.time() - start, self.folder))
        return report


def run_seeds(seed_steps, seeds, targets=('evaluate',), jobs=1):
    """Runs the steps of every seed that `targets` need, up to `jobs` at a time; returns
    {(seed, step name): result} of the steps run."""
    def by_name(run, done):
        return run({name: result for (_, name), result in done.items()})

    graph = {}
    for seed in seeds:
        for name, (needs, run) in seed_steps.graph(seed).items():
            graph[(seed, name)] = ([(seed, need) for need in needs],
                                   functools.partial(by_name, run))
    wanted = [(seed, name) for seed in seeds for name in targets]
    # Among the steps ready at once: the earliest in SEED_STEPS first (teachers before the
    # students that wait for them), then the lower seed.
    order = lambda key: (SEED_STEPS.index(key[1]), seeds.index(key[0]))  # noqa: E731
    return run_graph(graph, wanted, jobs, order)


def row_budgets(cfg, config):
    """(budget name, {row step: 'iterations x batch + .. = images'}) of the report's rows."""
    from mlic import budget
    rows = [row for row in budget.ROW_TRAININGS
            if row in TRAININGS or row in config['baselines']]
    schedules = budget.row_schedules(cfg, config['budget'], rows)
    return config['budget'], {row: budget.budget_text(s) for row, s in schedules.items()}


def write_effective_config(config, folder):
    """The run folder's effective_config.toml: every setting the run uses and its origin."""
    from mlic import config_examples
    with open(os.path.join(folder, 'effective_config.toml'), 'w') as f:
        f.write(config_examples.effective_toml(config))
