"""The pipeline's config: one schema of every key (its type, default and one line of help) that
loads a TOML file, checks every value's type, fills the defaults, and documents the keys for the
tools' --help and the example configs (mlic.config_examples).

Two kinds of config share it: the demo's (the synthetic [data], its [proposals], the [pretrain]
stand-in of ImageNet; tools/demo.py) and a user's ([datalists] and init_weights;
tools/run_pipeline.py). Both have the [nets] table: the preset's nets (netgen.FULL or
netgen.SMALL) with any key of it overridden; a key the user leaves out follows the preset.
"""
import collections
import copy

from mlic.preprocess import DEFAULT_MAX_PIXELS

DEMO, USER = 'demo', 'user'
REQUIRED = object()  # a key without a default
PRESET = object()    # a [nets] key whose default is the preset's value


class ConfigError(ValueError):
    """A config that cannot be run: names the config file and the key."""


class Kind(collections.namedtuple('Kind', 'name check')):
    """A value type: `name` is what errors and the help call it; check(value) -> bool."""


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _list_of(check, length=None):
    return lambda v: (isinstance(v, list) and all(check(x) for x in v)
                      and (length is None or len(v) == length))


def choice(*names):
    return Kind('one of ' + ', '.join('"%s"' % n for n in names), lambda v: v in names)


WHOLE = Kind('a whole number', _whole)
NON_NEGATIVE = Kind('a whole number >= 0', lambda v: _whole(v) and v >= 0)
POSITIVE = Kind('a whole number >= 1', lambda v: _whole(v) and v >= 1)
NUMBER = Kind('a number', _number)
TEXT = Kind('a string', lambda v: isinstance(v, str))
FLAG = Kind('true or false', lambda v: isinstance(v, bool))
WHOLES = Kind('a list of whole numbers', _list_of(_whole))
NUMBERS = Kind('a list of numbers', _list_of(_number))
PAIR = Kind('a pair [a, b] of whole numbers', _list_of(_whole, 2))
RANGE = Kind('a range [low, high] of numbers', _list_of(_number, 2))
FILLER = Kind('a Caffe filler table, e.g. {type = "msra"}',
              lambda v: isinstance(v, dict) and isinstance(v.get('type'), str))
PARAMS = Kind('[[lr_mult, decay_mult] of weights, [lr_mult, decay_mult] of biases]',
              _list_of(_list_of(_number, 2), 2))
SOLVER = Kind('a table of Caffe SolverParameter fields', lambda v: isinstance(v, dict))
BASELINES = ('fitnets', 'attention')
BASELINE_LIST = Kind('a list of ' + ', '.join('"%s"' % n for n in BASELINES),
                     lambda v: isinstance(v, list) and all(x in BASELINES for x in v))


class Key(collections.namedtuple('Key', 'name kind default help')):
    """One config key: its name, Kind, default (REQUIRED, PRESET, None: unset) and help."""


NETS = ('wsddn', 'stage1', 'stage2', 'student')
# The solver fields the user example lists, with their help.
SOLVER_EXAMPLE_FIELDS = collections.OrderedDict((
    ('base_lr', 'learning rate'),
    ('max_iter', 'iterations'),
    ('stepsize', 'the learning rate drops tenfold every stepsize iterations'),
    ('snapshot', 'a snapshot every snapshot iterations: an interrupted training resumes there'),
))

