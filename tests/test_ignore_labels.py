"""Ignore labels (-1, a VOC class held only by "difficult" objects) add no loss and no gradient
in every loss that reads the labels: the generated nets' loss layers through pycaffe against
NumPy with the -1 entries removed, the converter of the original's prototxts, and a VOC-style
list with -1 labels training the teacher and every student through `tools/caffe train`."""
import os

import cv2
import numpy as np
import pytest

from conftest import train_with_caffe_tool

from mlic import datalist, netgen, original_prototxt, surgery

IGNORE = datalist.IGNORE_LABEL

# (net, loss layer) of every generated loss that reads the datalist's labels.
LABEL_LOSSES = [('wsddn', 'loss'), ('stage2', 'loss_sig'), ('student', 'loss_sig')]


def parse_net(text):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    return net


def generated_layers(kind):
    texts = netgen.net_texts(netgen.small_config())
    return {layer.name: layer for layer in parse_net(texts[kind + '_train']).layer}


def loss_only_net(caffe, tmp_path, loss_layer, score_shape, label_shape):
    """A net of two Input layers feeding a copy of a generated loss layer (its settings kept)."""
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter(force_backward=True)
    for name, shape in (('score', score_shape), ('labels', label_shape)):
        net.layer.add(name=name, type='Input', top=[name]).input_param.shape.add(dim=shape)
    layer = net.layer.add()
    layer.CopyFrom(loss_layer)
    del layer.bottom[:]
    layer.bottom.extend(['score', 'labels'])
    del layer.top[:]
    layer.top.append('loss')
    del layer.include[:]
    path = tmp_path / ('%s.prototxt' % loss_layer.name)
    path.write_text(str(net))
    return caffe.Net(str(path), caffe.TRAIN)


def numpy_loss_and_gradient(kind, score, labels, kept):
    """The loss and its gradient over the kept entries only, divided by the batch size."""
    score = score.reshape(labels.shape).astype(np.float64)
    grad = np.zeros_like(score)
    n = len(labels)
    y = labels[kept].astype(np.float64)
    if kind == 'wsddn':  # probabilities
        p = score[kept]
        loss = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) / n
        grad[kept] = (-y / p + (1 - y) / (1 - p)) / n
    else:  # logits
        x = score[kept]
        loss = np.sum(np.logaddexp(0, x) - y * x) / n
        grad[kept] = (1 / (1 + np.exp(-x)) - y) / n
    return loss, grad


@pytest.mark.parametrize('kind, name', LABEL_LOSSES)
def test_generated_label_losses_ignore_minus_one(caffe, tmp_path, kind, name):
    layer = generated_layers(kind)[name]
    assert layer.loss_param.ignore_label == -1
    assert not layer.loss_param.HasField('normalization')  # divided by the batch size
    rng = np.random.RandomState(5)
    n, c = 4, 6
    labels = (rng.uniform(size=(n, c)) < 0.4).astype(np.float32)
    labels[0, 1] = labels[1, 4] = labels[2, 0] = labels[2, 5] = labels[3, 3] = IGNORE
    kept = labels != IGNORE
    if kind == 'wsddn':
        score_shape = (n, 1, c, 1)  # image_level_score
        score = rng.uniform(0.02, 0.98, score_shape).astype(np.float32)
    else:
        score_shape = (n, c)  # fc8_mscoco
        score = rng.normal(0, 2, score_shape).astype(np.float32)
    net = loss_only_net(caffe, tmp_path, layer, score_shape, (n, c))
    net.blobs['score'].data[...] = score
    net.blobs['labels'].data[...] = labels
    net.forward()
    net.backward()
    loss = float(net.blobs['loss'].data)
    grad = net.blobs['score'].diff.reshape(n, c)
    expected_loss, expected_grad = numpy_loss_and_gradient(kind, score, labels, kept)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_array_equal(grad[~kept], 0)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)
    # Changing what the ignored entries score changes nothing.
    score2 = score.copy().reshape(n, c)
    score2[~kept] = score2[~kept][::-1] * 0.5
    net.blobs['score'].data[...] = score2.reshape(score_shape)
    net.forward()
    assert float(net.blobs['loss'].data) == pytest.approx(loss, rel=1e-6)


def test_soft_loss_reads_the_teachers_scores_not_the_labels():
    for soft_targets in (None, 'scores.npy'):
        cfg = netgen.small_config(soft_targets=soft_targets)
        net = parse_net(netgen.net_texts(cfg)['stage2_train'])
        layers = {layer.name: layer for layer in net.layer}
        labels = layers['slice_label_roi'].top[0]
        readers = [layer.name for layer in net.layer if labels in layer.bottom]
        assert readers == ['loss_sig'], readers
        assert layers['loss_soft'].bottom[1] != labels
        assert not layers['loss_soft'].loss_param.HasField('ignore_label')


def test_every_generated_loss_reading_labels_ignores_them():
    """No loss in any generated training net reads the labels without the ignore label."""
    for kind in netgen.NETS:
        net = parse_net(netgen.net_texts(netgen.FULL)[kind + '_train'])
        labels = [layer.top[0] for layer in net.layer if layer.name == 'slice_label_roi']
        assert labels, kind
        for layer in net.layer:
            if layer.type.endswith('Loss') and set(layer.bottom) & set(labels):
                assert layer.loss_param.ignore_label == -1, (kind, layer.name)


