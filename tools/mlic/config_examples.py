"""Text made from the config schema (mlic.run_config): the example configs tools/demo.toml and
tools/run_pipeline.example.toml (tools/generate_configs.py writes them; a test checks that the
checked-in ones match), the key list of the tools' --help, and a run's effective config.

The demo's settings are DEMO_SETTINGS below: tools/demo.toml is written from them, as the
prototxts are from netgen. The reasons behind its numbers are in docs/demo_tuning.md.
"""
import json
import os

from mlic import netgen
from mlic.run_config import (DEMO, NETS, PRESET, PRESETS, REQUIRED, SCHEMA, SECTIONS,
                             SOLVER_EXAMPLE_FIELDS, USER, keys_of)

SECTION_HELP = {
    'datalists': 'Your data: complete datalists (tools/make_datalist.py, then '
                 'tools/compute_proposals.py)',
    'data': 'The synthetic dataset (tools/mlic/synthetic.py), one for every seed',
    'proposals': 'Proposals of every image (tools/mlic/proposals.py)',
    'pretrain': "The ImageNet stand-in: the student net trained on object-centric images; "
                'without its classifier it initialises the teacher and every student',
    'pretrain.solver': 'Caffe SolverParameter fields of the pretraining',
    'nets': "The nets: the preset's, with any key below overridden (a key left out follows "
            'the preset)',
    'nets.batch_size': '(train, test) images per iteration of each net',
    'nets.solver': "Caffe SolverParameter fields of each net (any field; enums by name); "
                   "random_seed is the run's seed",
    'benchmark': 'tools/demo.py --benchmark: the science benchmark, every student until its '
                 'validation mAP stops rising (docs/converged.md); hours on 2 cores',
    'quick': 'tools/demo.py --quick: every step at toy size in a few minutes (numbers not '
             'meaningful)',
}

# The demo's nets are the small preset's (netgen.SMALL); the demo sets the pipeline's choices
# (stage 1 with trained fc6/fc7, the teacher's outputs precomputed, for the KD stages and the
# baselines) and its schedules: what one seed fits in 15 minutes of 2 cores on the slowest
# machines here (docs/demo_tuning.md).
DEMO_SETTINGS = {
    'folder': 'runs/demo', 'seeds': [1], 'jobs': 2, 'budget': 'equal',
    'data': {'num_classes': 10, 'image_size': 192, 'object_size': [14, 44],
             'objects_per_image': [1, 4], 'num_train': 1600, 'num_test': 400, 'seed': 7},
    'proposals': {'method': 'edgeboxes', 'bbox_num': 48, 'beta': 0.55, 'workers': 1},
    'pretrain': {'num_images': 6000, 'object_size': [16, 60], 'seed': 5, 'batch_size': 32,
                 'solver': {'base_lr': 0.01, 'max_iter': 340, 'stepsize': 272, 'snapshot': 170,
                            'clip_gradients': 10.0}},
    'nets': {
        'stage1_fc_frozen': False, 'soft_targets': 'precomputed', 'roi_targets': 'precomputed',
        'attention_targets': 'precomputed', 'hint_targets': 'precomputed',
        'solver': {
            'wsddn': {'max_iter': 360, 'stepsize': 306, 'snapshot': 180},
            'stage1': {'max_iter': 750, 'stepsize': 625, 'snapshot': 250},
            'stage2': {'max_iter': 1500, 'stepsize': 1125, 'snapshot': 500},
            'student': {'max_iter': 1500, 'stepsize': 1125, 'snapshot': 500}},
    },
    # The converged comparison of docs/converged.md: a tenth of the train list held out, each
    # student trained until its validation mAP stops rising, the classic baselines beside. Time
    # is not its limit, so it keeps the longer fixed trainings its table was measured with.
    'benchmark': {
        'folder': 'runs/demo-converged', 'seeds': [1, 2, 3], 'validation': 0.1,
        'schedule': 'converged', 'baselines': ['fitnets', 'attention'],
        'pretrain': {'solver': {'max_iter': 400, 'stepsize': 320, 'snapshot': 200}},
        'nets': {'solver': {
            'wsddn': {'max_iter': 400, 'stepsize': 340, 'snapshot': 200},
            'stage1': {'max_iter': 900, 'stepsize': 750, 'snapshot': 300},
            'stage2': {'max_iter': 1800, 'stepsize': 1350, 'snapshot': 600},
            'student': {'max_iter': 1800, 'stepsize': 1350, 'snapshot': 600}}},
    },
    'quick': {
        'folder': 'runs/demo-quick',
        # The classic baselines and the equal budget at toy size: CI's quick run covers them.
        'baselines': ['fitnets', 'attention'], 'budget': 'equal',
        'data': {'num_train': 96, 'num_test': 48, 'image_size': 96},
        'pretrain': {'num_images': 96, 'object_size': [8, 28], 'batch_size': 8,
                     'solver': {'max_iter': 10, 'stepsize': 10, 'snapshot': 10}},
        'proposals': {'bbox_num': 16},
        'nets': {'student_size': 32, 'block_channels': [8, 16, 32], 'block_convs': [1, 1, 1],
                 'fc_size': 32, 'pooled_size': 4,
                 'batch_size': {'wsddn': [4, 4], 'stage1': [4, 4], 'stage2': [4, 4],
                                'student': [8, 8]},
                 'solver': {net: {'max_iter': n, 'stepsize': n, 'snapshot': n}
                            for net, n in zip(NETS, (30, 20, 20, 20))}},
    },
}

