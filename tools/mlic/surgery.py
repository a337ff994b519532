"""Weight surgery between the nets: teacher -> stage-1 init, stage 1 (+ teacher) -> stage-2 init.

Caffe's `-weights` copies layers by name and silently leaves every layer it does not find at
its filler. The KD nets name the teacher's layers conv_wsd_*, fc_wsd_* (netgen), so a teacher
.caffemodel given straight to `-weights` fills nothing of the teacher: the original then
distilled from a random teacher (its stage 1 "gives NaN", as users of the original report).
Here every weight layer of the target net must be filled from a source, or be one of the layers
the recipe initialises from fillers on purpose; a missing source layer or a shape mismatch is an error naming both layers.
"""
import collections
import copy
import os
import re
import shutil
import tempfile

import numpy as np

from mlic import netgen


class SurgeryError(ValueError):
    pass


def read_net(path):
    """NetParameter of a .caffemodel (binary) or .prototxt (text)."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    if not os.path.isfile(path):
        raise SurgeryError('%s: no such file' % path)
    with open(path, 'rb') as f:
        data = f.read()
    if path.endswith('.prototxt'):
        text_format.Merge(data.decode(), net)
    else:
        try:
            net.ParseFromString(data)
        except Exception as error:  # protobuf's DecodeError: say which file
            raise SurgeryError('%s: not a Caffe .caffemodel (%s)' % (path, error))
    return net


def blob_shape(blob):
    """A BlobProto's shape (new shape field, or the legacy num/channels/h/w)."""
    if blob.HasField('shape'):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def blob_array(blob):
    """A BlobProto as a numpy array."""
    data = blob.double_data if len(blob.double_data) else blob.data
    return np.asarray(data, dtype=np.float32).reshape(blob_shape(blob))


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7f
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def blob_bytes(array, shape):
    """A serialised BlobProto (shape, packed float data), built directly: VGG16's fc6 alone has
    1e8 weights, too many to pass through a Python list."""
    from caffe.proto import caffe_pb2
    shape_bytes = caffe_pb2.BlobShape(dim=list(shape)).SerializeToString()
    data = np.ascontiguousarray(array, dtype='<f4').tobytes()
    # Field 7 (shape) and field 5 (data), both length-delimited (wire type 2).
    return (bytes([7 << 3 | 2]) + _varint(len(shape_bytes)) + shape_bytes
            + bytes([5 << 3 | 2]) + _varint(len(data)) + data)


def weights(path):
    """{layer name: [arrays]} of the layers with weights in a .caffemodel (V1 or V2 layers)."""
    net = read_net(path)
    out = collections.OrderedDict()
    for layer in list(net.layer) + list(net.layers):
        if len(layer.blobs) and layer.name not in out:
            out[layer.name] = [blob_array(b) for b in layer.blobs]
    return out


def _replace_data_layers(net):
    """The train net with its Python data layers replaced by one Input layer (batch 1) and every
    filler made constant: enough to read the parameter shapes quickly."""
    import caffe_layers  # noqa: F401  (puts mlic_layers_pb2 on the path)
    import mlic_layers_pb2
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    original = caffe_pb2.NetParameter()
    original.CopyFrom(net)
    del net.layer[:]
    layers = original.layer
    done = False
    for layer in layers:
        if layer.type == 'Python' and layer.python_param.module == netgen.DATA_MODULE:
            if done:
                continue
            param = mlic_layers_pb2.MultiLabelRoIDataParameter()
            text_format.Merge(layer.python_param.param_str, param)
            size = (param.new_height, param.new_width)
            width = param.att_num + 5 * param.bbox_num
            new = net.layer.add(name=layer.name, type='Input')
            new.top.extend(layer.top)
            new.input_param.shape.add(dim=[1, 3, size[0], size[1]])
            new.input_param.shape.add(dim=[1, width])
            if param.soft_targets:
                new.input_param.shape.add(dim=[1, param.att_num])
            if param.roi_targets:  # the teacher's fc7 rows, as wide as the student's
                fc7 = [l for l in layers if l.name == 'fc7'][0].inner_product_param.num_output
                new.input_param.shape.add(dim=[param.bbox_num, fc7])
            if param.map_targets:  # (C, H, W) of the teacher's map, from the .npy's header
                import numpy as np
                new.input_param.shape.add(
                    dim=[1] + list(np.load(param.map_targets, mmap_mode='r').shape[2:]))
            done = True
            continue
        new = net.layer.add()
        new.CopyFrom(layer)
        for sub in ('convolution_param', 'inner_product_param'):
            if new.HasField(sub):
                getattr(new, sub).weight_filler.type = 'constant'
                getattr(new, sub).bias_filler.type = 'constant'
        if new.HasField('scale_param'):
            new.scale_param.filler.type = 'constant'
    return net


