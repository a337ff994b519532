"""Dataset converters on small fixture files written by the tests."""
import json
import os

import cv2
import numpy as np
import pytest

from conftest import load_tool
from mlic import converters

make_datalist = load_tool('make_datalist')


def write_image(path, width=40, height=30):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.full((height, width, 3), 128, np.uint8))


def read_lines(path):
    with open(path) as f:
        return [line.split() for line in f]


def voc_object(name, box, difficult=0):
    return ('<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%d</xmin>'
            '<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>'
            % ((name, difficult) + tuple(box)))


def make_voc(root, annotations):
    os.makedirs(os.path.join(root, 'Annotations'))
    os.makedirs(os.path.join(root, 'ImageSets', 'Main'))
    for image_id, objects in annotations.items():
        with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'w') as f:
            f.write('<annotation><size><width>40</width><height>30</height><depth>3</depth>'
                    '</size>%s</annotation>' % ''.join(objects))
        write_image(os.path.join(root, 'JPEGImages', image_id + '.jpg'))
    with open(os.path.join(root, 'ImageSets', 'Main', 'trainval.txt'), 'w') as f:
        f.write(''.join(i + '\n' for i in annotations))


def test_voc_difficult_only_classes_are_ignored(tmp_path):
    root = str(tmp_path / 'VOC2007')
    make_voc(root, {
        '000001': [voc_object('person', (1, 1, 10, 10), difficult=1),
                   voc_object('dog', (5, 6, 40, 30))],
        '000002': [voc_object('person', (1, 1, 10, 10), difficult=1),
                   voc_object('person', (2, 2, 20, 20))],
    })
    out = str(tmp_path / 'voc.txt')
    boxes = str(tmp_path / 'voc_boxes.json')
    make_datalist.main(['voc', '--root', root, '--split', 'trainval', out, '--boxes', boxes])
    assert open(out + '.classes').read().split() == list(converters.VOC_CLASSES)
    lines = read_lines(out)
    person, dog = converters.VOC_CLASSES.index('person'), converters.VOC_CLASSES.index('dog')
    assert lines[0][0] == os.path.join(root, 'JPEGImages', '000001.jpg')
    first = [int(v) for v in lines[0][1:]]
    second = [int(v) for v in lines[1][1:]]
    assert len(first) == 20 and first[person] == -1 and first[dog] == 1 and sum(first) == 0
    assert second[person] == 1 and sum(second) == 1
    data = json.load(open(boxes))
    assert data['classes'] == list(converters.VOC_CLASSES)
    image = data['images'][0]
    # 1-based inclusive VOC corners become 0-based.
    assert image['boxes'] == [[0, 0, 9, 9], [4, 5, 39, 29]]
    assert image['classes'] == [person, dog] and image['difficult'] == [1, 0]
    assert (image['width'], image['height']) == (40, 30)


def test_voc_class_not_in_the_given_list_names_the_file(tmp_path):
    root = str(tmp_path / 'VOC2007')
    make_voc(root, {'000007': [voc_object('unicorn', (1, 1, 5, 5))]})
    with pytest.raises(ValueError, match=r'000007\.xml.*unicorn.*not in the given class list'):
        converters.voc_entries(root, 'trainval', classes=['person', 'dog'])


def write_voc_xml(root, image_id, objects, filename=None):
    with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'w') as f:
        f.write('<annotation>%s<size><width>40</width><height>30</height><depth>3</depth>'
                '</size>%s</annotation>'
                % ('<filename>%s</filename>' % filename if filename else '',
                   ''.join(objects)))


