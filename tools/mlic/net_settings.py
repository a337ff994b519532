"""The nets' settings of a pipeline config: the preset (netgen.FULL or netgen.SMALL) under the
config's [nets] tables, with the sizes that the data sets; and where each effective value came
from (the config file or the preset), for --print-config and the run folder's config."""
import copy

from mlic.run_config import SCHEMA, SECTIONS, ConfigError, deep_update, keys_of, kind_of

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
    """(image_size, bbox_num) of the datalists: [datalists] (default: the preset's) or the
    demo's [data] and [proposals]."""
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
    num_proposals and image_size from the data (data_sizes). soft_targets and roi_targets are
    None ("online") or "precomputed"."""
    from mlic import netgen
    where = config.get('config_path', 'config')
    nets = copy.deepcopy(config.get('nets', {}))
    nets.pop('preset', None)
    solvers = solver_overrides(nets.pop('solver', {}), where)
    image_size, bbox_num = data_sizes(config)
    nets.update(num_classes=num_classes, num_proposals=bbox_num, image_size=image_size)
    try:
        cfg = deep_update(preset_config(config), nets, 'nets')
    except KeyError as error:
        raise ConfigError('%s: %s' % (where, error.args[0]))
    for net, table in solvers.items():
        cfg['solver'][net].update(table)
    cfg['batch_size'] = {k: tuple(v) for k, v in cfg['batch_size'].items()}
    for key in ('soft_targets', 'roi_targets'):
        if cfg[key] == 'online':
            cfg[key] = None
    try:
        netgen.check_config(cfg)
    except ValueError as error:
        raise ConfigError('%s: [nets]: %s' % (where, error))
    return cfg


def effective_config(config):
    """[(dotted key, value, origin)] of every setting the run uses: origin is the config file
    (set there), "preset <name>" (the nets' preset) or "default" (the schema's)."""
    where = config.get('config_path', 'config')
    given = config.get('given', config)
    kind = kind_of(config)
    rows = []

    for section in SECTIONS[kind]:
        if section.startswith('nets') or (section and section not in config):
            continue
        table, set_here = ((config, given) if not section
                           else (config[section], given.get(section, {})))
        for name in keys_of(section, kind):
            if name in table:
                rows.append(((section + '.' if section else '') + name, table[name],
                             where if name in set_here else 'default'))
    preset = preset_config(config)
    name = preset_name(config)
    set_nets = given.get('nets', {})
    rows.append(('nets.preset', name, where if 'preset' in set_nets else 'default'))
    for key in SCHEMA['nets'][1:]:
        value = set_nets.get(key.name, preset[key.name])
        if key.name in ('soft_targets', 'roi_targets') and value is None:
            value = 'online'
        rows.append(('nets.' + key.name, value,
                     where if key.name in set_nets else 'preset ' + name))
    for net in preset['batch_size']:
        given_sizes = set_nets.get('batch_size', {})
        rows.append(('nets.batch_size.' + net, list(given_sizes.get(net, preset['batch_size']
                                                                     [net])),
                     where if net in given_sizes else 'preset ' + name))
    for net, solver in preset['solver'].items():
        given_solver = set_nets.get('solver', {}).get(net, {})
        for field in sorted(set(solver) | set(given_solver)):
            rows.append(('nets.solver.%s.%s' % (net, field), given_solver.get(field,
                                                                              solver.get(field)),
                         where if field in given_solver else 'preset ' + name))
    return rows
