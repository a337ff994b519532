"""Converts prototxts written for the original fork (caffe-MLIC) into this project's syntax.

The fork added `roi_pooling_param`, `interp_param` and `human_att_data_param` to Caffe's
LayerParameter; stock Caffe cannot read them. Our layers take the same fields as the text of
`python_param.param_str` (caffe_layers/proto/mlic_layers.proto), and the fork's HumanAttData
becomes our Python data layer. The text is parsed here with a small reader of the protobuf text
format (so stock caffe.proto need not know the fork's fields); everything else is copied as it
is, comments dropped. Layers and settings are not otherwise changed (docs/deviations.md says
what our generated nets change on purpose), but for one addition: every CrossEntropyLoss and
SigmoidCrossEntropyLoss whose targets are the data layer's labels gets
`loss_param { ignore_label: -1 }`, as in our generated nets, so that lists with "ignore" labels
(-1) train (the fork's losses would read -1 as a target).
"""
import re

from mlic import netgen


class ConversionError(ValueError):
    pass


TOKEN = re.compile(r'''\s+|\#[^\n]*|(?P<tok>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[{}:<>;,]|[^\s{}:<>;,"'\#]+)''')


def tokenize(text, source):
    tokens = []
    position = 0
    line = 1
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match:
            raise ConversionError('%s:%d: cannot read %r' % (source, line, text[position:position + 20]))
        if match.group('tok') is not None:
            tokens.append((match.group('tok'), line))
        line += match.group(0).count('\n')
        position = match.end()
    return tokens


class Field(object):
    """One `key: value` (value a token) or `key { ... }` (value a list of Fields)."""

    def __init__(self, key, value, line):
        self.key, self.value, self.line = key, value, line

    def get(self, key):
        return [f for f in self.value if f.key == key]


def parse(text, source='<text>'):
    """The fields of a text-format message as a list of Field."""
    tokens = tokenize(text, source)
    index = [0]

    def fields(closing):
        out = []
        while index[0] < len(tokens):
            token, line = tokens[index[0]]
            if token in ('}', '>'):
                if closing is None:
                    raise ConversionError('%s:%d: unexpected %r' % (source, line, token))
                index[0] += 1
                return out
            if token in (';', ','):
                index[0] += 1
                continue
            index[0] += 1
            if index[0] >= len(tokens):
                raise ConversionError('%s:%d: %s has no value' % (source, line, token))
            following, _ = tokens[index[0]]
            if following == ':':
                index[0] += 1
                if index[0] >= len(tokens):
                    raise ConversionError('%s:%d: %s has no value' % (source, line, token))
                following, _ = tokens[index[0]]
            if following in ('{', '<'):
                index[0] += 1
                out.append(Field(token, fields(following), line))
            else:
                index[0] += 1
                out.append(Field(token, following, line))
        if closing is not None:
            raise ConversionError('%s: a block opened before the end is not closed' % source)
        return out
    return fields(None)


def unquote(token):
    if token[:1] in '"\'' and token[-1:] == token[:1]:
        return re.sub(r'\\(.)', r'\1', token[1:-1])
    return token


def number(token):
    value = float(token)
    return int(value) if value.is_integer() and re.match(r'^-?\d+$', token) else value


# Fork field -> how it becomes one of our message's fields: the same name unless listed.
# Fields of the fork that our layers do not have are accepted only at their fork default.
ROI_POOLING_FIELDS = ('pooled_h', 'pooled_w', 'spatial_scale', 'score_scale', 'score_bias')
ROI_POOLING_UNUSED = {'top_cls': 10, 'norm_type': 0, 'single_scale': 224, 'origin_scale': 672}
SINGLE_SCALE_DEFAULTS = (('single_scale', 224), ('origin_scale', 672))
INTERP_FIELDS = ('height', 'width', 'zoom_factor', 'shrink_factor', 'pad_beg', 'pad_end')
DATA_FIELDS = ('source', 'root_folder', 'batch_size', 'shuffle', 'new_width', 'new_height',
               'scale_factors', 'att_num', 'bbox_num')
DATA_UNUSED = {'rand_skip': 0, 'is_color': 'true', 'scale': 1, 'crop_size': 0, 'mirror': 'false'}
TRANSFORM_UNUSED = {'scale': 1, 'crop_size': 0, 'force_color': 'false', 'force_gray': 'false'}
STRING_FIELDS = ('source', 'root_folder')