USER_EXAMPLE = {
    'folder': 'runs/coco', 'seeds': [1], 'jobs': 1, 'gpus': [],
    'init_weights': 'models/VGG_ILSVRC_16_layers.caffemodel',
    'datalists': {'train': 'datalists/coco/train.txt', 'test': 'datalists/coco/test.txt',
                  'classes': 'datalists/coco/train.txt.classes', 'root_folder': '',
                  'test_boxes': 'datalists/coco/test_boxes.json', 'bbox_num': 500,
                  'image_size': 672},
    'nets': {'preset': 'full'},
}

HEADERS = {
    DEMO: '''The embedded demo: `make demo` runs it (tools/demo.py); `tools/demo.py --quick` applies
the [quick] tables on top, `--benchmark` the [benchmark] tables; `--seeds 1,2,3` repeats every
training over seeds. The same pipeline runs on your own datalists: tools/run_pipeline.py --help.''',
    USER: '''The whole method on MS-COCO 2014 with the VGG16 nets, as the original trains them:
  tools/run_pipeline.py --config tools/run_pipeline.example.toml
Copy this file and edit the paths for your data; relative paths are relative to the repository
root. Make the datalists first (README, "Your own data"):
  tools/make_datalist.py coco --annotations instances_train2014.json --images train2014 \\
      datalists/coco/train_labels.txt
  tools/make_datalist.py coco --annotations instances_val2014.json --images val2014 \\
      --boxes datalists/coco/test_boxes.json datalists/coco/test_labels.txt
  tools/compute_proposals.py datalists/coco/train_labels.txt datalists/coco/train.txt
  tools/compute_proposals.py datalists/coco/test_labels.txt datalists/coco/test.txt
The commented keys show their defaults: the nets' follow the preset (for "full" and
"small"), so switching the preset switches them; uncomment a key to set it.''',
}

EXAMPLE_FILES = {DEMO: os.path.join('tools', 'demo.toml'),
                 USER: os.path.join('tools', 'run_pipeline.example.toml')}


def toml_value(value):
    """`value` as TOML text (the types a config holds)."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return '[%s]' % ', '.join(toml_value(v) for v in value)
    if isinstance(value, dict):
        return '{%s}' % ', '.join('%s = %s' % (k, toml_value(v)) for k, v in value.items())
    raise TypeError('no TOML text for %r' % (value,))


# Where a key's preset default lies in netgen's config, by section.
PRESET_PLACE = {'nets': lambda preset, name: preset[name],
                'nets.batch_size': lambda preset, name: preset['batch_size'][name]}


def _preset_value(section, name, preset):
    value = PRESET_PLACE[section](preset, name)
    if name in netgen.TARGET_KEYS and value is None:
        return 'online'
    return list(value) if isinstance(value, tuple) else value


def _preset_note(values):
    """"(preset "full": a, "small": b)" of a key's preset values, or of one when they agree."""
    full, small = values
    if full == small:
        return '(both presets: %s)' % toml_value(full)
    return '(preset "full": %s, "small": %s)' % (toml_value(full), toml_value(small))


def _key_lines(section, key, values, presets, show_unset):
    if key.name in values:
        return ['# ' + key.help, '%s = %s' % (key.name, toml_value(values[key.name]))]
    if not show_unset or key.default is REQUIRED:
        return []
    if key.default is PRESET:
        shown = [_preset_value(section, key.name, p) for p in presets]
        return ['# %s %s' % (key.help, _preset_note(shown)),
                '# %s = %s' % (key.name, toml_value(shown[0]))]
    if key.default is None:
        return ['# ' + key.help, '# %s = ...' % key.name]
    return ['# ' + key.help, '# %s = %s' % (key.name, toml_value(key.default))]


def _table(name, lines):
    help_line = ['# ' + SECTION_HELP[name]] if name in SECTION_HELP else []
    return ['', *help_line, '[%s]' % name, *lines]