def net_from_param(net_param, phase, weights=None):
    """A pycaffe Net of an edited NetParameter (pycaffe only reads nets from files). Paths inside
    the net are relative to the working directory, not to the file, so the copy lives anywhere."""
    import caffe
    from google.protobuf import text_format
    with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
        f.write(text_format.MessageToString(net_param))
    try:
        return caffe.Net(f.name, phase, weights=weights) if weights else caffe.Net(f.name, phase)
    finally:
        os.unlink(f.name)


def param_shapes(prototxt):
    """{layer name: [param shapes]} of a net, by instantiating it in pycaffe (TRAIN phase, batch
    1, constant fillers). Only the first layer of a repeated name is kept, as Caffe copies."""
    import caffe
    net = net_from_param(_replace_data_layers(read_net(prototxt)), caffe.TRAIN)
    shapes = collections.OrderedDict()
    for name, layer in zip(net._layer_names, net.layers):
        if len(layer.blobs) and name not in shapes:
            shapes[name] = [tuple(b.data.shape) for b in layer.blobs]
    return shapes


def _fits(array, shape):
    return _shape_fits(array.shape, shape)


def _shape_fits(source_shape, shape):
    """Caffe's ShapeEquals: same shape, or a legacy 4-D blob whose dims match the target's
    padded with leading 1s (ImageNet VGG16's fc layers are stored as (1, 1, out, in))."""
    source_shape, shape = tuple(source_shape), tuple(shape)
    if source_shape == shape:
        return True
    if len(source_shape) == 4 and len(shape) <= 4:
        return source_shape == (1,) * (4 - len(shape)) + shape
    return False


def check_pretrained(model_path, target_prototxt, layers):
    """Raises SurgeryError unless every layer named in `layers` (weight layers of the target
    net) is in the .caffemodel with parameter blobs of the target's shapes. Reads only the
    shapes, so a 500 MB VGG16 file is checked in seconds; Caffe's `-weights` would silently
    leave a missing layer at its filler."""
    target = param_shapes(target_prototxt)
    source = {}
    net = read_net(model_path)
    for layer in list(net.layer) + list(net.layers):
        if len(layer.blobs) and layer.name not in source:
            source[layer.name] = [blob_shape(b) for b in layer.blobs]
    for name in layers:
        if name not in source:
            raise SurgeryError('layer "%s" of %s is not in %s (its weight layers: %s)'
                               % (name, target_prototxt, model_path,
                                  ', '.join(source) or 'none'))
        shapes = target[name]
        if len(source[name]) != len(shapes) or not all(
                _shape_fits(a, b) for a, b in zip(source[name], shapes)):
            raise SurgeryError('shape mismatch: layer "%s" of %s has parameters %s but %s has %s'
                               % (name, target_prototxt,
                                  ', '.join('x'.join(map(str, s)) for s in shapes), model_path,
                                  ', '.join('x'.join(map(str, s)) for s in source[name])))