def test_voc_own_classes_from_the_annotations_sorted_with_a_note(tmp_path, capsys):
    root = str(tmp_path / 'shapes')
    make_voc(root, {'a': [voc_object('square', (1, 1, 10, 10))],
                    'b': [voc_object('circle', (1, 1, 10, 10)),
                          voc_object('triangle', (2, 2, 9, 9), difficult=1)],
                    'c': [voc_object('traffic light', (3, 3, 8, 8))]})
    out = str(tmp_path / 'own.txt')
    make_datalist.main(['voc', '--root', root, out])
    classes = ['circle', 'square', 'traffic_light', 'triangle']
    assert open(out + '.classes').read().split() == classes
    assert [[int(v) for v in line[1:]] for line in read_lines(out)] == [
        [0, 1, 0, 0], [1, 0, 0, -1], [0, 0, 1, 0]]
    note = capsys.readouterr().out
    assert 'sorted: circle, square, traffic_light, triangle' in note
    assert '--classes %s.classes' % out in note


def test_voc_classes_file_sets_the_order_and_may_hold_unseen_classes(tmp_path):
    root = str(tmp_path / 'shapes')
    make_voc(root, {'a': [voc_object('square', (1, 1, 10, 10))],
                    'b': [voc_object('circle', (1, 1, 10, 10))]})
    class_file = str(tmp_path / 'classes.txt')
    with open(class_file, 'w') as f:
        f.write('square\nstar\ncircle\n')
    out = str(tmp_path / 'own.txt')
    make_datalist.main(['voc', '--root', root, '--classes', class_file, out])
    assert open(out + '.classes').read().split() == ['square', 'star', 'circle']
    assert [[int(v) for v in line[1:]] for line in read_lines(out)] == [[1, 0, 0], [0, 0, 1]]


def test_voc_subset_of_pascal_names_keeps_the_20_voc_columns(tmp_path):
    root = str(tmp_path / 'VOC2007')
    make_voc(root, {'000001': [voc_object('dog', (1, 1, 10, 10))]})
    classes, entries = converters.voc_entries(root, 'trainval')
    assert classes == list(converters.VOC_CLASSES)
    assert entries[0].labels[converters.VOC_CLASSES.index('dog')] == 1


def test_voc_image_file_from_the_annotation_filename(tmp_path):
    root = str(tmp_path / 'export')
    make_voc(root, {'img1': [voc_object('circle', (1, 1, 10, 10))],
                    'img2': [voc_object('circle', (1, 1, 10, 10))]})
    # A labelling tool's export: the image keeps its own name and extension.
    write_voc_xml(root, 'img1', [voc_object('circle', (1, 1, 10, 10))], filename='photo_1.png')
    write_image(os.path.join(root, 'JPEGImages', 'photo_1.png'))
    classes, entries = converters.voc_entries(root, 'trainval', path_prefix='')
    assert [e.image for e in entries] == ['photo_1.png', 'img2.jpg']
    assert entries[0].file == os.path.join(os.path.abspath(root), 'JPEGImages', 'photo_1.png')
    assert all(os.path.isfile(e.file) for e in entries)


def test_voc_missing_split_list_is_a_clear_error(tmp_path):
    root = str(tmp_path / 'VOC2007')
    make_voc(root, {'000001': [voc_object('dog', (1, 1, 10, 10))]})
    with pytest.raises(SystemExit, match=r'ImageSets/Main/test\.txt.*split \'test\''):
        make_datalist.main(['voc', '--root', root, '--split', 'test',
                            str(tmp_path / 'out.txt')])


def make_coco(tmp_path):
    data = {
        'categories': [{'id': 5, 'name': 'airplane'}, {'id': 1, 'name': 'person'},
                       {'id': 3, 'name': 'traffic light'}],
        'images': [{'id': 9, 'file_name': 'b.jpg', 'width': 40, 'height': 30},
                   {'id': 2, 'file_name': 'a.jpg', 'width': 40, 'height': 30},
                   {'id': 4, 'file_name': 'empty.jpg', 'width': 40, 'height': 30}],
        'annotations': [
            {'id': 1, 'image_id': 2, 'category_id': 5, 'bbox': [1.5, 2.0, 10.0, 5.25],
             'iscrowd': 0},
            {'id': 2, 'image_id': 9, 'category_id': 1, 'bbox': [0, 0, 40, 30], 'iscrowd': 1},
            {'id': 3, 'image_id': 9, 'category_id': 3, 'bbox': [3, 4, 1, 1], 'iscrowd': 0}],
    }
    path = str(tmp_path / 'instances.json')
    json.dump(data, open(path, 'w'))
    for name in ('a.jpg', 'b.jpg', 'empty.jpg'):
        write_image(str(tmp_path / 'images' / name))
    return path


