"""tools/net_memory.py: the memory of the small nets at batch 4, extrapolated from batch 1 and 2
with the data layer replaced, equals the blob sizes of the real net (real data layer) at batch 4,
summed here independently, and the backward blobs are the ones Caffe itself says need it."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import toy_config
from mlic.paths import ROOT
from mlic import net_memory, netgen

from test_trainer import write_toy_lists

BATCH = 4
PYTHON = sys.executable


@pytest.fixture(scope='module')
def small_nets(tmp_path_factory):
    root = tmp_path_factory.mktemp('memory')
    # The tool sizes the teacher at its largest scale; the real net is shaped by the scale of
    # its first batch, so here the teacher has only its largest scale.
    cfg = toy_config()
    cfg['scale_factors'] = [max(cfg['scale_factors'])]
    lists = write_toy_lists(root, cfg)
    return netgen.write_nets(str(root / 'nets'), cfg, datalists=lists)


# The real net in a fresh process (its data layer starts workers; Caffe's set-up log is read):
# every blob's size, each layer's params, and the layers Caffe says need backward.
PROBE = textwrap.dedent('''
    import json, sys
    import caffe, caffe_layers
    caffe.set_mode_cpu()
    net = caffe.Net(sys.argv[1], caffe.TRAIN)
    out = {"blobs": {name: int(blob.count) for name, blob in net.blobs.items()},
           "params": {name: [int(p.count) for p in ps] for name, ps in net.params.items()},
           "types": {name: net.layers[i].type for i, name in enumerate(net._layer_names)},
           "tops": {name: list(tops) for name, tops in net.top_names.items()}}
    print("JSON " + json.dumps(out))
    net.layers[0].close()
''')


def probe(net_path):
    result = subprocess.run([PYTHON, '-c', PROBE, net_path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, timeout=300,
                            env=dict(os.environ, GLOG_logtostderr='1', GLOG_minloglevel='0'))
    assert result.returncode == 0, result.stderr[-2000:]
    import json
    facts = json.loads(result.stdout.split('JSON ', 1)[1])
    facts['backward'] = set(re.findall(r'\] (\S+) needs backward computation', result.stderr))
    return facts


@pytest.mark.parametrize('key', ['wsddn_train', 'stage1_train', 'stage2_train'])
def test_batch_4_from_1_and_2_equals_the_real_nets_blobs(small_nets, key):
    facts = probe(small_nets[key])
    memory = net_memory.estimate(small_nets[key], BATCH)
    # Every blob once; a Split's tops share its bottom's data, a Reshape's top shares all.
    types = facts['types']
    produced_by = {top: layer for layer, tops in facts['tops'].items() for top in tops}
    data = sum(count for blob, count in facts['blobs'].items()
               if types[produced_by[blob]] not in ('Split', 'Reshape'))
    diffs = sum(count for blob, count in facts['blobs'].items()
                if produced_by[blob] in facts['backward'] and
                types[produced_by[blob]] != 'Reshape')
    weights = sum(sum(counts) for counts in facts['params'].values())
    assert memory.activations == 4 * data
    assert memory.activation_diffs == 4 * diffs
    assert memory.weights == memory.weight_diffs == memory.history == 4 * weights
    assert memory.im2col > 0 and memory.buffers > 0


def test_the_command_line_prints_the_table(small_nets):
    result = subprocess.run([PYTHON, os.path.join(ROOT, 'tools', 'net_memory.py'),
                             small_nets['wsddn_train'], '--batch', '2', '--unit', 'MiB',
                             '--gpu-gb', '0.01,1', '--effective-batch', '8'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    row = [line for line in result.stdout.splitlines() if 'train.prototxt' in line][0]
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[1] == '2'
    memory = net_memory.estimate(small_nets['wsddn_train'], 2)
    assert float(cells[5]) == pytest.approx(memory.activations / 2 ** 20, abs=0.006)
    # 8 images on "1 GiB": one pass; on 0.01 GiB nothing fits beside the CUDA reserve.
    assert cells[-2:] == ['does not fit', '8 x 1']


def test_iter_size_is_the_smallest_that_fits():
    def memory_at(batch):  # 1 GiB per image, nothing else
        return net_memory.Memory(0, 0, 0, batch * 2 ** 30, 0, 0, 0)
    assert net_memory.iter_size_for(memory_at, 32, 10 * 2 ** 30, 0) == (8, 4)
    assert net_memory.iter_size_for(memory_at, 32, 40 * 2 ** 30, 0) == (32, 1)
    assert net_memory.iter_size_for(memory_at, 32, 2 ** 29, 0) is None


def test_a_blob_that_does_not_follow_the_batch_is_refused(tmp_path):
    net = tmp_path / 'odd.prototxt'
    net.write_text(textwrap.dedent('''
        layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }
        layer { name: "fixed" type: "DummyData" top: "y"
                dummy_data_param { shape { dim: 3 dim: 3 } } }
        layer { name: "cat" type: "Concat" bottom: "x" bottom: "y" top: "z"
                concat_param { axis: 0 } }
    '''))
    with pytest.raises(net_memory.NetMemoryError, match='blob z .* does not follow the batch'):
        net_memory.estimate(str(net), 8)
