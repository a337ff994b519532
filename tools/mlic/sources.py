"""Where a run's data comes from, behind one interface: the demo's synthetic scenes with their
proposals and the ImageNet stand-in (DemoData), or a user's complete datalists (UserDatalists).

A source has
  steps()      {name: (the names it needs, callable(done) -> its Step)}: the shared steps every
               seed starts from, in the order one job runs them
  dataset(done)  the Dataset the per-seed steps read, from the results of those steps
  init(done)     the Init of the nets (init_weights and its fingerprint)
  user_data    whether a step's inputs that only a user's data has enter its fingerprint (left
               out for the demo, so that demo runs made before they existed still resume)
"""
import collections
import json
import os
import sys

from mlic import caffe_train
from mlic.net_settings import data_sizes, net_config, preset_config
from mlic.run_config import ConfigError
from mlic.steps import log

Dataset = collections.namedtuple('Dataset', 'key datalists classes_file test_boxes root_folder')
Dataset.__doc__ = ('The datalists every seed trains and tests on: key, their fingerprint; '
                   'datalists, {"train": path, "test": path}; classes_file; test_boxes (the '
                   "test split's ground-truth boxes, or None); root_folder, the prefix of "
                   'relative image paths')
Init = collections.namedtuple('Init', 'weights key')
Init.__doc__ = ('The .caffemodel the teacher and the students start from (None: from '
                'scratch) and its fingerprint')


def source_of(config, workspace, root):
    """The data source of a checked config: UserDatalists with [datalists], else DemoData."""
    if 'datalists' in config:
        return UserDatalists(config, workspace, root)
    return DemoData(config, workspace)


# The net settings the pretraining does not depend on: it sets its own sizes, data seed and
# batch, and trains the student net alone (no teacher, no KD losses).
PRETRAIN_INDEPENDENT = ('solver', 'batch_size', 'stage1_fc_frozen', 'soft_targets',
                        'roi_targets', 'num_classes', 'num_proposals', 'image_size', 'data_seed',
                        'datalists', 'name', 'max_pixels', 'scale_factors', 'score_scale',
                        'score_bias', 'teacher_scale', 'soft_scale', 'soft_loss_weight',
                        'distill_top_k', 'attention_targets', 'hint_targets')