def test_coco_classes_in_ascending_id_order(tmp_path):
    annotations = make_coco(tmp_path)
    out = str(tmp_path / 'coco.txt')
    boxes = str(tmp_path / 'coco_boxes.json')
    make_datalist.main(['coco', '--annotations', annotations, '--images',
                        str(tmp_path / 'images'), out, '--boxes', boxes])
    assert open(out + '.classes').read().split() == ['person', 'traffic_light', 'airplane']
    lines = read_lines(out)
    # Ascending image id; the image without annotations is left out.
    assert [os.path.basename(line[0]) for line in lines] == ['a.jpg', 'b.jpg']
    assert [line[1:] for line in lines] == [['0', '0', '1'], ['1', '1', '0']]
    images = json.load(open(boxes))['images']
    assert images[0]['boxes'] == [[1, 2, 11, 7]] and images[0]['classes'] == [2]
    assert images[1]['boxes'] == [[0, 0, 39, 29], [3, 4, 3, 4]]
    assert images[1]['difficult'] == [1, 0]


def test_coco_keep_unlabelled(tmp_path):
    annotations = make_coco(tmp_path)
    classes, entries = converters.coco_entries(annotations, str(tmp_path / 'images'),
                                               keep_unlabelled=True)
    assert [os.path.basename(e.image) for e in entries] == ['a.jpg', 'empty.jpg', 'b.jpg']
    assert entries[1].labels == [0, 0, 0]


def make_nuswide(tmp_path, concepts, images, labels, split='Train'):
    root = tmp_path / 'NUS-WIDE'
    (root / 'ImageList').mkdir(parents=True)
    (root / 'Groundtruth' / 'TrainTestLabels').mkdir(parents=True)
    (root / 'Concepts81.txt').write_text(''.join(c + '\n' for c in concepts))
    (root / 'ImageList' / (split + 'Imagelist.txt')).write_text(
        ''.join(i + '\n' for i in images))
    for k, concept in enumerate(concepts):
        path = root / 'Groundtruth' / 'TrainTestLabels' / ('Labels_%s_%s.txt' % (concept, split))
        path.write_text(''.join('%d\n' % row[k] for row in labels))
    return str(root)


def test_nuswide_concepts_and_image_list(tmp_path):
    concepts = ['airport', 'animal', 'beach']
    listed = ['actor\\0001_1.jpg', 'C:\\ImageData\\Flickr\\zoo\\0002_2.jpg', 'actor\\0003_3.jpg']
    root = make_nuswide(tmp_path, concepts, listed, [(1, 0, 1), (0, 1, 0), (0, 0, 0)])
    for relative in ('actor/0001_1.jpg', 'zoo/0002_2.jpg', 'actor/0003_3.jpg'):
        write_image(str(tmp_path / 'Flickr' / relative))
    out = str(tmp_path / 'nus.txt')
    make_datalist.main(['nuswide', '--root', root, '--images', str(tmp_path / 'Flickr'),
                        '--split', 'train', out])
    assert open(out + '.classes').read().split() == concepts
    lines = read_lines(out)
    assert lines == [[str(tmp_path / 'Flickr' / 'actor' / '0001_1.jpg'), '1', '0', '1'],
                     [str(tmp_path / 'Flickr' / 'zoo' / '0002_2.jpg'), '0', '1', '0']]