def example_toml(kind):
    """The text of tools/demo.toml (DEMO) or tools/run_pipeline.example.toml (USER)."""
    values = DEMO_SETTINGS if kind == DEMO else USER_EXAMPLE
    show_unset = kind == USER
    presets = (netgen.FULL, netgen.SMALL)
    out = ['# ' + line if line else '#' for line in HEADERS[kind].split('\n')]
    out.append('')
    for key in keys_of('', kind).values():
        out += _key_lines('', key, values, presets, show_unset)
    for section in SECTIONS[kind][1:]:
        table = values.get(section.split('.')[0], {})
        if section == 'nets.batch_size':
            sizes = table.get('batch_size', {})
            lines = []
            for key in SCHEMA[section]:
                lines += _key_lines(section, key, sizes, presets, show_unset)
            if lines:  # no empty heading where the config sets no batch size
                out += _table(section, lines)
        elif section == 'nets.solver':
            for net in NETS:
                out += _solver_table(net, table.get('solver', {}).get(net, {}), presets,
                                     show_unset)
        elif section in values:
            lines = []
            for key in keys_of(section, kind).values():
                if key.name != 'solver':
                    lines += _key_lines(section, key, table, presets, show_unset)
            out += _table(section, lines)
            if section == 'pretrain' and 'solver' in table:
                out += _table(section + '.solver', ['%s = %s' % (k, toml_value(v))
                                                    for k, v in table['solver'].items()])
        elif show_unset:
            lines = []
            for key in keys_of(section, kind).values():
                lines += _key_lines(section, key, {}, presets, show_unset)
            out += _table(section, lines)
    for name in PRESETS:
        if name in values:
            out += _preset_tables(name, values[name])
    return '\n'.join(wrap_comments(out)) + '\n'


def wrap_comments(lines, width=99):
    """Comment lines longer than `width` broken at spaces into several comment lines."""
    import textwrap
    out = []
    for line in lines:
        if line.startswith('# ') and len(line) > width:
            out += textwrap.wrap(line[2:], width, initial_indent='# ',
                                 subsequent_indent='#   ')
        else:
            out.append(line)
    return out


def _solver_table(net, given, presets, show_unset):
    lines = []
    for field, value in given.items():
        lines.append('%s = %s' % (field, toml_value(value)))
    if show_unset:
        for field in SOLVER_EXAMPLE_FIELDS:
            if field not in given:
                shown = [p['solver'][net][field] for p in presets]
                lines += ['# %s %s' % (SOLVER_EXAMPLE_FIELDS[field], _preset_note(shown)),
                          '# %s = %s' % (field, toml_value(shown[0]))]
    first = ['# ' + SECTION_HELP['nets.solver']] if net == NETS[0] else []
    return ['', *first, '[nets.solver.%s]' % net] + lines


def _preset_tables(name, table):
    plain = ['%s = %s' % (k, toml_value(v)) for k, v in table.items()
             if not isinstance(v, dict) or k in ('conv_filler', 'head_filler')]
    out = _table(name, plain) if plain or name in PRESETS else []
    for key, value in table.items():
        if isinstance(value, dict) and key not in ('conv_filler', 'head_filler'):
            out += _preset_tables('%s.%s' % (name, key), value)
    return out


def keys_help(kind, width=99):
    """The config keys of a kind of config, each with its help, type and default, for the
    tools' --help."""
    import textwrap
    lines = []
    for section in SECTIONS[kind]:
        if section:
            note = {'nets': " (a key left out follows the preset)",
                    'nets.solver': '.<net>'}.get(section, '')
            lines.append('  [%s]%s' % (section, note))
        for key in SCHEMA[section] if section else keys_of('', kind).values():
            if key.default is REQUIRED:
                default = 'required'
            elif key.default is PRESET:
                default = "default: the preset's"
            elif key.default is None:
                default = 'default: unset'
            else:
                default = 'default: ' + toml_value(key.default)
            text = '%s [%s; %s]' % (key.help, key.kind.name, default)
            lines += textwrap.wrap(text, width, initial_indent='    %-18s ' % key.name,
                                   subsequent_indent=' ' * 23)
    return '\n'.join(lines)


def effective_toml(config):
    """Every setting a run uses (net_settings.effective_config), as TOML with each value's
    origin."""
    from mlic.net_settings import effective_config
    out = ['# Every setting of this run and where it comes from: %s, %sthe nets\' preset, or '
           'the default' % (config.get('config_path', 'config'),
                            'the datalist, ' if 'datalists' in config else '')]
    section = ''
    for dotted, value, origin in effective_config(config):
        where, _, name = dotted.rpartition('.')
        if where != section:
            out += ['', '[%s]' % where]
            section = where
        if value is None:
            out.append('# %s unset  # %s' % (name, origin))
        else:
            out.append('%s = %s  # %s' % (name, toml_value(value), origin))
    return '\n'.join(out) + '\n'