class DemoData(object):
    """The demo: synthetic scenes ([data]), their proposals ([proposals]) and the ImageNet
    stand-in ([pretrain], optional)."""
    user_data = False

    def __init__(self, config, workspace):
        self.config, self.work = config, workspace

    def steps(self):
        steps = {'data': ((), lambda done: self.data()),
                 'proposals': (('data',), lambda done: self.proposals(done['data']))}
        if 'pretrain' in self.config:
            # It makes its own images: with two jobs it trains while the scenes and their
            # proposals are made, which is most of their time.
            steps['pretrain'] = ((), lambda done: self.pretrain())
        return steps

    def dataset(self, done):
        data, proposals = done['data'], done['proposals']
        return Dataset(proposals.key,
                       {s: os.path.join(proposals.dir, s + '.txt') for s in ('train', 'test')},
                       os.path.join(data.dir, 'classes.txt'),
                       os.path.join(data.dir, 'test_boxes.json'), '')

    def init(self, done):
        if 'pretrain' not in done:
            return Init(None, None)
        return Init(os.path.join(done['pretrain'].dir, 'backbone.caffemodel'),
                    done['pretrain'].key)

    def data(self):
        from mlic import synthetic
        settings = self.config['data']
        step = self.work.step('data', settings)

        def body(step):
            synthetic.generate(step.dir, num_classes=settings['num_classes'],
                               image_size=settings['image_size'],
                               object_size=tuple(settings['object_size']),
                               objects_per_image=tuple(settings['objects_per_image']),
                               num_train=settings['num_train'], num_test=settings['num_test'],
                               seed=settings['seed'])
        self.work.run_step(step, body, 'generating %(num_train)d + %(num_test)d synthetic '
                           'images of %(num_classes)d classes at %(image_size)d px' % settings)
        return step

    def proposals_step(self, data):
        """The proposals' Step of the data's Step: how many processes compute them changes
        nothing in them."""
        settings = self.config['proposals']
        return self.work.step('proposals', data.key,
                              {k: v for k, v in settings.items() if k != 'workers'})

    def proposals(self, data):
        from mlic import proposals
        settings = self.config['proposals']
        size = self.config['data']['image_size']
        step = self.proposals_step(data)

        def body(step):
            method = proposals.proposal_settings(settings['method'],
                                                 max_boxes=settings['bbox_num'],
                                                 beta=settings['beta'])
            for split in ('train', 'test'):
                proposals.complete_datalist(
                    os.path.join(data.dir, split + '.txt'),
                    os.path.join(step.dir, split + '.txt'), method,
                    os.path.join(self.work.folder, 'proposal_cache'), new_width=size,
                    new_height=size, bbox_num=settings['bbox_num'],
                    workers=settings['workers'], progress=self.work.progress)
        self.work.run_step(step, body, '%s proposals for every image (%d per image at most)'
                           % (settings['method'], settings['bbox_num']))
        return step

    def pretrain(self):
        """The demo's ImageNet stand-in: the student net (its own Interp, conv blocks, fc6, fc7)
        trained once, for every seed, to tell object-centric images of every shape x pattern
        pair at the student's input size; its weights without fc8 become init_weights."""
        from mlic import converters, netgen, surgery, synthetic
        settings = self.config['pretrain']
        effective = net_config(self.config, 1)
        size = effective['student_size']
        # The effective nets (the preset's under the config's [nets]), so that a change of the
        # preset redoes it too; not the solvers, batches, stage-1 choice or data sizes of the
        # nets it initialises: changing those must not redo the pretraining. It trains on the
        # preset's student solver: that one is in.
        trunk = {k: v for k, v in effective.items() if k not in PRETRAIN_INDEPENDENT}
        trunk['solver'] = preset_config(self.config)['solver']['student']
        step = self.work.step('pretrain', settings, trunk)
        backbone = os.path.join(step.dir, 'backbone.caffemodel')

        def body(step):
            datalist = synthetic.generate_pretraining(
                os.path.join(step.dir, 'data'), image_size=size,
                object_size=tuple(settings['object_size']), count=settings['num_images'],
                seed=settings['seed'])
            classes = converters.read_classes(converters.classes_path(datalist))
            cfg = net_config(self.config, len(classes))
            cfg.update(num_proposals=1, image_size=size, scale_factors=[1.0],
                       data_seed=settings['seed'], soft_targets=None, roi_targets=None,
                       attention_targets=None, hint_targets=None)
            cfg['batch_size']['student'] = (settings['batch_size'], settings['batch_size'])
            # On the preset's solver, not the configured student's: the fingerprint leaves the
            # nets' solvers out, so they must not reach the pretraining.
            cfg['solver']['student'] = dict(preset_config(self.config)['solver']['student'],
                                            **settings['solver'], random_seed=settings['seed'])
            files = netgen.write_nets(os.path.join(step.dir, 'nets'), cfg,
                                      datalists={'train': datalist, 'test': datalist},
                                      snapshot_dir=os.path.join(step.dir, 'snapshots'))
            gpus = self.config['gpus']
            final = caffe_train.train(files['student_solver'],
                                      os.path.join(step.dir, 'train.log'), label='pretrain',
                                      progress=self.work.training_progress(), cwd=step.dir,
                                      env=self.work.training_env(),
                                      gpu=gpus[0] if gpus else None)
            surgery.backbone(final, files['student_train'], backbone)
        self.work.run_step(step, body, 'the ImageNet stand-in: %d object-centric images at %d '
                           'px, %d iterations' % (settings['num_images'], size,
                                                  settings['solver']['max_iter']))
        return step


