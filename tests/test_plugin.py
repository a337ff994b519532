"""The plugin is simply there: registered in pycaffe, usable in a net, clear when stale."""
import os
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

from mlic.paths import CAFFE_TOOL, ROOT

PLUGIN_TYPES = ['WsdRoigen', 'WsdRoigenSingleScale', 'ROIPooling', 'CrossEntropyLoss', 'Interp',
                'ProposalSoftmax', 'RoIDistillationLoss']


def test_plugin_types_registered(caffe):
    registered = caffe.layer_type_list()
    for name in PLUGIN_TYPES:
        assert name in registered


def test_net_with_plugin_layer_runs_forward(caffe, tmp_path):
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent('''
        layer { name: "in" type: "Input" top: "lists" input_param { shape { dim: 2 dim: 15 } } }
        layer { name: "roi" type: "WsdRoigen" bottom: "lists" top: "roi" }
    '''))
    net = caffe.Net(str(net_file), caffe.TEST)
    lists = np.arange(30, dtype=np.float32).reshape(2, 15)
    net.blobs['lists'].data[...] = lists
    net.forward()
    expected = np.concatenate([np.repeat([[0.], [1.]], 3, axis=0), lists.reshape(6, 5)], axis=1)
    np.testing.assert_array_equal(net.blobs['roi'].data, expected)


def test_bad_param_str_is_a_python_error_naming_layer_and_field(caffe, tmp_path):
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent('''
        layer { name: "in" type: "Input" top: "lists" input_param { shape { dim: 2 dim: 15 } } }
        layer { name: "my_roi" type: "WsdRoigen" bottom: "lists" top: "roi"
                python_param { param_str: "roi_num: 3" } }
    '''))
    with pytest.raises(RuntimeError, match=r'layer "my_roi" \(WsdRoigen\).*roi_num'):
        caffe.Net(str(net_file), caffe.TEST)


# Each layer's own messages are tested once, in its gtest suite (caffe_layers/test/); these
# tests check that an error raised at set-up, forward or backward reaches Python, as a
# RuntimeError naming the layer, and leaves the interpreter usable.
def test_error_in_forward_is_a_python_error_naming_the_layer(caffe, tmp_path):
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent('''
        layer { name: "f" type: "Input" top: "features"
                input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
        layer { name: "r" type: "Input" top: "rois" input_param { shape { dim: 1 dim: 6 } } }
        layer { name: "my_pool" type: "ROIPooling" bottom: "features" bottom: "rois" top: "pooled"
                python_param { param_str: "pooled_h: 2 pooled_w: 2" } }
    '''))
    net = caffe.Net(str(net_file), caffe.TEST)
    net.blobs['rois'].data[...] = [[3, 0, 0, 3, 3, 1]]  # image 3 of a batch of one
    with pytest.raises(RuntimeError, match=r'layer "my_pool" \(ROIPooling\): bottom\[1\]: '):
        net.forward()
    net.blobs['rois'].data[...] = [[0, 0, 0, 3, 3, 1]]
    net.forward()  # the same net runs once its input is right


def test_error_in_backward_is_a_python_error_naming_the_layer(caffe, tmp_path):
    net_file = tmp_path / 'net.prototxt'
    net_file.write_text(textwrap.dedent('''
        force_backward: true
        layer { name: "p" type: "Input" top: "prob"
                input_param { shape { dim: 2 dim: 1 dim: 3 dim: 1 } } }
        layer { name: "y" type: "Input" top: "labels" input_param { shape { dim: 2 dim: 3 } } }
        layer { name: "my_loss" type: "CrossEntropyLoss" bottom: "prob" bottom: "labels"
                top: "loss" propagate_down: true propagate_down: true }
    '''))
    net = caffe.Net(str(net_file), caffe.TRAIN)
    net.blobs['prob'].data[...] = 0.5
    net.forward()
    with pytest.raises(RuntimeError, match=r'layer "my_loss" \(CrossEntropyLoss\): '
                                           r'propagate_down: '):
        net.backward()


def test_stale_plugin_is_reported_with_path_and_fix(tmp_path, monkeypatch):
    """A plugin older than one of its sources is refused, naming both and the fix."""
    import caffe_layers
    sources = tmp_path / 'caffe_layers' / 'src'
    shutil.copytree(os.path.join(ROOT, 'caffe_layers', 'src'), sources)
    plugin = tmp_path / 'libmlic_layers.so'
    plugin.write_bytes(b'')
    old = os.path.getmtime(sources / 'wsd_roigen_layer.cpp') - 100
    os.utime(plugin, (old, old))
    monkeypatch.delenv('MLIC_PLUGIN', raising=False)
    with pytest.raises(caffe_layers.PluginError) as error:
        caffe_layers.check_plugin(str(plugin), [str(sources)])
    message = str(error.value)
    assert str(plugin) in message and 'make plugin' in message and 'older than' in message
    assert caffe_layers.check_plugin(str(plugin), []) == str(plugin)


def test_missing_plugin_is_reported_by_the_caffe_tool(tmp_path):
    env = dict(os.environ, MLIC_PLUGIN=str(tmp_path / 'nowhere.so'))
    out = subprocess.run([CAFFE_TOOL, '--version'], env=env, stderr=subprocess.PIPE, text=True)
    assert out.returncode != 0
    assert 'nowhere.so does not exist' in out.stderr and 'make plugin' in out.stderr


def test_setup_is_idempotent():
    """After `make test` has set everything up, a second setup has nothing to do."""
    out = subprocess.run(['bash', os.path.join(ROOT, 'tools', 'setup', 'setup.sh'), '--check'],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert out.returncode == 0, out.stdout
    assert 'nothing to do' in out.stdout


def run_setup_check(**env):
    return subprocess.run(['bash', os.path.join(ROOT, 'tools', 'setup', 'setup.sh'), '--check',
                           'caffe'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(os.environ, **env))


def test_user_caffe_root_is_accepted():
    """CAFFE_ROOT naming the Caffe we already use passes the check (the same build/caffe.env)."""
    prefix = open(os.path.join(ROOT, 'build', 'caffe.env')).read().split('\n')[0].split('=', 1)[1]
    out = run_setup_check(CAFFE_ROOT=prefix)
    assert out.returncode == 0, out.stdout
    assert "using the user's Caffe at " + prefix in out.stdout


def test_user_caffe_root_without_caffe_is_a_clear_error(tmp_path):
    out = run_setup_check(CAFFE_ROOT=str(tmp_path))
    assert out.returncode != 0
    assert 'no CaffeConfig.cmake in %s' % tmp_path in out.stdout