def test_nuswide_label_file_of_wrong_length_is_named(tmp_path):
    root = make_nuswide(tmp_path, ['airport', 'beach'], ['a\\1.jpg', 'a\\2.jpg'],
                        [(1, 0), (0, 1)])
    with open(os.path.join(root, 'Groundtruth', 'TrainTestLabels',
                           'Labels_beach_Train.txt'), 'a') as f:
        f.write('1\n')
    with pytest.raises(ValueError, match='Labels_beach_Train.txt: 3 lines'):
        converters.nuswide_entries(root, str(tmp_path), 'train')


def test_csv_multi_hot_and_name_list_forms(tmp_path):
    for name in ('x.png', 'sub/y.png'):
        write_image(str(tmp_path / 'photos' / name))
    (tmp_path / 'hot.csv').write_text('filename,cat,dog,bird\nx.png,1,0,-1\nsub/y.png,0,1,1\n')
    (tmp_path / 'names.csv').write_text('filename,labels\nx.png,dog;cat\nsub/y.png,bird\n')
    hot, named = str(tmp_path / 'hot.txt'), str(tmp_path / 'named.txt')
    make_datalist.main(['csv', '--csv', str(tmp_path / 'hot.csv'), '--images',
                        str(tmp_path / 'photos'), hot])
    make_datalist.main(['csv', '--csv', str(tmp_path / 'names.csv'), '--images',
                        str(tmp_path / 'photos'), named, '--path-prefix', ''])
    assert open(hot + '.classes').read().split() == ['cat', 'dog', 'bird']
    assert [line[1:] for line in read_lines(hot)] == [['1', '0', '-1'], ['0', '1', '1']]
    # Names found, sorted; paths relative (empty prefix).
    assert open(named + '.classes').read().split() == ['bird', 'cat', 'dog']
    assert read_lines(named) == [['x.png', '0', '1', '1'], ['sub/y.png', '1', '0', '0']]
    classes, entries = converters.csv_entries(str(tmp_path / 'names.csv'), str(tmp_path),
                                              classes=['dog', 'cat', 'bird'])
    assert entries[0].labels == [1, 1, 0] and entries[1].labels == [0, 0, 1]


@pytest.mark.parametrize('text, message', [
    ('name,cat\nx.png,1\n', 'line 1: header'),
    ('filename,cat,dog\nx.png,1\n', 'line 2: expected 3 fields'),
    ('filename,cat\nx.png,yes\n', "line 2: class cat: expected 1, 0 or -1, got 'yes'"),
])
def test_csv_errors_name_the_line(tmp_path, text, message):
    (tmp_path / 'bad.csv').write_text(text)
    with pytest.raises(ValueError, match=message):
        converters.csv_entries(str(tmp_path / 'bad.csv'), str(tmp_path))


def test_missing_images_are_an_error_unless_skipped(tmp_path, capsys):
    write_image(str(tmp_path / 'photos' / 'here.png'))
    (tmp_path / 'l.csv').write_text('filename,cat\nhere.png,1\ngone.png,1\n')
    out = str(tmp_path / 'l.txt')
    args = ['csv', '--csv', str(tmp_path / 'l.csv'), '--images', str(tmp_path / 'photos'), out]
    with pytest.raises(SystemExit) as exit_info:
        make_datalist.main(args)
    assert 'gone.png does not exist' in str(exit_info.value)
    make_datalist.main(args + ['--skip-missing'])
    assert [os.path.basename(line[0]) for line in read_lines(out)] == ['here.png']


def test_coco_entry_without_a_field_is_named(tmp_path):
    path = tmp_path / 'instances.json'
    path.write_text(json.dumps({'categories': [{'id': 1, 'name': 'person'}],
                                'images': [{'id': 1, 'file_name': 'a.jpg'}],
                                'annotations': [{'id': 1, 'image_id': 1, 'category_id': 1}]}))
    with pytest.raises(ValueError, match="instances.json: an entry has no field 'bbox'"):
        converters.coco_entries(str(path), str(tmp_path))
