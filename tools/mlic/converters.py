"""Dataset annotations -> labels-only datalists, class-order files and ground-truth box JSON.

One path from a dataset to a training datalist:
  1. a converter here writes `<datalist>` with one line `image l_1 .. l_C` per image (no
     proposals yet), `<datalist>.classes` (class names in label order, one per line) and, where
     the dataset has boxes, a ground-truth box JSON;
  2. mlic.proposals.complete_datalist computes (or takes from its cache) the proposals of every
     image and writes the final datalist `image l_1 .. l_C (x1 y1 x2 y2 s)*`.

Labels are 1 (present), 0 (absent) and -1 (ignore: VOC's "difficult"-only classes).
Image paths in the datalist are absolute unless a path prefix is given, in which case they are
prefix + the dataset-relative path: an empty prefix gives paths relative to the image folder, for
the data layer's root_folder.

Ground-truth box JSON (write_boxes_json):
  {"classes": [names], "coordinates": "...",
   "images": [{"image": path as in the datalist, "width": W, "height": H,
               "boxes": [[x1, y1, x2, y2], ...], "classes": [k, ...],
               "difficult": [0 or 1, ...]}, ...]}
Boxes are in pixels of the original image, 0-based, corners inclusive, in datalist order.
"""
import csv
import json
import os
import xml.etree.ElementTree as ElementTree

import numpy as np

from mlic.datalist import format_line

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')

BOX_COORDINATES = 'original image pixels, 0-based, inclusive corners x1 y1 x2 y2'


class Entry(object):
    """One image of a dataset: its datalist path, the file to read, labels and optional boxes."""

    def __init__(self, image, labels, file=None, width=None, height=None, boxes=None,
                 box_classes=None, difficult=None):
        self.image = image
        self.file = file if file is not None else image
        self.labels = list(labels)
        self.width = width
        self.height = height
        self.boxes = boxes
        self.box_classes = box_classes
        self.difficult = difficult


def classes_path(datalist_path):
    return datalist_path + '.classes'


def write_classes(path, classes):
    with open(path, 'w') as f:
        f.write(''.join(name + '\n' for name in classes))


def read_classes(path):
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError('%s: no class names' % path)
    return names


def write_labels_datalist(path, classes, entries):
    """Writes `path` (lines `image l_1 .. l_C`) and `path`.classes."""
    no_proposals = np.zeros((0, 5))
    for entry in entries:
        if len(entry.labels) != len(classes):
            raise ValueError('%s: %d labels for %d classes' % (entry.image, len(entry.labels),
                                                               len(classes)))
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, 'w') as f:
        for entry in entries:
            f.write(format_line(entry.image, entry.labels, no_proposals) + '\n')
    write_classes(classes_path(path), classes)


def write_boxes_json(path, classes, entries):
    images = []
    for entry in entries:
        images.append({'image': entry.image, 'width': entry.width, 'height': entry.height,
                       'boxes': [[int(v) for v in box] for box in entry.boxes],
                       'classes': [int(k) for k in entry.box_classes],
                       'difficult': [int(d) for d in entry.difficult]})
    with open(path, 'w') as f:
        json.dump({'classes': list(classes), 'coordinates': BOX_COORDINATES, 'images': images},
                  f)


def _datalist_image(image_dir, relative, path_prefix):
    """(path written in the datalist, file on disk) of a dataset-relative image path."""
    file = os.path.join(os.path.abspath(image_dir), relative)
    return (file if path_prefix is None else path_prefix + relative), file


def keep_existing(entries, skip_missing):
    """Entries whose image file exists; a missing one is an error unless skip_missing."""
    kept = []
    for entry in entries:
        if os.path.isfile(entry.file):
            kept.append(entry)
        elif not skip_missing:
            raise IOError('image file %s does not exist (pass --skip-missing to leave such '
                          'images out)' % entry.file)
    return kept