# Section name -> keys; '' is the top level. Which sections a config kind has: SECTIONS.
SCHEMA = {
    '': [
        Key('folder', TEXT, REQUIRED, 'where the run writes everything; a rerun resumes there'),
        Key('seeds', WHOLES, [1], 'one training of every net per seed; the table gives mean '
                                  'and std'),
        Key('jobs', POSITIVE, 1, 'trainings at once (steps that do not need each other); each '
                                 'gets cores/jobs BLAS threads'),
        Key('gpus', WHOLES, [], 'GPU ids for every step that runs a net (training, the '
                                "teacher's targets, evaluation); [] runs on the CPU"),
        Key('init_weights', TEXT, None, 'ImageNet VGG16 .caffemodel: the teacher and the '
                                        'students start from its conv1_1 .. fc7'),
        Key('baselines', BASELINE_LIST, [], 'classic distillation rows from the same teacher '
            '(docs/baselines.md): "fitnets" (hint stage, then labels), "attention" (attention '
            'transfer)'),
        Key('budget', choice('schedules', 'equal'), 'schedules', '"schedules": each training '
            'as its solver says; "equal": every student row sees as many images as stage 1 + '
            'stage 2 (tools/mlic/budget.py)'),
        Key('validation', NUMBER, None, 'fraction of the train list held out of every training '
            'as a validation split (e.g. 0.1; unset: none); every snapshot of each student is '
            'evaluated on it (docs/converged.md)'),
        Key('validation_seed', WHOLE, 0, 'seed of the validation split (stratified by each '
                                         "image's rarest label)"),
        Key('schedule', choice('fixed', 'converged'), 'fixed', '"fixed": each training as its '
            'solver says; "converged": each student until its validation mAP stops rising, '
            'then its best snapshot (needs validation; docs/converged.md)'),
        Key('converged_every', POSITIVE, 200, 'converged: iterations between two evaluations '
                                              'on the validation split'),
        Key('converged_patience', POSITIVE, 6, 'converged: stop after this many evaluations '
                                               'in a row without a rise of the best'),
        Key('converged_delta', NUMBER, 0.2, 'converged: a rise counts when the best '
                                            'validation mAP grows by more than this (mAP points)'),
        Key('converged_cap', POSITIVE, 4, "converged: at most this x the row's training "
                                          "images (a row's last training: less its earlier "
                                          "trainings')"),
    ],
    'datalists': [
        Key('train', TEXT, REQUIRED, 'complete train datalist: image, labels, proposals '
                                     '(tools/compute_proposals.py)'),
        Key('test', TEXT, REQUIRED, 'complete test datalist: the split every net is '
                                    'evaluated on'),
        Key('classes', TEXT, None, 'class names in label order (default: the .classes file '
                                   'beside the train list)'),
        Key('root_folder', TEXT, '', 'prefix of relative image paths in the lists ("": the '
                                     'repository root)'),
        Key('test_boxes', TEXT, None, "ground-truth boxes of the test images: the teacher's "
                                      'detection mAP and CorLoc'),
        Key('bbox_num', POSITIVE, None, 'proposals per image the nets take '
                                        '(compute_proposals.py --bbox-num; unset: the most on '
                                        'a line of the lists)'),
        Key('image_size', POSITIVE, None, "the teacher's input; the proposals are in its "
                                          'pixels (--new-size; unset: the largest box corner + '
                                          '1 in the lists, a lower bound)'),
        # The data layer's guard against decompression bombs; one key for the check before the
        # run, the data layer and the evaluation.
        Key('max_pixels', NON_NEGATIVE, DEFAULT_MAX_PIXELS, 'images with more pixels are '
                                                            'refused (0: no limit)'),
    ],
    'data': [
        Key('num_classes', POSITIVE, 10, 'classes (shape x pattern pairs) of the synthetic '
                                         'scenes'),
        Key('image_size', POSITIVE, 192, "generated at the teacher's input size (672 in the "
                                         'paper)'),
        Key('object_size', RANGE, [14, 44], 'object side range in pixels: small objects, as '
                                            'in MS-COCO'),
        Key('objects_per_image', PAIR, [1, 4], 'objects per scene, lowest and highest'),
        Key('num_train', POSITIVE, 1600, 'train images'),
        Key('num_test', POSITIVE, 400, 'test images'),
        Key('seed', WHOLE, 7, 'seed of the generator: one dataset for every training seed'),
    ],
    'proposals': [
        Key('method', choice('edgeboxes', 'selective_search'), 'edgeboxes',
            'proposal method (tools/mlic/proposals.py)'),
        Key('bbox_num', POSITIVE, 48, 'B, proposals per image at most; the data layer pads '
                                      'images with fewer'),
        Key('beta', NUMBER, 0.55, "EdgeBoxes' NMS threshold (0.55: its authors' setting for "
                                  'IoU 0.5)'),
        Key('workers', POSITIVE, 1, 'processes computing them (not part of the fingerprint)'),
    ],
    'pretrain': [
        Key('num_images', POSITIVE, 6000, 'object-centric images of every shape x pattern pair'),
        Key('object_size', RANGE, [16, 60], 'object side range in pixels, at nets.student_size'),
        Key('seed', WHOLE, 5, 'seed of its images and its solver'),
        Key('batch_size', POSITIVE, 32, 'images per iteration'),
        Key('solver', SOLVER, {}, "Caffe SolverParameter fields over the preset's student "
                                  'solver'),
    ],
    'nets': [
        Key('preset', choice('full', 'small'), None, '"full": VGG16 as the original '
            '(netgen.FULL); "small": the small nets (netgen.SMALL); unset: "full" with '
            '[datalists], "small" for the demo'),
        Key('name', TEXT, PRESET, 'short name, used in snapshot prefixes'),
        Key('student_size', POSITIVE, PRESET, "the student's input after Interp"),
        Key('block_channels', WHOLES, PRESET, 'output channels of the conv blocks (2x2 max '
                                              'pooling after each but the last)'),
        Key('block_convs', WHOLES, PRESET, '3x3 convolutions per block'),
        Key('fc_size', POSITIVE, PRESET, 'outputs of fc6 and fc7'),
        Key('pooled_size', POSITIVE, PRESET, 'RoI pooling output; = student_size / '
                                             '2**len(block_channels)'),
        Key('score_scale', NUMBER, PRESET, "the RoI pooling's proposal-score factor"),
        Key('score_bias', NUMBER, PRESET, "the RoI pooling's proposal-score bias"),
        Key('dropout_ratio', NUMBER, PRESET, 'of drop6 / drop7'),
        # The original's convolutions have no filler: they always start from ImageNet VGG16.
        Key('conv_filler', FILLER, PRESET, 'weight filler of the 3x3 convolutions'),
        # Nets trained from scratch need it: there fc6 reads non-negative, uncentred pool
        # features, so each unit is on for nearly every image or for none, a small bias drift
        # switches them all off and the output stops depending on the image. Named
        # <conv>_bn / <conv>_scale so that they follow their convolution through the teacher
        # renaming and the weight surgery; the KD nets' frozen teacher uses its statistics.

        Key('batch_norm', FLAG, PRESET, 'BatchNorm + Scale after every 3x3 convolution and '
                                        'fc6 / fc7 (the original has none)'),
        # The original's [[10, 10], [20, 0]] is a fine-tuning setting for new layers on an
        # ImageNet backbone.
        Key('head_params', PARAMS, PRESET, 'lr_mult, decay_mult of the classifiers\' weights '
                                           'and biases'),
        Key('head_filler', FILLER, PRESET, 'weight filler of the classifiers fc8_c, fc8_d, '
                                           'fc8_mscoco'),
        Key('scale_factors', NUMBERS, PRESET, "the teacher's multi-scale training"),
        Key('mean_value', NUMBERS, PRESET, 'B, G, R means subtracted from the pixels'),
        Key('input_scale', NUMBER, PRESET, 'factor on the pixels after mean subtraction (1: '
                                           'the original\'s raw pixels)'),
        Key('teacher_scale', NUMBER, PRESET, "stage 2: factor on the teacher's logits (2: T "
                                             '= 0.5)'),
        Key('soft_scale', NUMBER, PRESET, "stage 2: factor on the student's logits for the "
                                          'soft loss (0.2: T = 5)'),
        Key('soft_loss_weight', NUMBER, PRESET, 'stage 2: loss_weight of the soft loss'),
        Key('distill_top_k', WHOLE, PRESET, "stage 1: RoIDistillationLoss's top_k (0: every "
                                            'proposal)'),
        # Frozen (the paper's slides: only the convolutions learn), fc6/fc7 stay the ones
        # stage 2 applies to pool5 instead of becoming a regressor of RoI features; frozen, their
        # BatchNorm uses its stored statistics and no dropout follows them.
        Key('stage1_fc_frozen', FLAG, PRESET, "stage 1: the student's fc6/fc7 keep their "
                                              'initial weights (false: trained, as released)'),
        Key('soft_targets', choice('online', 'precomputed'), PRESET,
            'stage 2: the teacher runs in the net ("online") or its scores are computed once'),
        Key('roi_targets', choice('online', 'precomputed'), PRESET,
            "stage 1: the same for the teacher's RoI features (lines x 2 x bbox_num x "
            'fc_size floats on disk)'),
        # The baselines' data layer reads every image at one size (only the side is random),
        # so the teacher's map of an image and side is always the same: exact to precompute.
        Key('attention_targets', choice('online', 'precomputed'), PRESET,
            "attention transfer: the teacher's attention map computed in the net or once per "
            'train image and side (lines x 2 x H x W floats)'),
        Key('hint_targets', choice('online', 'precomputed'), PRESET,
            "FitNets' hint stage: the same for the teacher's last conv features (lines x 2 x "
            'C x H x W floats on disk)'),
    ],
    'nets.batch_size': [Key(net, PAIR, PRESET, '(train, test) images per iteration of %s'
                            % what) for net, what in zip(NETS, (
                                'the teacher', 'KD stage 1', 'KD stage 2 and stage 2 only',
                                'the student without KD and stage 1 only'))],
    'nets.solver': [Key(net, SOLVER, PRESET, 'Caffe SolverParameter fields of the %s net '
                        '(enums by name); random_seed is the run\'s seed' % net)
                    for net in NETS],
}