class UserDatalists(object):
    """A user's complete datalists ([datalists]) and init_weights, their paths resolved and
    checked to exist when the source is made (before any step runs)."""
    user_data = True

    def __init__(self, config, workspace, root):
        self.config, self.work = config, workspace
        self.where = config.get('config_path', 'config')
        self.paths = resolve_paths(config, root)

    def steps(self):
        return {'datalists': ((), lambda done: self.datalists())}

    def dataset(self, done):
        paths = self.paths
        return Dataset(done['datalists'].key, {s: paths[s] for s in ('train', 'test')},
                       paths['classes'], paths['test_boxes'], paths['root_folder'])

    def init(self, done):
        weights = self.paths['init_weights']
        return Init(weights, self.work.file_key(weights) if weights else None)

    def datalists(self):
        """The user's datalists, checked (every line, the image files, the boxes inside the
        resized image) and fingerprinted by content: a changed list reruns what follows."""
        from mlic import converters
        paths = self.paths
        image_size, bbox_num = data_sizes(self.config)
        files = ['train', 'test', 'classes'] + (['test_boxes'] if paths['test_boxes'] else [])
        contents = {key: self.work.file_key(paths[key]) for key in files}
        step = self.work.step('datalists', contents, paths['root_folder'], image_size, bbox_num)
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
        self.work.run_step(step, body, 'checking %s and %s (%d classes, boxes inside %d px, '
                           '%d proposals per image)' % (paths['train'], paths['test'],
                                                        len(classes), image_size, bbox_num))
        return step

    def check_datalist(self, split, classes, image_size):
        """The entries of one datalist, or ConfigError with every `file:line: field:
        reason` problem (datalist.scan_datalist's checks)."""
        from mlic import datalist
        path = self.paths[split]
        check_class_order(self.where, split, path, self.paths['classes'], classes)
        entries, problems = datalist.scan_datalist(path, len(classes), image_size, image_size,
                                                   self.paths['root_folder'])
        if entries.warning:
            log('warning: ' + entries.warning)
        if not problems:  # every image decoded now, not at the iteration that draws it
            problems = datalist.check_images(entries, self.paths['root_folder'],
                                             max_pixels=self.config['datalists']['max_pixels'],
                                             progress=sys.stderr)
        if problems:
            raise datalist_problems(self.where, split, path, problems, self.paths['classes'],
                                    len(classes))
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


def check_class_order(where, split, path, classes_file, classes):
    """A datalist with its own .classes beside it must have the config's class order."""
    from mlic import converters
    beside = converters.classes_path(path)
    if os.path.isfile(beside) and os.path.abspath(beside) != classes_file:
        own = converters.read_classes(beside)
        if own != classes:
            raise ConfigError(
                '%s: datalists.%s: %s has the class order %s (%d classes) beside it, but '
                'datalists.classes is %s (%d classes): the labels would be read in the '
                'wrong order' % (where, split, path, beside, len(own), classes_file,
                                 len(classes)))


def datalist_problems(where, split, path, problems, classes_file, num_classes):
    """The ConfigError of a datalist's `file:line: field: reason` problems."""
    from mlic import datalist
    hint = ''
    if any(': fields: ' in p for p in problems):
        hint = ('\n(every line needs one label per class of %s: %d; then 5 numbers per '
                'proposal)' % (classes_file, num_classes))
    return ConfigError('%s: datalists.%s: %s has %d problems:\n%s%s'
                       % (where, split, path, len(problems), datalist.DatalistError(problems),
                          hint))