# ---------------------------------------------------------------- PASCAL VOC format
def voc_entries(voc_root, split, path_prefix=None, classes=None):
    """A VOC-format folder (VOCdevkit/VOC2007, or a labelling tool's VOC export): the images of
    ImageSets/Main/<split>.txt, with Annotations/<id>.xml and the image JPEGImages/<filename>
    (the annotation's <filename>; <id>.jpg when it has none).

    Class order: `classes` when given (an annotation naming another class is an error); else
    PASCAL VOC's 20 classes in VOC's order when every name found is one of them (a real VOC
    folder keeps VOC's label columns whichever classes its split happens to hold); else the
    names found, sorted. Names are made one word as COCO's ("traffic light" -> traffic_light).
    A class whose every instance in the image is "difficult" gets
    label -1."""
    list_path = os.path.join(voc_root, 'ImageSets', 'Main', split + '.txt')
    try:
        with open(list_path) as f:
            ids = [line.split()[0] for line in f if line.strip()]
    except OSError as error:
        raise ValueError('%s: cannot read the image list of split %r: %s'
                         % (list_path, split, error.strerror or error))
    if not ids:
        raise ValueError('%s: no image ids' % list_path)
    annotations = [_read_voc_xml(os.path.join(voc_root, 'Annotations', image_id + '.xml'))
                   for image_id in ids]
    classes = voc_class_order(annotations, classes)
    entries = []
    for image_id, annotation in zip(ids, annotations):
        filename = annotation['filename'] or image_id + '.jpg'
        image, file = _datalist_image(os.path.join(voc_root, 'JPEGImages'), filename,
                                      path_prefix)
        labels = [0] * len(classes)
        box_classes = []
        for name, hard in zip(annotation['names'], annotation['difficult']):
            k = classes.index(name)
            box_classes.append(k)
            if not hard:
                labels[k] = 1
            elif labels[k] == 0:
                labels[k] = -1
        entries.append(Entry(image, labels, file, annotation['width'], annotation['height'],
                             annotation['boxes'], box_classes, annotation['difficult']))
    return classes, entries


def voc_class_order(annotations, classes=None):
    """The class list of voc_entries (see there) from its parsed annotations."""
    found = sorted({name for a in annotations for name in a['names']})
    if classes is not None:
        classes = list(classes)
        for annotation in annotations:
            for name in annotation['names']:
                if name not in classes:
                    raise ValueError('%s: class name %r is not in the given class list (%s)'
                                     % (annotation['path'], name, ', '.join(classes)))
        return classes
    if not found:
        raise ValueError('no object in any annotation: give the class list (--classes)')
    if set(found) <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    return found


def _xml_number(node, tag, xml_path):
    found = node.find(tag)
    if found is None or found.text is None:
        raise ValueError('%s: missing <%s>' % (xml_path, tag))
    try:
        return int(round(float(found.text)))
    except ValueError:
        raise ValueError('%s: <%s> is not a number: %r' % (xml_path, tag, found.text))


def _read_voc_xml(xml_path):
    """{'path', 'filename' ('' when absent), 'width', 'height', 'names', 'boxes' (0-based),
    'difficult'} of one VOC annotation."""
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (OSError, ElementTree.ParseError) as error:
        raise ValueError('%s: cannot read annotation: %s' % (xml_path, error))
    size = root.find('size')
    if size is None:
        raise ValueError('%s: missing <size>' % xml_path)
    width, height = _xml_number(size, 'width', xml_path), _xml_number(size, 'height', xml_path)
    names, boxes, difficult = [], [], []
    for obj in root.findall('object'):
        # One word per name, as the COCO converter does ("traffic light" -> traffic_light).
        name = '_'.join((obj.findtext('name') or '').split())
        if not name:
            raise ValueError('%s: an <object> without <name>' % xml_path)
        hard = (obj.findtext('difficult') or '0').strip() == '1'
        box = obj.find('bndbox')
        if box is None:
            raise ValueError('%s: object %r without <bndbox>' % (xml_path, name))
        # VOC corners are 1-based inclusive.
        boxes.append([_xml_number(box, tag, xml_path) - 1
                      for tag in ('xmin', 'ymin', 'xmax', 'ymax')])
        names.append(name)
        difficult.append(int(hard))
    return {'path': xml_path, 'filename': (root.findtext('filename') or '').strip(),
            'width': width, 'height': height, 'names': names, 'boxes': boxes,
            'difficult': difficult}