def build(target_prototxt, recipe, out_path):
    """Writes out_path with every weight layer of the target net filled per `recipe`.

    recipe(layer_name) -> (source_path, source_weights, source_layer) or None for a layer that
    is initialised by its filler on purpose. Returns {target layer: 'source:layer' or 'filler'}.
    """
    from caffe.proto import caffe_pb2
    shapes = param_shapes(target_prototxt)
    out = caffe_pb2.NetParameter(name=read_net(target_prototxt).name)
    report = collections.OrderedDict()
    for name, target_shapes in shapes.items():
        source = recipe(name)
        if source is None:
            report[name] = 'filler'
            continue
        path, source_weights, source_name = source
        if source_name not in source_weights:
            raise SurgeryError(
                'layer "%s" of %s needs layer "%s" of %s, which has no such layer (its weight '
                'layers: %s)' % (name, target_prototxt, source_name, path,
                                 ', '.join(source_weights) or 'none'))
        arrays = source_weights[source_name]
        if len(arrays) != len(target_shapes):
            raise SurgeryError('layer "%s" of %s has %d parameter blobs but layer "%s" of %s has '
                               '%d' % (name, target_prototxt, len(target_shapes), source_name,
                                       path, len(arrays)))
        layer = out.layer.add(name=name)
        for index, (array, shape) in enumerate(zip(arrays, target_shapes)):
            if not _fits(array, shape):
                raise SurgeryError(
                    'shape mismatch: layer "%s" param %d of %s is %s but layer "%s" param %d of '
                    '%s is %s' % (name, index, target_prototxt, 'x'.join(map(str, shape)),
                                  source_name, index, path, 'x'.join(map(str, array.shape))))
            layer.blobs.add().MergeFromString(blob_bytes(array, shape))
        report[name] = '%s:%s' % (path, source_name)
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    with open(out_path, 'wb') as f:
        f.write(out.SerializeToString())
    return report


def backbone(classifier_model, classifier_prototxt, out_path, classifier='fc8_mscoco'):
    """A pretrained classifier without its classification layer: what the teacher and the
    students start from (conv*, their BatchNorm/Scale, fc6, fc7), like ImageNet VGG16 without
    fc8. The demo's pretraining step makes one from its ImageNet stand-in."""
    source = weights(classifier_model)
    return build(classifier_prototxt,
                 lambda name: None if name == classifier else
                 (classifier_model, source, name), out_path)


def is_teacher_layer(name):
    """Teacher layers of the KD nets: the renamed ones and the teacher-only layers."""
    return ('_wsd_' in name or name.startswith('temp_branch')
            or name == 'image_level_score')


# Layers stage 2 initialises from their fillers: the teacher's temperatures (constant 2), the
# student's classifier (xavier) and its soft-target temperature (constant 0.2).
STAGE2_FROM_FILLERS = ('temp_branch1_learn', 'temp_branch2_learn', 'fc8_mscoco',
                       'fc8_mscoco_soft')


def _check_teacher(path, teacher):
    """The student nets share the teacher's layer names (conv1_1 .. fc7) and shapes, so a swapped
    argument would pass every shape check: a WSDDN model is the one with both heads."""
    missing = [name for name in ('fc8_c', 'fc8_d') if name not in teacher]
    if missing:
        raise SurgeryError('%s is not a trained WSDDN teacher: it has no layer %s (its weight '
                           'layers: %s)' % (path, ' or '.join(missing), ', '.join(teacher)))


def stage1_init(teacher_model, target_prototxt, out_path, imagenet_model=None):
    """Stage-1 init: the teacher's conv/fc6/fc7 under conv_wsd_*/fc_wsd_* names; the student
    from an ImageNet VGG16 .caffemodel (conv*, fc6, fc7) when given, else its fillers. A
    stage-1 net that reads the teacher's RoI features (netgen's roi_targets) has no teacher
    layers: then teacher_model may be None."""
    needs_teacher = any(is_teacher_layer(layer.name) for layer in read_net(target_prototxt).layer)
    teacher = None
    if needs_teacher:
        if not teacher_model:
            raise SurgeryError('%s runs the teacher (conv_wsd_* / fc_wsd_* layers): stage 1 '
                               'needs the trained WSDDN .caffemodel' % target_prototxt)
        teacher = weights(teacher_model)
        _check_teacher(teacher_model, teacher)
    imagenet = weights(imagenet_model) if imagenet_model else None

    def recipe(name):
        if is_teacher_layer(name):
            return teacher_model, teacher, netgen.teacher_layer_name(name)
        if imagenet is None:
            return None
        return imagenet_model, imagenet, name
    return build(target_prototxt, recipe, out_path)