# The sections of each kind of config, in the order of the example files and the help.
SECTIONS = {
    DEMO: ('', 'data', 'proposals', 'pretrain', 'nets', 'nets.batch_size', 'nets.solver'),
    USER: ('', 'datalists', 'nets', 'nets.batch_size', 'nets.solver'),
}
OPTIONAL_SECTIONS = ('pretrain',)  # a demo config without [pretrain] trains from scratch
# The demo makes its own init_weights (the [pretrain] step).
USER_ONLY_TOP = ('init_weights',)
# Set by the data, never by [nets]: its classes file, bbox_num, image_size and max_pixels, and
# the seed.
NET_KEYS_FROM_DATA = ('num_classes', 'num_proposals', 'image_size', 'data_seed', 'datalists',
                      'max_pixels')


def keys_of(section, kind):
    """{name: Key} of a section in a kind of config."""
    keys = SCHEMA[section]
    if section == '' and kind == DEMO:
        keys = [key for key in keys if key.name not in USER_ONLY_TOP]
    return collections.OrderedDict((key.name, key) for key in keys)


def kind_of(config):
    """USER for a config with [datalists], else DEMO."""
    return USER if 'datalists' in config else DEMO


def check_value(key, value, where):
    if not key.kind.check(value):
        raise ConfigError('%s: %s: %r is not %s (%s)' % (where, key.name, value, key.kind.name,
                                                          key.help))