def _check_unused(block, unused, layer_name, source):
    for field in block.value:
        if field.key not in unused:
            continue
        default = unused[field.key]
        value = field.value
        same = (value == default if isinstance(default, str)
                else isinstance(value, str) and float(value) == float(default))
        if not same:
            raise ConversionError('%s:%d: layer "%s": %s.%s: %s is not supported here (only the '
                                  'default %s)' % (source, field.line, layer_name, block.key,
                                                   field.key, value, default))


def _take(block, names, layer_name, source, unused=None):
    pairs = []
    for field in block.value:
        if field.key in names:
            if isinstance(field.value, list):
                raise ConversionError('%s:%d: layer "%s": %s.%s must be a value'
                                      % (source, field.line, layer_name, block.key, field.key))
            if field.key in STRING_FIELDS:
                pairs.append((field.key, unquote(field.value)))
            elif field.value in ('true', 'false'):
                pairs.append((field.key, field.value == 'true'))
            else:
                try:
                    pairs.append((field.key, number(field.value)))
                except ValueError:
                    raise ConversionError('%s:%d: layer "%s": %s.%s: %s is not a number'
                                          % (source, field.line, layer_name, block.key,
                                             field.key, field.value))
        elif unused is None or field.key not in unused:
            raise ConversionError('%s:%d: layer "%s": %s has no field %s'
                                  % (source, field.line, layer_name, block.key, field.key))
    if unused:
        _check_unused(block, unused, layer_name, source)
    return pairs


def _param_str(pairs):
    """netgen.param_text, grouping repeated fields (scale_factors, mean_value) into lists."""
    grouped = []
    for key, value in pairs:
        if grouped and grouped[-1][0] == key and key in ('scale_factors', 'mean_value'):
            grouped[-1] = (key, grouped[-1][1] + [value])
        elif key in ('scale_factors', 'mean_value'):
            grouped.append((key, [value]))
        else:
            grouped.append((key, value))
    return netgen.param_text(grouped)


def _quoted(text):
    return '"%s"' % text.replace('\\', '\\\\').replace('"', '\\"')


def convert_layer(layer, source):
    """Rewrites one `layer { ... }` Field in place."""
    names = layer.get('name')
    name = unquote(names[0].value) if names else '?'
    types = layer.get('type')
    type_ = unquote(types[0].value) if types else ''
    blocks = {f.key: f for f in layer.value if isinstance(f.value, list)}
    pairs = None
    drop = set()
    if type_ == 'ROIPooling':
        block = blocks.get('roi_pooling_param')
        pairs = _take(block, ROI_POOLING_FIELDS, name, source, ROI_POOLING_UNUSED) if block else []
        drop.add('roi_pooling_param')
    elif type_ == 'WsdRoigenSingleScale':
        block = blocks.get('roi_pooling_param')
        given = dict(_take(block, ('single_scale', 'origin_scale'), name, source,
                           {k: v for k, v in ROI_POOLING_UNUSED.items()
                            if k not in ('single_scale', 'origin_scale')}) if block else [])
        # The fork's defaults (224, 672) are written out: our message has none.
        pairs = [(key, float(given.get(key, default))) for key, default in SINGLE_SCALE_DEFAULTS]
        drop.add('roi_pooling_param')
    elif type_ == 'Interp':
        block = blocks.get('interp_param')
        pairs = _take(block, INTERP_FIELDS, name, source) if block else []
        drop.add('interp_param')
    elif type_ == 'HumanAttData':
        block = blocks.get('human_att_data_param')
        if block is None:
            raise ConversionError('%s:%d: layer "%s" (HumanAttData) has no human_att_data_param'
                                  % (source, layer.line, name))
        for field in block.value:
            if field.key == 'mean_file':
                raise ConversionError('%s:%d: layer "%s": human_att_data_param.mean_file is not '
                                      'supported (use transform_param.mean_value)'
                                      % (source, field.line, name))
        pairs = _take(block, DATA_FIELDS, name, source, DATA_UNUSED)
        keys = [k for k, _ in pairs]
        # The fork's defaults where ours differ or are unset.
        if 'att_num' not in keys:
            pairs.append(('att_num', 1))
        if 'bbox_num' not in keys:
            pairs.append(('bbox_num', 0))
        transform = blocks.get('transform_param')
        if transform is not None:
            if any(f.key == 'mean_file' for f in transform.value):
                raise ConversionError('%s:%d: layer "%s": transform_param.mean_file is not '
                                      'supported (use mean_value)' % (source, transform.line, name))
            pairs += _take(transform, ('mirror', 'mean_value'), name, source, TRANSFORM_UNUSED)
        drop.update(('human_att_data_param', 'transform_param'))
        types[0].value = '"Python"'
    else:
        for key in ('roi_pooling_param', 'interp_param', 'human_att_data_param'):
            if key in blocks:
                raise ConversionError('%s:%d: layer "%s" (%s) has %s, which only the fork\'s '
                                      'own layers read' % (source, blocks[key].line, name, type_,
                                                           key))
        return
    if 'python_param' in blocks:
        raise ConversionError('%s:%d: layer "%s" already has a python_param'
                              % (source, blocks['python_param'].line, name))
    layer.value = [f for f in layer.value if f.key not in drop]
    inner = []
    if type_ == 'HumanAttData':
        inner += [Field('module', _quoted(netgen.DATA_MODULE), layer.line),
                  Field('layer', _quoted(netgen.DATA_LAYER), layer.line)]
    text = _param_str(pairs)
    if text:
        inner.append(Field('param_str', _quoted(text), layer.line))
    if inner:
        layer.value.append(Field('python_param', inner, layer.line))


