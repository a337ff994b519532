"""The training budget of each row of the table, counted in images through the student.

Every student row is a chain of trainings, each with its solver's settings (netgen's nets,
cfg['solver'], cfg['batch_size']):

  Student w/ KD       stage 1, then stage 2
  Student w/o KD      the student on labels
  Stage 1 only        stage 1, then the student on labels from it
  Stage 2 only        stage 2 from the initial student
  FitNets             the hint stage (stage 1's solver), then the student on labels from it
  Attention transfer  labels + attention maps (the student's solver)

budget "schedules" trains each as its solver says (the demo's numbers per seed stay as they
were). budget "equal" gives every row the images the KD student saw, max_iter x train batch of
stage 1 plus stage 2: a row's last training runs for what its earlier trainings left of that,
rounded up to whole batches, and its learning-rate steps (stepsize, stepvalue) move with it in
proportion. The teacher's forward passes inside a net (stage 2 online, FitNets, attention
transfer) are not counted: they are the method's cost, not the student's training.
"""
import collections

BUDGETS = ('schedules', 'equal')

# row step -> its trainings in order, as (step name, solver's net).
ROW_TRAININGS = collections.OrderedDict((
    ('student', (('student', 'student'),)),
    ('stage1_only', (('stage1', 'stage1'), ('stage1_only', 'student'))),
    ('stage2_only', (('stage2_only', 'stage2'),)),
    ('fitnets', (('fitnets_hint', 'stage1'), ('fitnets', 'student'))),
    ('attention', (('attention', 'student'),)),
    ('stage2', (('stage1', 'stage1'), ('stage2', 'stage2'))),
))

Schedule = collections.namedtuple('Schedule', 'step net max_iter batch images solver')
Schedule.__doc__ = ('One training of a row: its step, the net whose solver and batch it takes, '
                    'its iterations, train batch, images (max_iter x batch) and the solver '
                    'fields that differ from that net\'s (empty: its own schedule)')


def kd_images(cfg):
    """Images through the KD student: stage 1 and stage 2, max_iter x train batch each."""
    return sum(cfg['solver'][net]['max_iter'] * cfg['batch_size'][net][0]
               for net in ('stage1', 'stage2'))


def scaled_solver(settings, max_iter):
    """The solver fields that move when `settings` trains for max_iter iterations: max_iter, and
    stepsize / stepvalue scaled by the same factor (at least 1, rounded)."""
    factor = float(max_iter) / settings['max_iter']
    out = {'max_iter': max_iter}
    if 'stepsize' in settings:
        out['stepsize'] = max(1, int(round(settings['stepsize'] * factor)))
    if settings.get('stepvalue'):
        out['stepvalue'] = [max(1, int(round(v * factor))) for v in settings['stepvalue']]
    return out


def row_schedules(cfg, budget='schedules', rows=None):
    """{row: [Schedule of each training]} of `rows` (default every row of ROW_TRAININGS) under
    `budget` (one of BUDGETS)."""
    if budget not in BUDGETS:
        raise ValueError('budget: %r is not one of %s' % (budget, ', '.join(BUDGETS)))
    total = kd_images(cfg)
    out = collections.OrderedDict()
    for row in rows or ROW_TRAININGS:
        trainings = ROW_TRAININGS[row]
        schedules, seen = [], 0
        for index, (step, net) in enumerate(trainings):
            settings, batch = cfg['solver'][net], cfg['batch_size'][net][0]
            max_iter, solver = settings['max_iter'], {}
            last = index == len(trainings) - 1
            if budget == 'equal' and last and row != 'stage2':
                max_iter = max(1, -(-(total - seen) // batch))  # whole batches, rounded up
                if max_iter != settings['max_iter']:
                    solver = scaled_solver(settings, max_iter)
            schedules.append(Schedule(step, net, max_iter, batch, max_iter * batch, solver))
            seen += max_iter * batch
        out[row] = schedules
    return out


def last_training_caps(cfg, budget, rows, factor):
    """{the last training of each row: iterations} that cap a converged row at `factor` x its
    images: factor x the row's images less those of its earlier trainings, in the last
    training's batches (rounded up). Under the equal budget every row is then capped at the same
    number of images; capping a row's last training at factor x its own max_iter instead would
    give a row of two trainings less room than a row of one."""
    caps = {}
    for schedules in row_schedules(cfg, budget, rows).values():
        earlier = sum(s.images for s in schedules[:-1])
        total = earlier + schedules[-1].images
        caps[schedules[-1].step] = max(1, -(-(factor * total - earlier) // schedules[-1].batch))
    return caps


def step_solvers(cfg, budget, rows):
    """{step: solver fields over its net's} of the trainings whose schedule `budget` changes."""
    return {s.step: s.solver for schedules in row_schedules(cfg, budget, rows).values()
            for s in schedules if s.solver}


def budget_text(schedules):
    """One row's budget for the table: '1200 x 32 + 2700 x 28 = 114000 images'."""
    parts = ['%d x %d' % (s.max_iter, s.batch) for s in schedules]
    return '%s = %d images' % (' + '.join(parts), sum(s.images for s in schedules))