def check(config, where='config'):
    """Checks every key's name and type against the schema and fills the defaults of the
    sections that are not [nets] (those follow the preset: net_settings.net_config). Returns the
    checked config (a copy) with 'given', the values before the defaults (what the file set),
    and 'config_path' when the config has one; errors name the config file and the dotted key."""
    config = copy.deepcopy(config)
    path, given = config.pop('config_path', None), config.pop('given', None)
    overrides = config.pop('overrides', None)
    from_data = config.pop('from_data', None)
    kind = kind_of(config)
    out = collections.OrderedDict()
    sections = [s for s in SECTIONS[kind] if '.' not in s]
    for section in sections:
        if section and section not in config:
            if section in OPTIONAL_SECTIONS or section == 'nets':
                continue
            table = {}
        else:
            table = config if section == '' else config[section]
        if not isinstance(table, dict):
            raise ConfigError('%s: %s: is a value, not a [%s] table' % (where, section, section))
        out_table = _checked_table(table, section, kind, where, top=section == '')
        if section == '':
            out.update(out_table)
        else:
            out[section] = out_table
    unknown = [name for name in config if name not in out and name not in sections]
    if unknown:
        raise ConfigError('%s: %s: unknown key (known: %s)'
                          % (where, unknown[0], ', '.join(s for s in list(keys_of('', kind))
                                                          + sections if s)))
    if path is not None:  # a config checked again keeps what its file set
        out['config_path'] = path
    out['given'] = config if given is None else given
    if overrides is not None:
        out['overrides'] = overrides
    if from_data is not None:  # the sizes read from the datalists (sources.with_data_sizes)
        out['from_data'] = from_data
    return out


