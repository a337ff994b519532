"""tools/convert_prototxt.py: the original fork's syntax -> ours, checked by stock Caffe."""
import subprocess
import sys
import textwrap

import pytest

from mlic.paths import ROOT

from mlic import original_prototxt
from mlic.netgen import DATA_LAYER, DATA_MODULE

# A small net in the fork's syntax (our own text in its style).
FORK_NET = textwrap.dedent('''
    name: "tiny_fork"   # a comment
    layer {
      name: "data"
      type: "HumanAttData"
      top: "data"
      top: "label_roi"
      include { phase: TRAIN }
      transform_param {
        mirror: true
        mean_value: 100.5
        mean_value: 110
        mean_value: 120.25
      }
      human_att_data_param {
        source: "lists/train.txt"
        root_folder: "/images/"
        batch_size: 2
        shuffle: true
        new_width: 96
        new_height: 96
        scale_factors: 0.5
        scale_factors: 1
        att_num: 3
        bbox_num: 4
      }
    }
    layer {
      name: "slice"
      type: "Slice"
      bottom: "label_roi"
      top: "labels"
      top: "list_roi"
      slice_param { axis: 1 slice_point: 3 }
    }
    layer { name: "roi" type: "WsdRoigen" bottom: "list_roi" top: "roi" }
    layer {
      name: "roi_small"
      type: "WsdRoigenSingleScale"
      bottom: "list_roi"
      top: "roi_small"
      roi_pooling_param { single_scale: 32 origin_scale: 96 }
    }
    layer {
      name: "roi_default"
      type: "WsdRoigenSingleScale"
      bottom: "list_roi"
      top: "roi_default"
    }
    layer {
      name: "small"
      type: "Interp"
      bottom: "data"
      top: "small"
      interp_param { height: 32 width: 32 }
    }
    layer {
      name: "conv"
      type: "Convolution"
      bottom: "data"
      top: "conv"
      param { lr_mult: 1 decay_mult: 1 }
      convolution_param { num_output: 4 pad: 1 kernel_size: 3 }
    }
    layer {
      name: "pool_rois"
      type: "ROIPooling"
      bottom: "conv"
      bottom: "roi"
      top: "pool_rois"
      roi_pooling_param {
        pooled_h: 2
        pooled_w: 3
        spatial_scale: 0.5
        score_scale: 10
        score_bias: 1
      }
    }
    layer { name: "loss" type: "CrossEntropyLoss" bottom: "p" bottom: "labels" top: "loss"
            loss_weight: 1 }
''')


def parsed(text):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net)
    return {layer.name: layer for layer in net.layer}


def our_param(layer, message):
    import caffe_layers  # noqa: F401
    import mlic_layers_pb2
    from google.protobuf import text_format
    out = getattr(mlic_layers_pb2, message)()
    text_format.Merge(layer.python_param.param_str, out)
    return out


def test_fork_blocks_become_param_str_of_our_messages(caffe):
    layers = parsed(original_prototxt.convert(FORK_NET, 'fork.prototxt'))
    data = layers['data']
    assert data.type == 'Python'
    assert (data.python_param.module, data.python_param.layer) == (DATA_MODULE, DATA_LAYER)
    assert not data.HasField('transform_param')
    param = our_param(data, 'MultiLabelRoIDataParameter')
    assert param.source == 'lists/train.txt' and param.root_folder == '/images/'
    assert (param.batch_size, param.shuffle, param.new_width, param.new_height) == (2, True, 96, 96)
    assert list(param.scale_factors) == [0.5, 1.0]
    assert (param.att_num, param.bbox_num, param.mirror) == (3, 4, True)
    assert list(param.mean_value) == [100.5, 110.0, 120.25]
    assert [r.phase for r in data.include] == [0]

    pool = our_param(layers['pool_rois'], 'ROIPoolingParameter')
    assert (pool.pooled_h, pool.pooled_w, pool.spatial_scale) == (2, 3, 0.5)
    assert (pool.score_scale, pool.score_bias) == (10, 1)
    small = our_param(layers['roi_small'], 'WsdRoigenSingleScaleParameter')
    assert (small.single_scale, small.origin_scale) == (32, 96)
    # The fork's defaults are written out, since our message has none.
    default = our_param(layers['roi_default'], 'WsdRoigenSingleScaleParameter')
    assert (default.single_scale, default.origin_scale) == (224, 672)
    interp = our_param(layers['small'], 'InterpParameter')
    assert (interp.height, interp.width) == (32, 32)
    # Stock layers come through unchanged.
    assert layers['conv'].convolution_param.num_output == 4
    assert list(layers['slice'].slice_param.slice_point) == [3]
    assert not layers['roi'].HasField('python_param')
    assert list(layers['loss'].loss_weight) == [1]