# Layers of the baselines' nets that start from their fillers: FitNets' regressor, the fixed
# channel means of the attention maps (constant 1/C, never trained) and the classifier.
BASELINE_FROM_FILLERS = ('hint_regressor', 'attention_student_mean', 'attention_teacher_mean',
                         'fc8_mscoco')


def baseline_init(teacher_model, target_prototxt, out_path, imagenet_model=None):
    """Init of a baseline's net (netgen.baseline_net): the teacher's conv layers under their
    conv_wsd_* names, the student from the ImageNet .caffemodel when given (else its fillers),
    BASELINE_FROM_FILLERS from their fillers: the same start as every other row."""
    teacher = weights(teacher_model)
    _check_teacher(teacher_model, teacher)
    imagenet = weights(imagenet_model) if imagenet_model else None

    def recipe(name):
        if is_teacher_layer(name):
            return teacher_model, teacher, netgen.teacher_layer_name(name)
        if name in BASELINE_FROM_FILLERS or imagenet is None:
            return None
        return imagenet_model, imagenet, name
    return build(target_prototxt, recipe, out_path)


def hint_label_init(hint_model, target_prototxt, out_path, imagenet_model=None):
    """FitNets' label stage: the student's conv layers from the hint stage's result, fc6/fc7
    from the ImageNet .caffemodel when given (the hint stage has none; else their fillers), the
    classifier from its filler."""
    hint = weights(hint_model)
    if 'hint_regressor' not in hint:
        raise SurgeryError('%s is not a FitNets hint-stage result (no hint_regressor; its weight '
                           'layers: %s)' % (hint_model, ', '.join(hint)))
    imagenet = weights(imagenet_model) if imagenet_model else None

    def recipe(name):
        if name in hint:
            return hint_model, hint, name
        if name == 'fc8_mscoco' or imagenet is None:
            return None
        return imagenet_model, imagenet, name
    return build(target_prototxt, recipe, out_path)


def stage2_init(stage1_model, teacher_model, target_prototxt, out_path, imagenet_model=None):
    """Stage-2 init: the teacher (with its fc8_c/fc8_d heads) from the WSDDN .caffemodel, the
    student's conv/fc6/fc7 from the stage-1 result; when stage1_model is None (stage 2 without
    stage 1), from an ImageNet VGG16 .caffemodel when given, else from its fillers. See
    STAGE2_FROM_FILLERS for the rest."""
    if stage1_model and imagenet_model:
        raise SurgeryError('stage 2 takes the student from the stage-1 result or from ImageNet '
                           'VGG16, not both (%s, %s)' % (stage1_model, imagenet_model))
    teacher = weights(teacher_model)
    _check_teacher(teacher_model, teacher)
    stage1 = weights(stage1_model) if stage1_model else None
    # Stage 1 has no classifier: the teacher, a trained student and ImageNet VGG16 all have
    # one, and their trunks would pass every shape check. (A stage-1 net that reads
    # precomputed RoI features has no teacher layers either, so those cannot tell.)
    classifiers = [name for name in stage1 or () if name.startswith('fc8')]
    if classifiers:
        raise SurgeryError('%s is not a stage-1 result: it has a classifier (%s; its weight '
                           'layers: %s); stage 2 takes the stage-1 .caffemodel and the WSDDN '
                           'teacher\'s' % (stage1_model, ', '.join(classifiers),
                                            ', '.join(stage1)))
    imagenet = weights(imagenet_model) if imagenet_model else None

    def recipe(name):
        if name in STAGE2_FROM_FILLERS:
            return None
        if is_teacher_layer(name):
            return teacher_model, teacher, netgen.teacher_layer_name(name)
        if stage1 is not None:
            return stage1_model, stage1, name
        if imagenet is not None:
            return imagenet_model, imagenet, name
        return None
    return build(target_prototxt, recipe, out_path)


# ---- Which net fits the models: for net_surgery.py without --net.