# Losses whose targets may be the datalist's labels, and the layers that pass labels on unchanged
# in value (so that a loss reading their top still reads labels).
LABEL_LOSSES = ('CrossEntropyLoss', 'SigmoidCrossEntropyLoss')
LABEL_PASSING = ('Slice', 'Split', 'Reshape', 'Flatten')


def ignore_labels_in_losses(fields):
    """Adds loss_param { ignore_label: -1 } to every label loss whose targets (bottom[1]) come
    from a HumanAttData layer, directly or through LABEL_PASSING layers; an ignore_label already
    given is kept."""
    label_blobs = set()
    for layer in fields:
        if layer.key != 'layer' or not isinstance(layer.value, list):
            continue
        types = layer.get('type')
        type_ = unquote(types[0].value) if types else ''
        bottoms = [unquote(f.value) for f in layer.get('bottom')]
        tops = [unquote(f.value) for f in layer.get('top')]
        if type_ == 'HumanAttData' or (type_ in LABEL_PASSING and
                                        any(b in label_blobs for b in bottoms)):
            label_blobs.update(tops)
        elif type_ in LABEL_LOSSES and len(bottoms) > 1 and bottoms[1] in label_blobs:
            given = [f for f in layer.get('loss_param') if isinstance(f.value, list)]
            ignore = Field('ignore_label', str(netgen.LABEL_LOSS_PARAM['ignore_label']),
                           layer.line)
            if not given:
                layer.value.append(Field('loss_param', [ignore], layer.line))
            elif not given[0].get('ignore_label'):
                given[0].value.append(ignore)


def render(fields, indent=0):
    lines = []
    for field in fields:
        pad = '  ' * indent
        if isinstance(field.value, list):
            lines.append('%s%s {' % (pad, field.key))
            lines += render(field.value, indent + 1)
            lines.append('%s}' % pad)
        else:
            lines.append('%s%s: %s' % (pad, field.key, field.value))
    return lines


def convert(text, source='<text>'):
    """Our-syntax text of an original-syntax prototxt; checked by stock Caffe's parser."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    fields = parse(text, source)
    ignore_labels_in_losses(fields)
    for field in fields:
        if field.key == 'layers' and isinstance(field.value, list):
            raise ConversionError('%s:%d: V1 `layers` blocks are not converted; upgrade the net '
                                  'with Caffe\'s upgrade_net_proto_text first' % (source, field.line))
        if field.key == 'layer' and isinstance(field.value, list):
            convert_layer(field, source)
            known = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
            for inner in field.value:
                if inner.key not in known:
                    raise ConversionError('%s:%d: %s is not a field of stock Caffe\'s layer, nor '
                                          'one this converter knows' % (source, inner.line,
                                                                        inner.key))
    out = '\n'.join(render(fields)) + '\n'
    try:
        text_format.Merge(out, caffe_pb2.NetParameter())
    except text_format.ParseError as error:
        raise ConversionError('%s: after conversion stock Caffe still cannot read it: %s'
                              % (source, error))
    return out


def convert_file(in_path, out_path):
    with open(in_path) as f:
        text = convert(f.read(), in_path)
    with open(out_path, 'w') as f:
        f.write('# Converted from %s by tools/convert_prototxt.py\n' % in_path)
        f.write(text)
    return out_path
