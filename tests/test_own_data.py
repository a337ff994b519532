"""Your own data, end to end, as a user runs it: a VOC-format folder with its own class names
(images of varied sizes and aspect ratios, one difficult object, a class that is only ever
difficult) goes through tools/make_datalist.py voc, tools/compute_proposals.py,
tools/validate_datalist.py and tools/run_pipeline.py with the small preset at a toy schedule,
each run as a command, to the paper's table."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np

from mlic import evaluation
from mlic.paths import ROOT

# 'star' is only ever marked difficult: its label is ignored (-1) on every image.
CLASSES = ('circle', 'square', 'triangle')
NUM_TRAIN, NUM_TEST = 24, 12
IMAGE_SIZE, BBOX_NUM = 96, 16  # the nets' input and proposals per image
TOY_ITERATIONS = 12
MAX_TERMINAL_LINES = 200


def draw(image, name, box, colour):
    x1, y1, x2, y2 = box
    if name == 'circle':
        cv2.ellipse(image, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2),
                    0, 0, 360, colour, -1)
    elif name == 'square':
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, -1)
    elif name == 'triangle':
        points = np.array([[(x1 + x2) // 2, y1], [x1, y2], [x2, y2]], np.int32)
        cv2.fillPoly(image, [points], colour)
    else:  # star: two crossed bars
        cv2.rectangle(image, (x1, (y1 + y2) // 2 - 2), (x2, (y1 + y2) // 2 + 2), colour, -1)
        cv2.rectangle(image, ((x1 + x2) // 2 - 2, y1), ((x1 + x2) // 2 + 2, y2), colour, -1)


def voc_object(name, box, difficult):
    x1, y1, x2, y2 = box
    return ('<object><name>%s</name><pose>Unspecified</pose><truncated>0</truncated>'
            '<difficult>%d</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax>'
            '<ymax>%d</ymax></bndbox></object>' % (name, difficult, x1 + 1, y1 + 1, x2 + 1,
                                                   y2 + 1))


def make_voc_folder(root, seed=11):
    """A labelling tool's VOC export: JPEGImages/<name>.png named by <filename>, sizes from
    90x150 to 260x120, one to three shapes an image."""
    rng = np.random.RandomState(seed)
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(root, sub))
    ids = {'train': [], 'test': []}
    for index in range(NUM_TRAIN + NUM_TEST):
        split = 'train' if index < NUM_TRAIN else 'test'
        width, height = int(rng.randint(90, 261)), int(rng.randint(90, 181))
        image = rng.randint(90, 140, (height, width, 3)).astype(np.uint8)
        # Every class on images of both splits: the classes in turn, plus random others.
        names = [CLASSES[index % len(CLASSES)]]
        names += [CLASSES[k] for k in rng.choice(len(CLASSES), rng.randint(0, 3), replace=False)
                  if CLASSES[k] not in names]
        objects = []
        for name in names:
            side = int(rng.randint(24, max(26, min(width, height) * 2 // 3)))
            x1, y1 = int(rng.randint(0, width - side)), int(rng.randint(0, height - side))
            box = (x1, y1, x1 + side - 1, y1 + side - 1)
            draw(image, name, box, tuple(int(c) for c in rng.randint(0, 60, 3)) if
                 name != 'square' else (230, 230, 230))
            # One difficult object: the first test image's circle.
            objects.append(voc_object(name, box, int(index == NUM_TRAIN and name == 'circle')))
        if index % 5 == 0:
            side = 20
            x1, y1 = int(rng.randint(0, width - side)), int(rng.randint(0, height - side))
            box = (x1, y1, x1 + side - 1, y1 + side - 1)
            draw(image, 'star', box, (20, 200, 20))
            objects.append(voc_object('star', box, 1))
        image_id = 'shot%03d' % index
        filename = image_id + '.png'
        cv2.imwrite(os.path.join(root, 'JPEGImages', filename), image)
        with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'w') as f:
            f.write('<annotation><folder>JPEGImages</folder><filename>%s</filename><size>'
                    '<width>%d</width><height>%d</height><depth>3</depth></size>%s'
                    '</annotation>' % (filename, width, height, ''.join(objects)))
        ids[split].append(image_id)
    for split, names in ids.items():
        with open(os.path.join(root, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write(''.join(name + '\n' for name in names))


def run_tool(tool, *args, cwd):
    """A tool as a command, with the terminal's output (stdout and stderr) returned."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', tool)] + list(args),
                          cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900)
    assert done.returncode == 0, '%s failed:\n%s' % (tool, done.stdout[-4000:])
    return done.stdout