def datalist_sizes(path, num_classes, cache_folder=None):
    """datalist.datalist_sizes of a list, kept in cache_folder/datalist_sizes.json (when that
    folder exists) by the list's size and mtime: a resumed run does not read an unchanged list
    again (a COCO train list takes about a minute)."""
    from mlic import datalist
    if not cache_folder or not os.path.isdir(cache_folder):
        return datalist.datalist_sizes(path, num_classes)
    cache_path = os.path.join(cache_folder, 'datalist_sizes.json')
    stat = os.stat(path)
    stamp = [stat.st_size, stat.st_mtime_ns, num_classes]
    cache = {}
    if os.path.exists(cache_path):
        with open(cache_path) as f:
            cache = json.load(f)
    if cache.get(path, {}).get('stamp') == stamp:
        return cache[path]['sizes']
    sizes = datalist.datalist_sizes(path, num_classes)
    cache[path] = {'stamp': stamp, 'sizes': sizes}
    with open(cache_path + '.tmp', 'w') as f:
        json.dump(cache, f, indent=1)
    os.replace(cache_path + '.tmp', cache_path)
    return sizes


def with_data_sizes(config, root, cache_folder=None):
    """A user's checked config with the sizes its datalists fix: datalists.bbox_num (the most
    proposals on a line) and datalists.image_size (the largest box corner + 1) of the train and
    test lists, where the config leaves them out; config['from_data'] names the keys so set
    (their origin: "datalist"). An image_size too small for the boxes is refused, naming the
    line. The demo's config, or one done already, is returned as it is. cache_folder: the run
    folder (datalist_sizes' cache)."""
    from mlic import converters, datalist
    if 'datalists' not in config or 'from_data' in config:
        return config
    where = config.get('config_path', 'config')
    paths = resolve_paths(config, root)
    try:
        classes = converters.read_classes(paths['classes'])
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError('%s: datalists.classes: %s' % (where, error))
    found = {}
    for split in ('train', 'test'):  # each list as the datalists step checks it
        check_class_order(where, split, paths[split], paths['classes'], classes)
        try:
            found[split] = datalist_sizes(paths[split], len(classes), cache_folder)
        except datalist.DatalistError as error:
            raise datalist_problems(where, split, paths[split], error.problems,
                                    paths['classes'], len(classes))
        except ValueError as error:
            raise ConfigError('%s: datalists.%s: %s' % (where, split, error))
    widest = max(found, key=lambda split: found[split]['min_image_size'])
    lower = found[widest]['min_image_size']
    corner = '%s:%d' % (paths[widest], found[widest]['corner_line'])
    config = dict(config, datalists=dict(config['datalists']), from_data={})
    lists = config['datalists']
    log('%s: %d classes (%s), up to %d proposals a line, boxes up to pixel %d (%s)'
        % (where, len(classes), paths['classes'],
           max(f['num_proposals'] for f in found.values()), lower - 1, corner))
    if 'bbox_num' not in lists:
        lists['bbox_num'] = max(f['num_proposals'] for f in found.values())
        config['from_data']['datalists.bbox_num'] = 'datalist'
    if 'image_size' in lists:
        if lists['image_size'] < lower:
            raise ConfigError(
                '%s: datalists.image_size: %d px is too small for the proposals: %s: a box '
                'reaches pixel %d; the lists were made for larger images: set image_size to '
                "compute_proposals.py's --new-size" % (where, lists['image_size'], corner,
                                                       lower - 1))
    else:
        lists['image_size'] = lower
        config['from_data']['datalists.image_size'] = 'datalist'
        log('note: datalists.image_size = %d px, from the largest box corner (%s): a lower '
            "bound; if compute_proposals.py's --new-size was larger, set image_size to it"
            % (lower, corner))
    return config


def resolve_paths(config, root):
    """The user data's paths made absolute (relative ones are relative to `root`), every file
    checked to exist; errors name the config file and the key."""
    from mlic import converters
    where = config.get('config_path', 'config')
    lists = config['datalists']

    def existing(key, path, what):
        full = os.path.join(root, path)
        if not os.path.isfile(full):
            raise ConfigError('%s: %s: %s %s does not exist' % (where, key, what, full))
        return os.path.abspath(full)
    paths = {split: existing('datalists.' + split, lists[split], 'datalist')
             for split in ('train', 'test')}
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
    paths['init_weights'] = (existing('init_weights', config['init_weights'], 'weights file')
                             if config.get('init_weights') else None)
    return paths