# ---------------------------------------------------------------- MS-COCO 2014
def coco_entries(annotation_path, image_dir, path_prefix=None, keep_unlabelled=False):
    """MS-COCO instances JSON. Class order is pinned to ascending category id (the 80 ids of
    COCO 2014 run 1..90 with gaps); names have spaces replaced by '_' ("traffic_light"), so
    that every name is one word. Crowd annotations count for the labels and are marked
    difficult in the boxes. Images are in ascending image id; those without any annotation
    are left out unless keep_unlabelled."""
    try:
        with open(annotation_path) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError('%s: cannot read COCO annotations: %s' % (annotation_path, error))
    for key in ('images', 'annotations', 'categories'):
        if key not in data:
            raise ValueError('%s: no "%s" field' % (annotation_path, key))
    try:
        return _coco_entries(data, annotation_path, image_dir, path_prefix, keep_unlabelled)
    except KeyError as error:
        raise ValueError('%s: an entry has no field %s' % (annotation_path, error))


def _coco_entries(data, annotation_path, image_dir, path_prefix, keep_unlabelled):
    categories = sorted(data['categories'], key=lambda c: c['id'])
    index_of = {c['id']: k for k, c in enumerate(categories)}
    classes = [c['name'].replace(' ', '_') for c in categories]
    per_image = {}
    for ann in data['annotations']:
        if ann['category_id'] not in index_of:
            raise ValueError('%s: annotation %s has unknown category_id %s'
                             % (annotation_path, ann.get('id'), ann['category_id']))
        per_image.setdefault(ann['image_id'], []).append(ann)
    entries = []
    for image in sorted(data['images'], key=lambda i: i['id']):
        anns = per_image.get(image['id'], [])
        if not anns and not keep_unlabelled:
            continue
        labels = [0] * len(classes)
        boxes, box_classes, difficult = [], [], []
        for ann in anns:
            k = index_of[ann['category_id']]
            labels[k] = 1
            x, y, w, h = ann['bbox']
            x1, y1 = int(np.floor(x)), int(np.floor(y))
            boxes.append([x1, y1, max(x1, int(np.ceil(x + w)) - 1),
                          max(y1, int(np.ceil(y + h)) - 1)])
            box_classes.append(k)
            difficult.append(int(ann.get('iscrowd', 0)))
        path, file = _datalist_image(image_dir, image['file_name'], path_prefix)
        entries.append(Entry(path, labels, file, image['width'], image['height'], boxes,
                             box_classes, difficult))
    return classes, entries


# ---------------------------------------------------------------- NUS-WIDE
def _nuswide_relative(listed):
    """Image list entries look like `actor\\0001_2124494179.jpg` or
    `C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg`: keep `actor/0001_2124494179.jpg`."""
    parts = listed.strip().replace('\\', '/').split('/')
    if 'Flickr' in parts:
        parts = parts[parts.index('Flickr') + 1:]
    return '/'.join(parts)


def nuswide_entries(root, image_dir, split='train', path_prefix=None, keep_unlabelled=False):
    """NUS-WIDE, 81 concepts. root holds Concepts81.txt, ImageList/ and Groundtruth/.
    split 'train' / 'test': ImageList/{Train,Test}Imagelist.txt with
    Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt; split 'all':
    ImageList/Imagelist.txt with Groundtruth/AllLabels/Labels_<concept>.txt.
    Class order: Concepts81.txt (alphabetical). Images without any concept are left out unless
    keep_unlabelled."""
    concepts_file = os.path.join(root, 'Concepts81.txt')
    classes = read_classes(concepts_file)
    if split in ('train', 'test'):
        title = split.capitalize()
        list_path = os.path.join(root, 'ImageList', title + 'Imagelist.txt')
        label_path = lambda c: os.path.join(root, 'Groundtruth', 'TrainTestLabels',
                                            'Labels_%s_%s.txt' % (c, title))
    elif split == 'all':
        list_path = os.path.join(root, 'ImageList', 'Imagelist.txt')
        label_path = lambda c: os.path.join(root, 'Groundtruth', 'AllLabels',
                                            'Labels_%s.txt' % c)
    else:
        raise ValueError("NUS-WIDE split must be 'train', 'test' or 'all', got %r" % split)
    with open(list_path) as f:
        images = [_nuswide_relative(line) for line in f if line.strip()]
    labels = np.zeros((len(images), len(classes)), np.int64)
    for k, concept in enumerate(classes):
        path = label_path(concept)
        with open(path) as f:
            values = [line.strip() for line in f if line.strip()]
        if len(values) != len(images):
            raise ValueError('%s: %d lines, but %s lists %d images'
                             % (path, len(values), list_path, len(images)))
        for i, value in enumerate(values):
            if value not in ('0', '1'):
                raise ValueError('%s line %d: expected 0 or 1, got %r' % (path, i + 1, value))
            labels[i, k] = int(value)
    entries = []
    for relative, row in zip(images, labels):
        if not row.any() and not keep_unlabelled:
            continue
        path, file = _datalist_image(image_dir, relative, path_prefix)
        entries.append(Entry(path, row.tolist(), file))
    return classes, entries