def test_a_voc_folder_of_own_classes_goes_to_the_table(tmp_path):
    work = str(tmp_path)
    make_voc_folder(os.path.join(work, 'shapes'))
    terminal = []
    lists = os.path.join(work, 'lists')
    terminal += run_tool('make_datalist.py', 'voc', '--root', 'shapes', '--split', 'train',
                         'lists/train_labels.txt', cwd=work).splitlines()
    # The class order was taken from the annotations, sorted, and said.
    assert any('class order taken from the annotations, sorted: circle, square, star, triangle'
               in line for line in terminal)
    terminal += run_tool('make_datalist.py', 'voc', '--root', 'shapes', '--split', 'test',
                         '--classes', 'lists/train_labels.txt.classes', '--boxes',
                         'lists/test_boxes.json', 'lists/test_labels.txt',
                         cwd=work).splitlines()
    for split in ('train', 'test'):
        terminal += run_tool('compute_proposals.py', 'lists/%s_labels.txt' % split,
                             'lists/%s.txt' % split, '--bbox-num', str(BBOX_NUM), '--new-size',
                             str(IMAGE_SIZE), str(IMAGE_SIZE), '--workers', '1',
                             cwd=work).splitlines()
        terminal += run_tool('validate_datalist.py', 'lists/%s.txt' % split, '--att-num', '4',
                             '--bbox-num', str(BBOX_NUM), '--new-width', str(IMAGE_SIZE),
                             '--new-height', str(IMAGE_SIZE), cwd=work).splitlines()
    with open(os.path.join(lists, 'train.txt')) as f:
        train_labels = np.array([[int(v) for v in line.split()[1:5]] for line in f])
    star = 2
    assert set(train_labels[:, star]) <= {0, -1} and (train_labels[:, star] == -1).any()

    toy = ''.join('[nets.solver.%s]\nmax_iter = %d\nstepsize = %d\nsnapshot = %d\n\n'
                  % (net, TOY_ITERATIONS, TOY_ITERATIONS, TOY_ITERATIONS)
                  for net in ('wsddn', 'stage1', 'stage2', 'student'))
    config = os.path.join(work, 'shapes.toml')
    with open(config, 'w') as f:
        f.write('folder = "%s"\nseeds = [1]\njobs = 1\n\n[datalists]\n'
                'train = "%s"\ntest = "%s"\ntest_boxes = "%s"\nbbox_num = %d\nimage_size = %d\n'
                '\n[nets]\npreset = "small"\n\n%s'
                % (os.path.join(work, 'run'), os.path.join(lists, 'train.txt'),
                   os.path.join(lists, 'test.txt'), os.path.join(lists, 'test_boxes.json'),
                   BBOX_NUM, IMAGE_SIZE, toy))
    terminal += run_tool('run_pipeline.py', '--config', config, cwd=work).splitlines()

    run = os.path.join(work, 'run')
    table = json.load(open(os.path.join(run, 'results.json')))
    assert [row['name'] for row in table['rows']] == [
        'Teacher (WSDDN)', 'Student w/o KD', 'Stage 1 only', 'Stage 2 only', 'Student w/ KD']
    markdown = open(os.path.join(run, 'results.md')).read()
    # The warnings stand above the table, in the file and on the terminal: a dozen test images,
    # and 'star' (difficult only) has no positive.
    table_start = markdown.index('| Model |')
    assert 0 <= markdown.index('> **WARNING**: the test split has only 12 images') < table_start
    assert 0 <= markdown.index('positive test image (1 of 4): star.') < table_start
    assert any('WARNING' in line and 'test split has only 12 images' in line
               for line in terminal)
    # Every model's scores depend on the image.
    evaluated = os.path.join(run, 'seed1', 'evaluate')
    scores = {name: np.load(os.path.join(evaluated, name + '_scores.npy'))
              for name in ('student', 'stage1_only', 'stage2_only', 'stage2')}
    scores['teacher'] = np.load(os.path.join(run, 'seed1', 'teacher_eval', 'teacher_scores.npy'))
    for name, values in scores.items():
        assert values.shape == (NUM_TEST, 4), name
        assert evaluation.score_spread(values) >= evaluation.MIN_SCORE_SPREAD, name
    assert 'hardly depend on the image' not in markdown
    # A person can read what the whole run printed.
    assert len(terminal) < MAX_TERMINAL_LINES, '\n'.join(terminal)
