"""Parsing of caffe training logs (tools/mlic/caffe_log.py) on log text in the real format."""
import math

from mlic import caffe_log

# The shape of `caffe train` output (glog with the year in the date), with a Python layer's
# prints mixed in: one on its own line, one left unterminated so the next glog line is glued to it.
LOG = """\
I20261121 23:59:58.100000 15155 solver.cpp:289] Solving VGG16_wsddn
I20261121 23:59:58.100001 15155 solver.cpp:290] Learning Rate Policy: step
I20261121 23:59:58.200000 15155 solver.cpp:347] Iteration 0, Testing net (#0)
I20261121 23:59:58.300000 15155 solver.cpp:414]     Test net output #0: loss = 0.693147 (* 1 = 0.693147 loss)
I20261121 23:59:58.400000 15155 solver.cpp:239] Iteration 0 (-6.86636e-44 iter/s, 0.3s/20 iters), loss = 0.7
I20261121 23:59:58.400001 15155 solver.cpp:258]     Train net output #0: loss = 0.7 (* 1 = 0.7 loss)
I20261121 23:59:58.400002 15155 sgd_solver.cpp:112] Iteration 0, lr = 5e-05
data layer: loaded batch 1 (Iteration 20, loss = 99 must not be read)
I20261121 23:59:59.500000 15155 solver.cpp:239] Iteration 20 (18.18 iter/s, 1.1s/20 iters), loss = 0.5
I20261121 23:59:59.500001 15155 solver.cpp:258]     Train net output #0: loss_sig = 0.3 (* 1 = 0.3 loss)
prefetch done I20261121 23:59:59.500002 15155 solver.cpp:258]     Train net output #1: loss_soft = 0.4 (* 0.5 = 0.2 loss)
I20261121 23:59:59.500003 15155 sgd_solver.cpp:112] Iteration 20, lr = 5e-06
I20261122 00:00:01.500000 15155 solver.cpp:347] Iteration 40, Testing net (#0)
I20261122 00:00:01.600000 15155 solver.cpp:414]     Test net output #0: loss = 0.25 (* 1 = 0.25 loss)
I20261122 00:00:01.600001 15155 solver.cpp:414]     Test net output #1: accuracy = 0.75
I20261122 00:00:01.700000 15155 solver.cpp:239] Iteration 40, loss = nan
I20261122 00:00:01.800000 15155 solver.cpp:332] Optimization Done.
"""


def test_parse_train_records():
    parsed = caffe_log.parse_log_lines(LOG.splitlines())
    assert parsed['net'] == 'VGG16_wsddn'
    train = parsed['train']
    assert [r['iteration'] for r in train] == [0, 20, 40]
    assert [r['loss'] for r in train[:2]] == [0.7, 0.5]
    assert math.isnan(train[2]['loss'])
    assert [r['lr'] for r in train] == [5e-05, 5e-06, None]
    assert train[1]['iter_per_s'] == 18.18 and train[2]['iter_per_s'] is None
    # The glued line still counts: loss_soft belongs to iteration 20 with its weighted value.
    assert train[1]['outputs'] == {'loss_sig': 0.3, 'loss_soft': 0.4}
    assert train[1]['weighted_outputs'] == {'loss_sig': 0.3, 'loss_soft': 0.2}
    # 23:59:58.1 to 23:59:59.5, then past midnight to 00:00:01.7.
    assert abs(train[1]['seconds'] - 1.4) < 1e-6
    assert abs(train[2]['seconds'] - 3.6) < 1e-6


def test_parse_test_records():
    test = caffe_log.parse_log_lines(LOG.splitlines())['test']
    assert [(r['iteration'], r['test_net']) for r in test] == [(0, 0), (40, 0)]
    assert test[0]['outputs'] == {'loss': 0.693147}
    assert test[1]['outputs'] == {'loss': 0.25, 'accuracy': 0.75}
    assert test[1]['weighted_outputs'] == {'loss': 0.25}


def test_old_glog_date_and_series(tmp_path):
    log = tmp_path / 'train.log'
    log.write_text(
        'I1121 10:00:00.000000 7 solver.cpp:228] Iteration 100, loss = 2.5\n'
        'I1121 10:00:00.000001 7 solver.cpp:244]     Train net output #0: loss = 2.5 '
        '(* 1 = 2.5 loss)\n'
        'I1121 10:00:00.000002 7 sgd_solver.cpp:106] Iteration 100, lr = 0.001\n'
        'Traceback-free noise without a prefix\n'
        'I1121 10:00:10.000000 7 solver.cpp:228] Iteration 200, loss = 1.5e-1\n')
    parsed = caffe_log.parse_log(str(log))
    assert caffe_log.series(parsed['train'], 'loss') == ([100, 200], [2.5, 0.15])
    assert caffe_log.series(parsed['train'], 'lr') == ([100], [0.001])
    assert caffe_log.series(parsed['train'], 'loss') != ([100], [2.5])
    assert parsed['train'][1]['seconds'] == 10.0


def test_empty_or_foreign_text_gives_no_records():
    parsed = caffe_log.parse_log_lines(['hello', 'Iteration 5, loss = 1', ''])
    assert parsed == {'net': None, 'train': [], 'test': []}