def _checked_table(table, section, kind, where, top=False):
    keys = keys_of(section, kind)
    prefix = section + '.' if section else ''
    out = collections.OrderedDict()
    for name, value in table.items():
        if top and (isinstance(value, dict) and name in SCHEMA):
            continue  # a section, checked on its own
        if name not in keys:
            if section == 'nets' and name in ('batch_size', 'solver'):
                out[name] = _checked_nets_table(value, name, where)
                continue
            if section == 'nets' and name in NET_KEYS_FROM_DATA:
                raise ConfigError('%s: nets.%s: set by the data (the classes file, [datalists] '
                                  'bbox_num, image_size and max_pixels) and the seed, not by '
                                  '[nets]' % (where, name))
            if top and name in SCHEMA:
                raise ConfigError('%s: %s: is a value, not a [%s] table' % (where, name, name))
            known = list(keys) + (['batch_size', 'solver'] if section == 'nets' else [])
            raise ConfigError('%s: %s%s: unknown key (known: %s)'
                              % (where, prefix, name, ', '.join(known)))
        check_value(keys[name]._replace(name=prefix + name), value, where)
        out[name] = copy.deepcopy(value)
    if section != 'nets':
        for name, key in keys.items():
            if name in out:
                continue
            if key.default is REQUIRED:
                raise ConfigError('%s: %s%s: missing (%s)' % (where, prefix, name, key.help))
            if key.default is not None and key.default is not PRESET:
                out[name] = copy.deepcopy(key.default)
    return out


def _checked_nets_table(table, name, where):
    section = 'nets.' + name
    if not isinstance(table, dict):
        raise ConfigError('%s: %s: is a value, not a [%s] table' % (where, section, section))
    keys = keys_of(section, USER)
    for net, value in table.items():
        if net not in keys:
            raise ConfigError('%s: %s.%s: not a net (one of %s)'
                              % (where, section, net, ', '.join(NETS)))
        check_value(keys[net]._replace(name='%s.%s' % (section, net)), value, where)
    return copy.deepcopy(table)


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


def _overlay(base, top):
    """`top`'s tables merged into `base`'s (a preset's tables; the schema checks the result)."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _overlay(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# Tables of a config that apply on top of it only when a tool's option asks for them
# (tools/demo.py --benchmark, --quick), in this order when both do.
PRESETS = ('benchmark', 'quick')


def load_config(path, presets=(), overrides=None, kind=None):
    """The checked config of a TOML file: its preset tables named in `presets` (of PRESETS:
    [benchmark], [quick]) applied on top, then `overrides` (a dict of the same shape), the types
    checked and the defaults filled. The file's own values are kept under 'given' (before the
    defaults: what the user set). kind=USER: a config without [datalists] is an error."""
    import tomllib
    with open(path, 'rb') as f:
        config = tomllib.load(f)
    if kind == USER and 'datalists' not in config:
        raise ConfigError('%s: datalists: missing (the [datalists] table names your train and '
                          'test lists; tools/demo.py runs the synthetic demo)' % path)
    tables = {}
    for name in PRESETS:
        tables[name] = config.pop(name, {})
        if not isinstance(tables[name], dict):
            raise ConfigError('%s: %s: is a value, not a [%s] table' % (path, name, name))
        if kind == USER and tables[name]:
            raise ConfigError('%s: [%s]: only the demo\'s config has preset tables (tools/demo.py '
                              '--%s); set the keys in your config itself' % (path, name, name))
    for name in PRESETS:
        if name in presets:
            if not tables[name]:
                raise ConfigError('%s: has no [%s] table' % (path, name))
            config = _overlay(config, tables[name])
    from_file = copy.deepcopy(config)
    if overrides:
        config = _overlay(config, overrides)
    config['config_path'] = path
    checked = check(config, path)
    checked['given'] = from_file
    checked['overrides'] = copy.deepcopy(overrides or {})
    return checked


def origin(config, *keys):
    """Where the value of config[keys[0]][keys[1]].. comes from: "command line" (load_config's
    overrides), the config file, "datalist" (read from the data: config['from_data']), or
    None (a default)."""
    for source, name in ((config.get('overrides', {}), 'command line'),
                         (config.get('given', config), config.get('config_path', 'config'))):
        for key in keys:
            source = source.get(key) if isinstance(source, dict) else None
            if source is None:
                break
        else:
            return name
    return config.get('from_data', {}).get('.'.join(keys))