def test_converted_layers_are_accepted_by_our_layers(caffe, tmp_path):
    """The converted RoI part instantiates with the plugin (set-up parses each param_str)."""
    text = original_prototxt.convert(textwrap.dedent('''
        layer { name: "in" type: "Input" top: "list_roi" top: "conv"
                input_param { shape { dim: 1 dim: 20 } shape { dim: 1 dim: 4 dim: 8 dim: 8 } } }
        layer { name: "roi" type: "WsdRoigen" bottom: "list_roi" top: "roi" }
        layer { name: "roi_small" type: "WsdRoigenSingleScale" bottom: "list_roi"
                top: "roi_small" roi_pooling_param { single_scale: 32 origin_scale: 96 } }
    '''))
    path = tmp_path / 'net.prototxt'
    path.write_text(text)
    net = caffe.Net(str(path), caffe.TEST)
    assert net.blobs['roi_small'].data.shape == (4, 6)


@pytest.mark.parametrize('snippet, message', [
    ('layer { name: "p" type: "ROIPooling" roi_pooling_param { pooled_h: 2 norm_type: 1 } }',
     r'fork.prototxt:1: layer "p": roi_pooling_param.norm_type: 1 is not supported'),
    ('layer { name: "p" type: "ROIPooling"\n roi_pooling_param { pooled_hh: 2 } }',
     r'fork.prototxt:2: layer "p": roi_pooling_param has no field pooled_hh'),
    ('layer { name: "i" type: "Interp" interp_param { height: tall } }',
     r'layer "i": interp_param.height: tall is not a number'),
    ('layer { name: "d" type: "HumanAttData"\n\n transform_param { mean_file: "m" }\n'
     ' human_att_data_param { source: "x" } }',
     r'fork.prototxt:3: layer "d": transform_param.mean_file'),
    ('layer { name: "c" type: "Convolution"\n map_param { num_iter: 3 } }',
     r'fork.prototxt:2: map_param is not a field'),
    ('layer { name: "c" type: "Convolution" interp_param { height: 3 } }',
     r'layer "c" \(Convolution\) has interp_param'),
    ('layer { name: "c" type: "Convolution" ', r'not closed'),
])
def test_bad_input_names_line_and_field(caffe, snippet, message):
    with pytest.raises(original_prototxt.ConversionError, match=message):
        original_prototxt.convert(snippet, 'fork.prototxt')


def test_command_line_tool(tmp_path):
    source = tmp_path / 'fork.prototxt'
    source.write_text(FORK_NET)
    out = tmp_path / 'ours.prototxt'
    done = subprocess.run([sys.executable, str(ROOT + '/tools/convert_prototxt.py'), str(source),
                           str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, done.stderr
    assert 'HumanAttData' not in out.read_text() and 'param_str' in out.read_text()
    source.write_text('layer { name: "p" type: "ROIPooling" roi_pooling_param { top_cls: 3 } }')
    done = subprocess.run([sys.executable, str(ROOT + '/tools/convert_prototxt.py'), str(source),
                           str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 1 and 'top_cls' in done.stderr
