"""The nets' settings of a pipeline config: the preset (netgen.FULL or netgen.SMALL) under the
config's [nets] tables, with the sizes that the data sets; and where each effective value came
from (the config file or the preset), for --print-config and the run folder's config."""
import copy

from mlic.run_config import (SCHEMA, SECTIONS, ConfigError, deep_update, keys_of, kind_of,
                             origin)

PRESETS = ('full', 'small')


def preset_name(config):
    """[nets] preset (default: "full" for a user's datalists, "small" for the demo)."""
    return config.get('nets', {}).get('preset') or ('full' if 'datalists' in config
                                                     else 'small')


def preset_config(config):
    """netgen.FULL or netgen.SMALL, as preset_name(config) says."""
    from mlic import netgen
    return {'full': netgen.FULL, 'small': netgen.SMALL}[preset_name(config)]


def data_sizes(config):
    """(image_size, bbox_num) of the datalists: [datalists] (as the config sets them or
    sources.with_data_sizes read them from the lists; else the preset's) or the demo's [data]
    and [proposals]."""
    if 'datalists' in config:
        preset = preset_config(config)
        lists = config['datalists']
        return (int(lists.get('image_size', preset['image_size'])),
                int(lists.get('bbox_num', preset['num_proposals'])))
    return config['data']['image_size'], config['proposals']['bbox_num']


def solver_overrides(solvers, where):
    """[nets.solver.<net>] tables: any SolverParameter field (enums by name or number)."""
    from caffe.proto import caffe_pb2
    fields = caffe_pb2.SolverParameter.DESCRIPTOR.fields_by_name
    out = {}
    for net, table in solvers.items():
        out[net] = {}
        for key, value in table.items():
            if key not in fields:
                raise ConfigError('%s: nets.solver.%s.%s: not a Caffe SolverParameter field'
                                  % (where, net, key))
            if fields[key].enum_type is not None and isinstance(value, str):
                if value not in fields[key].enum_type.values_by_name:
                    raise ConfigError('%s: nets.solver.%s.%s: %r is not one of %s'
                                      % (where, net, key, value,
                                         ', '.join(fields[key].enum_type.values_by_name)))
                value = fields[key].enum_type.values_by_name[value].number
            out[net][key] = value
    return out


def net_config(config, num_classes):
    """netgen's config: the preset under the [nets] tables; num_classes from the classes,
    num_proposals and image_size from the data (data_sizes). The teacher's targets
    (netgen.TARGET_KEYS: soft_targets, roi_targets, attention_targets, hint_targets) are None
    ("online") or "precomputed"."""
    from mlic import netgen
    where = config.get('config_path', 'config')
    nets = copy.deepcopy(config.get('nets', {}))
    nets.pop('preset', None)
    solvers = solver_overrides(nets.pop('solver', {}), where)
    image_size, bbox_num = data_sizes(config)
    nets.update(num_classes=num_classes, num_proposals=bbox_num, image_size=image_size)
    if 'max_pixels' in config.get('datalists', {}):
        nets['max_pixels'] = config['datalists']['max_pixels']
    try:
        cfg = deep_update(preset_config(config), nets, 'nets')
    except KeyError as error:
        raise ConfigError('%s: %s' % (where, error.args[0]))
    for net, table in solvers.items():
        cfg['solver'][net].update(table)
    cfg['batch_size'] = {k: tuple(v) for k, v in cfg['batch_size'].items()}
    for key in netgen.TARGET_KEYS:
        if cfg[key] == 'online':
            cfg[key] = None
    try:
        netgen.check_config(cfg)
    except ValueError as error:
        raise ConfigError('%s: [nets]: %s' % (where, error))
    return cfg


def effective_config(config):
    """[(dotted key, value, origin)] of every setting the run uses: origin is the config file
    (set there), "command line", "preset <name>" (the nets' preset) or "default" (the
    schema's)."""
    from mlic import netgen
    kind = kind_of(config)
    rows = []
    for section in SECTIONS[kind]:
        if section.startswith('nets') or (section and section not in config):
            continue
        table = config[section] if section else config
        parts = [section] if section else []
        for name in keys_of(section, kind):
            if name in table:
                rows.append(('.'.join(parts + [name]), table[name],
                             origin(config, *(parts + [name])) or 'default'))
    preset = preset_config(config)
    by_preset = 'preset ' + preset_name(config)

    def row(dotted, value):
        rows.append((dotted, value, origin(config, *dotted.split('.')) or by_preset))
    row('nets.preset', preset_name(config))
    rows[-1] = rows[-1][:2] + (origin(config, 'nets', 'preset') or 'default',)
    cfg = net_config(config, preset['num_classes'])
    for key in SCHEMA['nets'][1:]:
        value = cfg[key.name]
        if key.name in netgen.TARGET_KEYS and value is None:
            value = 'online'
        row('nets.' + key.name, value)
    for net, sizes in cfg['batch_size'].items():
        row('nets.batch_size.' + net, list(sizes))
    for net, solver in cfg['solver'].items():
        for field in sorted(solver):
            row('nets.solver.%s.%s' % (net, field), solver[field])
    return rows