PRESETS = (netgen.FULL, netgen.SMALL)


def trunk_shapes(cfg):
    """{layer: (outputs, inputs per output)} of the trunk layers a preset's teacher and student
    share (conv*, fc6, fc7): what the weights of a model of that preset must have."""
    shapes = collections.OrderedDict()
    inputs = 3
    for block, (channels, convs) in enumerate(zip(cfg['block_channels'], cfg['block_convs']), 1):
        for index in range(1, convs + 1):
            shapes['conv%d_%d' % (block, index)] = (channels, inputs * 9)
            inputs = channels
    shapes['fc6'] = (cfg['fc_size'], inputs * cfg['pooled_size'] ** 2)
    shapes['fc7'] = (cfg['fc_size'], cfg['fc_size'])
    return shapes


def model_trunk(model_weights):
    """{layer: (outputs, inputs per output)} of a model's conv*/fc6/fc7 weights."""
    out = collections.OrderedDict()
    for name, arrays in model_weights.items():
        if re.match(r'(conv\d+_\d+|fc[67])$', name) and arrays:
            shape = arrays[0].shape
            if len(shape) == 4 and name.startswith('fc'):  # legacy (1, 1, out, in)
                shape = shape[2:]
            out[name] = (int(shape[0]), int(np.prod(shape[1:])))
    return out


def _describe_trunk(trunk):
    convs = [n for n in trunk if n.startswith('conv')]
    if not convs:
        return 'no conv layers'
    return '%d convolutions, %s filters, fc7 %s outputs' % (
        len(convs), '-'.join(str(trunk[n][0]) for n in convs if n.endswith('_1')),
        trunk['fc7'][0] if 'fc7' in trunk else 'no')


def matching_preset(model_path, model_weights=None):
    """The netgen preset (FULL or SMALL) whose conv*/fc6/fc7 have the shapes of the model's;
    SurgeryError saying what the model has and what each preset has when none does."""
    model_weights = model_weights if model_weights is not None else weights(model_path)
    found = model_trunk(model_weights)
    batch_norm = 'conv1_1_bn' in model_weights
    for cfg in PRESETS:
        if found == trunk_shapes(cfg) and batch_norm == cfg['batch_norm']:
            return cfg
    raise SurgeryError(
        '%s (%s%s) matches neither preset: the full one has %s, the small one %s. Give the net '
        'you generated for it with --net (tools/generate_nets.py --out DIR ...: '
        'DIR/kd/stage1_train.prototxt or stage2_train.prototxt)'
        % (model_path, _describe_trunk(found), ', BatchNorm' if batch_norm else '',
           _describe_trunk(trunk_shapes(netgen.FULL)),
           _describe_trunk(trunk_shapes(netgen.SMALL)) + ', BatchNorm'))


def preset_net(stage, teacher_path, out_dir):
    """Writes the stage-1 or stage-2 training net of the preset that the teacher .caffemodel
    matches, for its class count, under out_dir; returns (prototxt path, what it is). The nets'
    data settings (datalists, proposal count, image size) do not change any weight shape."""
    teacher = weights(teacher_path)
    _check_teacher(teacher_path, teacher)
    cfg = copy.deepcopy(matching_preset(teacher_path, teacher))
    cfg['num_classes'] = int(teacher['fc8_c'][0].shape[0])
    paths = netgen.write_nets(out_dir, cfg, snapshot_dir=os.path.join(out_dir, 'snapshots'))
    what = ('the %s preset\'s %s net for %d classes (%s matches it: %s)'
            % (cfg['name'], stage, cfg['num_classes'], teacher_path,
               _describe_trunk(model_trunk(teacher))))
    return paths[stage + '_train'], what


def with_preset_net(stage, teacher_path, make):
    """Calls make(prototxt) with the matching preset's net written to a temporary folder;
    returns (make's result, what the net is)."""
    folder = tempfile.mkdtemp(prefix='mlic_surgery_')
    try:
        prototxt, what = preset_net(stage, teacher_path, folder)
        return make(prototxt), what
    finally:
        shutil.rmtree(folder, ignore_errors=True)