CONVERTED_FORK = '''
layer { name: "data" type: "HumanAttData" top: "data" top: "label_roi"
  human_att_data_param { source: "train.txt" batch_size: 2 new_width: 16 new_height: 16
                         att_num: 3 bbox_num: 2 } }
layer { name: "slice" type: "Slice" bottom: "label_roi" top: "labels" top: "list_roi"
  slice_param { axis: 1 slice_point: 3 } }
layer { name: "p" type: "Sigmoid" bottom: "x" top: "p" }
layer { name: "loss" type: "CrossEntropyLoss" bottom: "p" bottom: "labels" top: "loss" }
layer { name: "loss_sig" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "labels"
  top: "loss_sig" loss_param { normalize: false } }
layer { name: "loss_soft" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "p"
  top: "loss_soft" }
layer { name: "loss_own" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "labels"
  top: "loss_own" loss_param { ignore_label: 7 } }
'''


def test_converter_adds_the_ignore_label_to_losses_of_the_labels(caffe):
    layers = {layer.name: layer
              for layer in parse_net(original_prototxt.convert(CONVERTED_FORK)).layer}
    assert layers['loss'].loss_param.ignore_label == -1
    assert layers['loss_sig'].loss_param.ignore_label == -1
    assert layers['loss_sig'].loss_param.HasField('normalize')  # the fork's own setting kept
    assert not layers['loss_soft'].loss_param.HasField('ignore_label')  # not labels
    assert layers['loss_own'].loss_param.ignore_label == 7  # one already given is kept


# --- A VOC-style list with difficult-only classes trains every net -------------------------

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
ITERATIONS = 8


def write_voc_style_list(folder, cfg, count, seed):
    """Coloured squares, one colour per class; about one class in three of each image is only
    "difficult" (drawn, labelled -1)."""
    rng = np.random.RandomState(seed)
    size, classes, bbox_num = cfg['image_size'], cfg['num_classes'], cfg['num_proposals']
    os.makedirs(folder, exist_ok=True)
    lines = []
    for index in range(count):
        image = rng.randint(90, 130, (size, size, 3)).astype(np.uint8)
        present = rng.choice(classes, 3, replace=False)
        labels = np.zeros(classes)
        proposals = []
        for rank, k in enumerate(present):
            side = rng.randint(size // 4, size // 2)
            x, y = rng.randint(0, size - side, 2)
            image[y:y + side, x:x + side] = COLOURS[k % len(COLOURS)]
            labels[k] = IGNORE if rank == 2 else 1
            proposals.append((x, y, x + side - 1, y + side - 1, 1.0))
        while len(proposals) < bbox_num:
            x1, y1 = rng.randint(0, size // 2, 2)
            proposals.append((x1, y1, x1 + rng.randint(8, size // 2),
                              y1 + rng.randint(8, size // 2), round(rng.uniform(0.1, 1), 3)))
        path = os.path.join(folder, '%03d.png' % index)
        cv2.imwrite(path, image)
        padded, _ = datalist.pad_proposals(proposals, bbox_num)
        lines.append(datalist.format_line(path, labels, padded))
    path = os.path.join(folder, 'list.txt')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


@pytest.fixture(scope='module')
def voc_style(tmp_path_factory):
    root = tmp_path_factory.mktemp('ignore')
    cfg = netgen.small_config()
    for settings in cfg['solver'].values():
        settings.update(max_iter=ITERATIONS, snapshot=ITERATIONS, test_interval=ITERATIONS,
                        test_iter=1, display=1, average_loss=1, stepsize=1000, base_lr=0.05)
    lists = {'train': write_voc_style_list(str(root / 'train'), cfg, 8, 0),
             'test': write_voc_style_list(str(root / 'test'), cfg, 4, 1)}
    assert sum(line.count(' -1 ') for line in open(lists['train'])) >= 8
    paths = netgen.write_nets(str(root / 'nets'), cfg, datalists=lists)
    return {'root': root, 'paths': paths}


def train(voc_style, kind, weights=None):
    losses = train_with_caffe_tool(voc_style['root'], voc_style['paths'][kind + '_solver'],
                                   weights, ITERATIONS)
    # Cross entropies against targets in [0, 1] (and squared distances) are never negative: a
    # -1 read as a target makes the sigmoid loss unbounded below. Nor do they explode.
    assert min(losses) >= 0, losses
    assert max(losses) <= 2 * max(losses[:2]) + 1, losses
    model = os.path.join(str(voc_style['root']), 'nets', 'snapshots',
                         'small_%s_iter_%d.caffemodel' % (kind, ITERATIONS))
    assert os.path.exists(model)
    return model


@pytest.mark.e2e  # trains the teacher and every student with caffe train
def test_voc_style_list_with_ignore_labels_trains_the_teacher_and_every_student(voc_style):
    paths, root = voc_style['paths'], voc_style['root']
    teacher = train(voc_style, 'wsddn')
    stage1_init = str(root / 'stage1_init.caffemodel')
    surgery.stage1_init(teacher, paths['stage1_train'], stage1_init)
    stage1 = train(voc_style, 'stage1', stage1_init)
    stage2_init = str(root / 'stage2_init.caffemodel')
    surgery.stage2_init(stage1, teacher, paths['stage2_train'], stage2_init)
    train(voc_style, 'stage2', stage2_init)  # also the "stage 2 only" ablation's net
    train(voc_style, 'student')  # also the "stage 1 only" ablation's last net