# ---------------------------------------------------------------- image folder + CSV
def csv_entries(csv_path, image_dir, classes=None, path_prefix=None):
    """A CSV of labels for images under image_dir, in one of two forms (header required):
      filename,<class 1>,<class 2>,...   with 1, 0 or -1 per class (class order = header);
      filename,labels                    with names separated by ';' (order: `classes` if
                                         given, else the names found, sorted)."""
    with open(csv_path, newline='') as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError('%s: empty file' % csv_path)
    header = [h.strip() for h in rows[0]]
    if len(header) < 2 or header[0].lower() != 'filename':
        raise ValueError('%s line 1: header must start with "filename", then either '
                         '"labels" or the class names; got %r' % (csv_path, ','.join(header)))
    body = [(n + 2, row) for n, row in enumerate(rows[1:]) if any(c.strip() for c in row)]
    entries = []
    if header[1:] == ['labels']:
        names_per_row = []
        for line, row in body:
            if len(row) != 2:
                raise ValueError('%s line %d: expected 2 fields, got %d'
                                 % (csv_path, line, len(row)))
            names_per_row.append([n.strip() for n in row[1].split(';') if n.strip()])
        found = sorted({n for names in names_per_row for n in names})
        classes = list(classes) if classes is not None else found
        for (line, row), names in zip(body, names_per_row):
            labels = [0] * len(classes)
            for name in names:
                if name not in classes:
                    raise ValueError('%s line %d: class %r is not in the class list'
                                     % (csv_path, line, name))
                labels[classes.index(name)] = 1
            path, file = _datalist_image(image_dir, row[0].strip(), path_prefix)
            entries.append(Entry(path, labels, file))
        return classes, entries
    if classes is not None and list(classes) != header[1:]:
        raise ValueError('%s line 1: the header\'s class names differ from the given class '
                         'list' % csv_path)
    classes = header[1:]
    for line, row in body:
        if len(row) != len(header):
            raise ValueError('%s line %d: expected %d fields, got %d'
                             % (csv_path, line, len(header), len(row)))
        labels = []
        for name, value in zip(classes, row[1:]):
            if value.strip() not in ('1', '0', '-1'):
                raise ValueError('%s line %d: class %s: expected 1, 0 or -1, got %r'
                                 % (csv_path, line, name, value))
            labels.append(int(value))
        path, file = _datalist_image(image_dir, row[0].strip(), path_prefix)
        entries.append(Entry(path, labels, file))
    return classes, entries


def convert(out_path, classes, entries, boxes_path=None, skip_missing=False):
    """Writes the labels-only datalist (and its .classes, and the box JSON when boxes_path).
    Returns the number of images written."""
    entries = keep_existing(entries, skip_missing)
    if not entries:
        raise ValueError('no image left to write to %s' % out_path)
    write_labels_datalist(out_path, classes, entries)
    if boxes_path:
        if entries[0].boxes is None:
            raise ValueError('this dataset has no boxes to write to %s' % boxes_path)
        write_boxes_json(boxes_path, classes, entries)
    return len(entries)
