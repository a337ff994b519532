"""The datalist: one image per line, `path l_1 .. l_C (x1 y1 x2 y2 s)*B` (SPEC 2).

Box corners are 0-based inclusive pixels of the image after it is resized to the datalist's
new_width x new_height; `s` is the proposal's score. Lines may carry fewer than `bbox_num`
proposals: they are padded with PADDING_ROW, which every plugin layer skips (a proposal whose x1
is negative is padding; see caffe_layers/proto/mlic_layers.proto).
"""
import collections
import logging
import os

import numpy as np

PADDING_ROW = (-1.0, -1.0, -1.0, -1.0, -1.0)


def is_padding(proposals):
    """Boolean mask of padding rows of a (B, 5) proposal array."""
    return np.asarray(proposals)[:, 0] < 0


def format_number(value):
    """Shortest text that reads back as the same float32 value (ints without a decimal point)."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return np.format_float_positional(np.float32(value), unique=True, trim='-')


def format_line(image_path, labels, proposals):
    """One datalist line. labels: C numbers; proposals: (B, 5) rows x1 y1 x2 y2 s."""
    if any(c.isspace() for c in image_path):
        raise ValueError('image path %r contains white space, which the datalist format cannot '
                         'hold' % image_path)
    fields = [image_path]
    fields += [format_number(v) for v in labels]
    fields += [format_number(v) for v in np.asarray(proposals, dtype=np.float64).reshape(-1)]
    return ' '.join(fields)


def pad_proposals(proposals, bbox_num):
    """(B, 5) -> (bbox_num, 5): padding rows appended, or the bbox_num best-scoring rows kept
    (in their original order). Returns (array, number_cut)."""
    proposals = np.asarray(proposals, dtype=np.float32).reshape(-1, 5)
    real = proposals[~is_padding(proposals)]
    cut = max(0, len(real) - bbox_num)
    if cut:
        keep = np.sort(np.argsort(-real[:, 4], kind='stable')[:bbox_num])
        real = real[keep]
    out = np.tile(np.asarray(PADDING_ROW, dtype=np.float32), (bbox_num, 1))
    out[:len(real)] = real
    return out, cut


# --- Reading and checking datalists ---------------------------------------------------------

IGNORE_LABEL = -1.0  # a label that counts neither way (VOC "difficult")
VALID_LABELS = (0.0, 1.0, IGNORE_LABEL)
BOX_FIELDS = ('x1', 'y1', 'x2', 'y2', 's')
# A line with hundreds of bad boxes is reported by its first few problems and a count.
MAX_PROBLEMS_PER_LINE = 3

logger = logging.getLogger(__name__)

Entry = collections.namedtuple('Entry', 'image_path labels proposals line_number')
Entry.__doc__ = ('One image of a datalist: labels (C,) float32, proposals (k, 5) float32 rows '
                 'x1 y1 x2 y2 s, line_number 1-based.')


class DatalistError(ValueError):
    """A datalist that cannot be used; `problems` holds every `file:line: field: reason`."""

    def __init__(self, problems, limit=20):
        self.problems = list(problems)
        shown = self.problems[:limit]
        if len(self.problems) > limit:
            shown.append('... and %d more problems (tools/validate_datalist.py lists them all)'
                         % (len(self.problems) - limit))
        super().__init__('\n'.join(shown))


def field_name(index, num_classes):
    """Name of the index-th number after the image path (0-based)."""
    if index < num_classes:
        return 'labels[%d]' % index
    row, column = divmod(index - num_classes, 5)
    return 'proposals[%d].%s' % (row, BOX_FIELDS[column])


def parse_numbers(tokens, num_classes):
    """floats of tokens, or raises ValueError naming every token that is not a number."""
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        bad = []
        for index, token in enumerate(tokens):
            try:
                float(token)
            except ValueError:
                bad.append('%s: %r is not a number' % (field_name(index, num_classes), token))
        raise ValueError(bad)


def check_entry(labels, proposals, new_width=None, new_height=None, labels_only=False):
    """(field, reason) for each problem of one parsed line; boxes are checked against the
    resized image when its size is given. labels_only: a line without proposals is fine (the
    input of the proposal tool)."""
    problems = []
    values = np.concatenate([labels, proposals.reshape(-1)])
    for index in np.flatnonzero(~np.isfinite(values)):
        problems.append((field_name(index, len(labels)),
                         '%s is not finite' % float(values[index])))
    if problems:
        return problems
    for k in np.flatnonzero(~np.isin(labels, VALID_LABELS)):
        problems.append(('labels[%d]' % k, '%s is not 0, 1 or %g (ignore)'
                         % (format_number(labels[k]), IGNORE_LABEL)))
    padding = is_padding(proposals)
    if not labels_only and (len(proposals) == 0 or padding.all()):
        problems.append(('proposals', 'none that is real (every image needs at least one box '
                         'for the detector to score it)'))
    fmt = format_number
    for j in np.flatnonzero(padding & ~np.all(proposals == PADDING_ROW, axis=1)):
        problems.append(('proposals[%d]' % j, 'padding row (x1 < 0) must be exactly '
                         '-1 -1 -1 -1 -1, got %s' % ' '.join(map(fmt, proposals[j]))))
    real = proposals.copy()
    real[padding] = 0  # the checks below are about real boxes only
    x1, y1, x2, y2 = real[:, 0], real[:, 1], real[:, 2], real[:, 3]
    for j, column in np.argwhere(real[:, 1:4] < 0):
        problems.append(('proposals[%d].%s' % (j, BOX_FIELDS[column + 1]),
                         'negative coordinate %s on a non-padding row (x1 >= 0)'
                         % fmt(real[j, column + 1])))
    for j in np.flatnonzero(x1 > x2):
        problems.append(('proposals[%d]' % j, 'x1 %s > x2 %s' % (fmt(x1[j]), fmt(x2[j]))))
    for j in np.flatnonzero(y1 > y2):
        problems.append(('proposals[%d]' % j, 'y1 %s > y2 %s' % (fmt(y1[j]), fmt(y2[j]))))
    if new_width and new_height:
        for name, v, size in (('x2', x2, new_width), ('y2', y2, new_height)):
            for j in np.flatnonzero(v > size - 1):
                problems.append(('proposals[%d].%s' % (j, name),
                                 '%s is outside the %dx%d resized image (largest pixel %d)'
                                 % (fmt(v[j]), new_width, new_height, size - 1)))
    return problems


def scan_datalist(path, num_classes, new_width=None, new_height=None, root_folder=None,
                  labels_only=False):
    """Reads a datalist in one pass: (entries, problems). problems are `file:line: field:
    reason` strings for every bad line; boxes are checked against new_width x new_height when
    given, image files (root_folder + path) when root_folder is not None."""
    entries, problems = [], []
    first_line_of = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return [], ['%s:0: file: cannot read: %s' % (path, e)]
    for line_number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        where = '%s:%d: ' % (path, line_number)
        numbers = len(tokens) - 1
        if numbers < num_classes or (numbers - num_classes) % 5:
            problems.append(where + 'fields: %d numbers after the image path; expected C + 5k '
                            '(C = %d labels, then k proposals of 5: x1 y1 x2 y2 s)'
                            % (numbers, num_classes))
            continue
        try:
            values = parse_numbers(tokens[1:], num_classes)
        except ValueError as e:
            problems.extend(where + p for p in e.args[0])
            continue
        labels = values[:num_classes].astype(np.float32)
        proposals = values[num_classes:].astype(np.float32).reshape(-1, 5)
        line_problems = ['%s: %s' % p for p in check_entry(values[:num_classes],
                                                             values[num_classes:].reshape(-1, 5),
                                                             new_width, new_height,
                                                             labels_only)]
        image_path = tokens[0]
        if image_path in first_line_of:
            line_problems.append('image: %s is a duplicate of line %d'
                                 % (image_path, first_line_of[image_path]))
        else:
            first_line_of[image_path] = line_number
        if root_folder is not None and not os.path.isfile(os.path.join(root_folder, image_path)):
            line_problems.append('image: %s does not exist' % os.path.join(root_folder, image_path))
        if len(line_problems) > MAX_PROBLEMS_PER_LINE + 1:
            more = len(line_problems) - MAX_PROBLEMS_PER_LINE
            line_problems = line_problems[:MAX_PROBLEMS_PER_LINE]
            line_problems.append('line: and %d more problems on this line' % more)
        problems.extend(where + p for p in line_problems)
        if not line_problems:
            entries.append(Entry(image_path, labels, proposals, line_number))
    if not entries and not problems:
        problems.append('%s:1: datalist: empty file, no image lines' % path)
    return entries, problems


def validate_datalist(path, num_classes, new_width=None, new_height=None, root_folder=None):
    """Every problem of a datalist as `file:line: field: reason` (empty list: the file is good)."""
    return scan_datalist(path, num_classes, new_width, new_height, root_folder)[1]


def check_datalist(path, num_classes, new_width=None, new_height=None, root_folder=None):
    """Raises DatalistError listing the problems of a datalist; training tools call this before
    they start."""
    problems = validate_datalist(path, num_classes, new_width, new_height, root_folder)
    if problems:
        raise DatalistError(problems)


class Datalist(object):
    """The images of a checked datalist (see scan_datalist for the checks; any problem raises
    DatalistError). With bbox_num, lines with more proposals keep their bbox_num best-scoring
    ones, said once in the log; shorter lines stay short (the data layer pads them)."""

    def __init__(self, path, num_classes, bbox_num=None, new_width=None, new_height=None,
                 root_folder=None, labels_only=False):
        self.path = path
        self.num_classes = num_classes
        self.bbox_num = bbox_num
        entries, problems = scan_datalist(path, num_classes, new_width, new_height, root_folder,
                                          labels_only)
        if problems:
            raise DatalistError(problems)
        self.lines_cut = 0
        if bbox_num:
            for i, entry in enumerate(entries):
                if len(entry.proposals) > bbox_num:
                    kept, _ = pad_proposals(entry.proposals, bbox_num)
                    entries[i] = entry._replace(proposals=kept)
                    self.lines_cut += 1
            if self.lines_cut:
                logger.warning('%s: %d of %d lines have more than bbox_num = %d proposals; each '
                               'keeps its %d best-scoring ones', path, self.lines_cut,
                               len(entries), bbox_num, bbox_num)
        self.entries = entries

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, index):
        return self.entries[index]

    def __iter__(self):
        return iter(self.entries)
