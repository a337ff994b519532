"""The datalist: one image per line, `path l_1 .. l_C (x1 y1 x2 y2 s)*B`.

Box corners are 0-based inclusive pixels of the image after it is resized to the datalist's
new_width x new_height; `s` is the proposal's score. Lines may carry fewer than `bbox_num`
proposals: they are padded with PADDING_ROW, which every plugin layer skips (a proposal whose x1
is negative is padding; see caffe_layers/proto/mlic_layers.proto).

What a datalist may hold (docs/datalist.md says it for users):
  refused   a wrong number of fields (not C + 5k), a field that is not a number, NaN or
            infinity, a label other than 0, 1 or -1 (ignore), a padding row (x1 < 0) that is
            not exactly -1 -1 -1 -1 -1, a line without any real proposal, bytes that are not
            UTF-8, a comment line, an image path with white space, labels that look like the
            wrong C
  accepted  as the original reader accepts them, with one warning per datalist that counts
            them: corners outside the resized image (clipped to it), x1 > x2 or y1 > y2 (kept:
            the RoI layers give such a box one pixel), an image listed twice (kept)

A datalist is read line by line (never whole) into compact arrays: the labels in one (N, C)
float32 array, the proposals of all lines in one (M, 5) float32 array with per-line offsets.
"""
import collections
import logging
import mmap
import os
import time

import numpy as np

from mlic.preprocess import file_problem

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


def is_number(token):
    try:
        float(token)
        return True
    except ValueError:
        return False


def parse_fields(text):
    """The numbers of a line's text after the image path, float64; ValueError when a field is
    not a number. np.loadtxt parses with Python's float rules (the same values) in C, about
    twice as fast as float() per field."""
    if not text:
        return np.empty(0)
    if '\t' in text or '  ' in text:
        text = ' '.join(text.split())
    return np.loadtxt([text], delimiter=' ', comments=None, dtype=np.float64, ndmin=1)


def label_like_run(values):
    """How many of the first values are 0, 1 or -1 (look like labels)."""
    likes = (values == 0) | (values == 1) | (values == IGNORE_LABEL)
    return len(values) if likes.all() else int(likes.argmin())


def check_entry(labels, proposals, labels_only=False):
    """(field, reason) for each problem of one parsed line that makes it unusable: values that
    are not finite, labels other than 0/1/-1, padding rows that are not the padding row, no real
    proposal (unless labels_only: the input of the proposal tool)."""
    problems = []
    values = np.concatenate([labels, proposals.reshape(-1)])
    if not np.isfinite(values).all():
        return [(field_name(index, len(labels)), '%s is not finite' % float(values[index]))
                for index in np.flatnonzero(~np.isfinite(values))]
    valid = (labels == 0) | (labels == 1) | (labels == IGNORE_LABEL)
    if not valid.all():
        for k in np.flatnonzero(~valid):
            problems.append(('labels[%d]' % k, '%s is not 0, 1 or %g (ignore)'
                             % (format_number(labels[k]), IGNORE_LABEL)))
    padding = proposals[:, 0] < 0
    if padding.any():
        if not labels_only and padding.all():
            problems.append(('proposals', 'none that is real (every image needs at least one '
                             'box for the detector to score it)'))
        for j in np.flatnonzero(padding & ~np.all(proposals == PADDING_ROW, axis=1)):
            problems.append(('proposals[%d]' % j, 'padding row (x1 < 0) must be exactly '
                             '-1 -1 -1 -1 -1, got %s'
                             % ' '.join(map(format_number, proposals[j]))))
    elif not labels_only and len(proposals) == 0:
        problems.append(('proposals', 'none that is real (every image needs at least one box '
                         'for the detector to score it)'))
    return problems


def clip_proposals(proposals, width, height):
    """Real rows of a (k, 5) array with their corners clipped to a width x height image, in
    place; returns how many rows were clipped. The original reader takes any corner; the RoI
    layers would read outside the feature map."""
    real = proposals[:, 0] >= 0
    corners = proposals[:, :4]
    limits = np.array([width - 1, height - 1, width - 1, height - 1], dtype=corners.dtype)
    outside = real & ((corners < 0) | (corners > limits)).any(axis=1)
    if outside.any():
        corners[outside] = np.clip(corners[outside], 0, limits)
    return int(outside.sum())


class Quirks(object):
    """What a datalist holds that the original reader takes and we accept, counted for one
    warning: {kind: [lines, boxes, first line]}."""

    KINDS = collections.OrderedDict([
        ('clipped', 'corners outside the %s resized image, clipped to it'),
        ('inverted', 'x1 > x2 or y1 > y2, kept (the RoI layers give such a box one pixel)'),
        ('duplicate', 'an image listed again, kept (it is drawn twice as often)'),
        ('label_like', 'more 0/1 values at the start than the C = %d labels: their first '
                       'proposal reads as labels would (is C right?)'),
    ])

    def __init__(self):
        self.counts = collections.OrderedDict()

    def add(self, kind, line_number, boxes=1):
        lines, total, first = self.counts.get(kind, (0, 0, line_number))
        self.counts[kind] = (lines + 1, total + boxes, first)

    def lines(self, kind):
        return self.counts.get(kind, (0, 0, 0))[0]

    def warning(self, path, size, num_classes):
        """The one warning about them, or None."""
        if not self.counts:
            return None
        parts = []
        for kind, (lines, boxes, first) in self.counts.items():
            what = self.KINDS[kind]
            what = what % (size,) if kind == 'clipped' else (
                what % num_classes if kind == 'label_like' else what)
            count = (plural(lines, 'line') if kind in ('duplicate', 'label_like')
                     else '%s on %s' % (plural(boxes, 'box', 'boxes'), plural(lines, 'line')))
            parts.append('%s (first: line %d): %s' % (count, first, what))
        return '%s: accepted as the original does: %s' % (path, '; '.join(parts))


def plural(count, one, many=None):
    """'1 line', '2 lines'."""
    return '%d %s' % (count, one if count == 1 else (many or one + 's'))


class Growing(object):
    """A float32 array of rows `width` wide that grows by doubling, in an anonymous memory map:
    growing remaps its pages (no copy, and pages not yet written take no memory), so reading a
    datalist with 800 MB of proposals peaks near 800 MB."""

    def __init__(self, width, capacity=1024):
        self.width = width
        self.capacity = capacity
        # Private: a shared anonymous map keeps its first size underneath, and a page past it
        # would raise SIGBUS after growing.
        self.buffer = mmap.mmap(-1, capacity * width * 4, flags=mmap.MAP_PRIVATE)
        self.size = 0

    def extend(self, rows):
        end = self.size + len(rows)
        if end > self.capacity:
            self.capacity = max(end, 2 * self.capacity)
            self.buffer.resize(self.capacity * self.width * 4)
        view = np.frombuffer(self.buffer, dtype=np.float32, count=(end - self.size) * self.width,
                             offset=self.size * self.width * 4)
        view.reshape(-1, self.width)[...] = rows
        del view  # the map cannot be resized while an array looks into it
        self.size = end

    def finish(self):
        """The rows written, (size, width) float32 (the map shrunk to them)."""
        self.buffer.resize(max(1, self.size * self.width * 4))
        return np.frombuffer(self.buffer, dtype=np.float32,
                             count=self.size * self.width).reshape(self.size, self.width)


class Entries(object):
    """The images of a datalist in compact arrays: image_paths (list), line_numbers (N,),
    labels (N, C) float32, proposals (M, 5) float32 with offsets (N + 1,): image i's rows are
    proposals[offsets[i]:offsets[i + 1]]. Indexing gives an Entry (views, not copies)."""

    def __init__(self, path, image_paths, line_numbers, labels, proposals, offsets):
        self.path = path
        self.image_paths = image_paths
        self.line_numbers = line_numbers
        self.labels = labels
        self.proposals = proposals
        self.offsets = offsets
        self.warning = None
        self.quirks = Quirks()

    def __len__(self):
        return len(self.image_paths)

    def __getitem__(self, index):
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return Entry(self.image_paths[index], self.labels[index],
                     self.proposals[self.offsets[index]:self.offsets[index + 1]],
                     int(self.line_numbers[index]))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def proposal_counts(self):
        return np.diff(self.offsets)

    def padded_proposals(self, bbox_num, indices=None):
        """(n, bbox_num, 5) float32: each image's proposals padded or cut to bbox_num, as the
        data layer gives them (all images, or those of `indices`)."""
        indices = range(len(self)) if indices is None else indices
        out = np.empty((len(indices), bbox_num, 5), dtype=np.float32)
        for row, i in enumerate(indices):
            out[row] = pad_proposals(self.proposals[self.offsets[i]:self.offsets[i + 1]],
                                     bbox_num)[0]
        return out


def datalist_file_problem(path):
    """Why `path` cannot be read as a datalist file, or None. Refuses what is not a regular
    file before opening it: reading a FIFO would wait for a writer for ever."""
    problem = file_problem(path)
    if problem == 'is an empty file (0 bytes)':
        return None  # reported as an empty datalist, line 1
    return problem


def line_text_problem(raw):
    """(text, None) of a line's bytes, or (None, reason) when they are not UTF-8."""
    try:
        return raw.decode('utf-8'), None
    except UnicodeDecodeError as e:
        return None, ('byte 0x%02x at column %d is not UTF-8 text (datalists are UTF-8; '
                      're-save the file as UTF-8)' % (raw[e.start], e.start + 1))


def fits(count, num_classes):
    return count >= num_classes and (count - num_classes) % 5 == 0


def label_count_that_fits(run, count):
    """The largest label count C' <= run (the label-like numbers a line starts with) for which
    the line's count numbers are C' + 5k, or None."""
    for other in range(min(run, count), 0, -1):
        if fits(count, other):
            return other
    return None


def fields_problems(tokens, num_classes):
    """(field, reason) of a line whose fields are not C + 5k numbers; [] when they are."""
    numbers = tokens[1:]
    bad = [k for k, token in enumerate(numbers) if not is_number(token)]
    if tokens[0].startswith('#') and (bad or not fits(len(numbers), num_classes)):
        return [('line', 'a comment (starts with #); datalists have no comments, remove it')]
    if bad and bad == list(range(len(bad))) and fits(len(numbers) - len(bad), num_classes):
        # Leading words that are not numbers, then a line that fits: a path with spaces.
        return [('image', 'the path %r contains white space (fields are separated by white '
                          'space: rename the file)' % ' '.join(tokens[:len(bad) + 1]))]
    count = len(numbers)
    if not fits(count, num_classes):
        reason = ('%d numbers after the image path; expected C + 5k (C = %d labels, then k '
                  'proposals of 5: x1 y1 x2 y2 s)' % (count, num_classes))
        if not bad:
            run = label_like_run(np.array([float(t) for t in numbers]))
            other = label_count_that_fits(run, count)
            if other:
                reason += ('; its first %d numbers look like labels (0, 1, -1), and C = %d '
                           'would fit the line: is C right?' % (run, other))
        return [('fields', reason)]
    return [(field_name(k, num_classes), '%r is not a number' % numbers[k]) for k in bad]


# Lines with the same number of fields are parsed and checked together, this many at a time:
# one C parse and a few array operations per chunk instead of per line (a COCO-sized list has
# 82,783 lines of 2,580 numbers). A chunk with any problem is read again line by line, to name
# each problem with its line.
CHUNK_LINES = 128


class Reader(object):
    """The state of one scan_datalist: what was read, what is wrong, what was accepted."""

    def __init__(self, path, num_classes, new_width, new_height, root_folder, labels_only,
                 bbox_num):
        self.path, self.num_classes = path, num_classes
        self.size = (new_width, new_height) if new_width and new_height else None
        self.root_folder, self.labels_only, self.bbox_num = root_folder, labels_only, bbox_num
        self.problems = []  # (line number, text)
        self.quirks = Quirks()
        self.first_line_of = {}
        self.image_paths, self.line_numbers, self.offsets = [], [], [0]
        self.labels_rows = Growing(num_classes)
        self.proposal_rows = Growing(5, 16384)
        self.suspects = []  # lines whose labels look like more than C (problems if most are)
        self.lines_cut = 0
        self.chunk = []  # (line number, image path, fields text) with the same field count
        self.chunk_fields = None

    def problem(self, line_number, field, reason):
        self.problems.append((line_number, '%s:%d: %s: %s' % (self.path, line_number, field,
                                                              reason)))

    def read(self, lines):
        for line_number, raw in enumerate(lines, 1):
            text, reason = line_text_problem(raw)
            if reason:
                self.problem(line_number, 'line', reason)
                continue
            parts = text.split(None, 1)
            if not parts:
                continue
            fields = parts[1].strip() if len(parts) > 1 else ''
            if '\t' in fields or '  ' in fields:
                fields = ' '.join(fields.split())
            count = fields.count(' ') + 1 if fields else 0
            if count != self.chunk_fields or len(self.chunk) == CHUNK_LINES:
                self.flush()
                self.chunk_fields = count
            self.chunk.append((line_number, parts[0], fields))
        self.flush()

    def flush(self):
        chunk, self.chunk = self.chunk, []
        if not chunk:
            return
        count = self.chunk_fields
        try:
            if not fits(count, self.num_classes) or any(path.startswith('#')
                                                        for _, path, _ in chunk):
                raise ValueError('not a chunk of good lines')
            values = np.loadtxt([fields for _, _, fields in chunk], delimiter=' ',
                                comments=None, dtype=np.float64, ndmin=2)
            if values.shape != (len(chunk), count) or not self.add_chunk(chunk, values):
                raise ValueError('not a chunk of good lines')
        except ValueError:
            for line_number, image_path, fields in chunk:
                self.line(line_number, image_path, fields)

    def add_chunk(self, chunk, values):
        """Adds a chunk of lines parsed into values (n, count) when all are good (returns
        True), else adds nothing (False)."""
        c = self.num_classes
        if not np.isfinite(values).all():
            return False
        labels = values[:, :c]
        if not ((labels == 0) | (labels == 1) | (labels == IGNORE_LABEL)).all():
            return False
        proposals = values[:, c:].reshape(len(chunk), -1, 5)
        padding = proposals[:, :, 0] < 0
        if padding.any() and (not (proposals[padding] == PADDING_ROW).all()
                              or (not self.labels_only and padding.all(axis=1).any())):
            return False
        if proposals.shape[1] == 0 and not self.labels_only:
            return False
        if self.root_folder is not None and any(
                file_problem(os.path.join(self.root_folder, path)) for _, path, _ in chunk):
            return False
        proposals = proposals.astype(np.float32)
        if proposals.shape[1]:
            label_like = ~((proposals[:, 0] != 0) & (proposals[:, 0] != 1)).any(axis=1)
            for i in np.flatnonzero(label_like):
                self.check_label_like(chunk[i][0], values[i])
        clipped = inverted = np.zeros(len(chunk), dtype=int)
        if self.size:
            clipped = clip_chunk(proposals, *self.size)
        if proposals.shape[1]:
            inverted = count_inverted(proposals)
        for i, (line_number, image_path, _) in enumerate(chunk):
            self.note(line_number, image_path, clipped[i], inverted[i])
        self.image_paths.extend(path for _, path, _ in chunk)
        self.line_numbers.extend(line_number for line_number, _, _ in chunk)
        self.labels_rows.extend(labels)
        if self.bbox_num and proposals.shape[1] > self.bbox_num:
            self.lines_cut += len(chunk)
            proposals = np.stack([pad_proposals(p, self.bbox_num)[0] for p in proposals])
        start = self.proposal_rows.size
        self.proposal_rows.extend(proposals.reshape(-1, 5))
        self.offsets.extend(start + proposals.shape[1] * np.arange(1, len(chunk) + 1))
        return True

    def note(self, line_number, image_path, clipped, inverted):
        """Counts what a good line holds that the original takes too."""
        if image_path in self.first_line_of:
            self.quirks.add('duplicate', line_number)
        else:
            self.first_line_of[image_path] = line_number
        if clipped:
            self.quirks.add('clipped', line_number, int(clipped))
        if inverted:
            self.quirks.add('inverted', line_number, int(inverted))

    def check_label_like(self, line_number, values):
        """Notes a line whose first proposal is 0/1 values continuing the labels."""
        run = label_like_run(values)
        if run >= self.num_classes + 5:
            self.suspects.append((line_number, run, label_count_that_fits(run, len(values))))
            self.quirks.add('label_like', line_number)

    def line(self, line_number, image_path, fields):
        """Reads one line on its own, naming each of its problems."""
        num_classes = self.num_classes
        try:
            values = parse_fields(fields)
        except ValueError:
            values = None
        if values is None or not fits(len(values), num_classes) or image_path.startswith('#'):
            tokens = [image_path] + fields.split()
            line_problems = fields_problems(tokens, num_classes)
            if line_problems:
                for field, reason in line_problems:
                    self.problem(line_number, field, reason)
                return
            values = np.array([float(t) for t in tokens[1:]], dtype=np.float64)
        labels = values[:num_classes]
        proposals = values[num_classes:].reshape(-1, 5)
        line_problems = check_entry(labels, proposals, self.labels_only)
        if line_problems and line_problems[0][0].startswith('labels['):
            run = label_like_run(values)
            other = label_count_that_fits(run, len(values))
            if run < num_classes and other:
                line_problems[0] = (line_problems[0][0], line_problems[0][1] + (
                    '; the line has %d label-like numbers (0, 1, -1) before it, and C = %d '
                    'would fit the line: is C right?' % (run, other)))
        if not line_problems and len(proposals) and \
                not ((proposals[0] != 0) & (proposals[0] != 1)).any():
            self.check_label_like(line_number, values)
        if self.root_folder is not None:
            full = os.path.join(self.root_folder, image_path)
            reason = file_problem(full)
            if reason:
                line_problems.append(('image', '%s: %s' % (full, reason)))
        if line_problems:
            if len(line_problems) > MAX_PROBLEMS_PER_LINE + 1:
                more = len(line_problems) - MAX_PROBLEMS_PER_LINE
                line_problems = line_problems[:MAX_PROBLEMS_PER_LINE]
                line_problems.append(('line', 'and %d more problems on this line' % more))
            for field, reason in line_problems:
                self.problem(line_number, field, reason)
            return
        proposals = proposals.astype(np.float32)
        clipped = clip_proposals(proposals, *self.size) if self.size else 0
        inverted = count_inverted(proposals[None])[0] if len(proposals) else 0
        self.note(line_number, image_path, clipped, inverted)
        if self.bbox_num and len(proposals) > self.bbox_num:
            proposals = pad_proposals(proposals, self.bbox_num)[0]
            self.lines_cut += 1
        self.image_paths.append(image_path)
        self.line_numbers.append(line_number)
        self.labels_rows.extend(labels[None])
        self.proposal_rows.extend(proposals)
        self.offsets.append(self.proposal_rows.size)

    def result(self):
        path, num_classes = self.path, self.num_classes
        if self.suspects and len(self.suspects) * 2 >= len(self.image_paths):
            # Most lines: C is wrong, not a few tiny boxes at the corner.
            for line_number, run, other in self.suspects:
                self.problem(line_number, 'labels',
                             'the line starts with %d values that look like labels (0, 1, -1) '
                             'but C = %d, so its first proposal would be read from labels; is '
                             'C right?%s' % (run, num_classes, ' (C = %d fits the line)' % other
                                             if other else ''))
            del self.quirks.counts['label_like']
        if not self.image_paths and not self.problems:
            self.problem(1, 'datalist', 'empty file, no image lines')
        entries = Entries(path, self.image_paths, np.asarray(self.line_numbers, dtype=np.int64),
                          self.labels_rows.finish(), self.proposal_rows.finish(),
                          np.asarray(self.offsets, dtype=np.int64))
        entries.quirks = self.quirks
        entries.lines_cut = self.lines_cut
        size = '%dx%d' % self.size if self.size else ''
        entries.warning = self.quirks.warning(path, size, num_classes)
        self.problems.sort(key=lambda problem: problem[0])  # stable: a line's keep their order
        return entries, [text for _, text in self.problems]


def clip_chunk(proposals, width, height):
    """clip_proposals of (n, k, 5) rows in place; returns (n,) boxes clipped per line."""
    corners = proposals[:, :, :4]
    limits = np.array([width - 1, height - 1, width - 1, height - 1], dtype=np.float32)
    outside = (proposals[:, :, 0] >= 0) & ((corners < 0) | (corners > limits)).any(axis=2)
    if outside.any():
        corners[outside] = np.clip(corners[outside], 0, limits)
    return outside.sum(axis=1)


def count_inverted(proposals):
    """(n,) real boxes with x1 > x2 or y1 > y2 per line of (n, k, 5) rows."""
    p = proposals
    return ((p[:, :, 0] >= 0) & ((p[:, :, 0] > p[:, :, 2]) | (p[:, :, 1] > p[:, :, 3]))).sum(1)


def scan_datalist(path, num_classes, new_width=None, new_height=None, root_folder=None,
                  labels_only=False, bbox_num=None):
    """Reads a datalist line by line: (entries, problems). entries: an Entries of the good
    lines (their corners clipped to new_width x new_height when given, cut to the bbox_num
    best-scoring proposals when bbox_num is given), with entries.warning the one warning about
    what was accepted (None if nothing). problems are `file:line: field: reason` strings for
    every line that cannot be used; image files (root_folder + path) are looked at (not
    decoded: check_images does that) when root_folder is not None."""
    problem = datalist_file_problem(path)
    if problem:
        return empty_entries(path, num_classes), ['%s:0: file: %s' % (path, problem)]
    reader = Reader(path, num_classes, new_width, new_height, root_folder, labels_only,
                    bbox_num)
    try:
        with open(path, 'rb') as f:
            reader.read(f)
    except OSError as e:
        return empty_entries(path, num_classes), ['%s:0: file: cannot read: %s'
                                                  % (path, e.strerror or e)]
    return reader.result()


def empty_entries(path, num_classes):
    return Entries(path, [], np.empty(0, dtype=np.int64),
                   np.empty((0, num_classes), dtype=np.float32),
                   np.empty((0, 5), dtype=np.float32), np.zeros(1, dtype=np.int64))


def validate_datalist(path, num_classes, new_width=None, new_height=None, root_folder=None):
    """Every problem of a datalist as `file:line: field: reason` (empty list: the file is good)."""
    return scan_datalist(path, num_classes, new_width, new_height, root_folder)[1]


def check_datalist(path, num_classes, new_width=None, new_height=None, root_folder=None):
    """Raises DatalistError listing the problems of a datalist; training tools call this before
    they start."""
    problems = validate_datalist(path, num_classes, new_width, new_height, root_folder)
    if problems:
        raise DatalistError(problems)


# --- Image files -----------------------------------------------------------------------------

def _check_one_image(task):
    from mlic.preprocess import check_image
    where, path, max_pixels = task
    reason = check_image(path, max_pixels)
    return None if reason is None else '%simage: %s: %s' % (where, path, reason)


def check_images(entries, root_folder='', max_pixels=None, workers=None, progress=None):
    """Decodes every image of a datalist's entries as the data layer would (in `workers`
    processes, default all cores), refusing images above max_pixels (default
    preprocess.DEFAULT_MAX_PIXELS; 0: no limit) from their header before decoding: a list of
    `file:line: image: path: reason`, empty when every image is usable. progress: a stream
    (e.g. sys.stderr) for a progress line (rewritten each second on a terminal, else a line
    every 30 s and at the end), or None. Call it before anything trains."""
    import multiprocessing
    from mlic.preprocess import DEFAULT_MAX_PIXELS
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    tasks = [('%s:%d: ' % (entries.path, entries.line_numbers[i]),
              os.path.join(root_folder or '', entries.image_paths[i]), max_pixels)
             for i in range(len(entries))]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    problems, done, shown = [], 0, time.time()
    tty = progress is not None and progress.isatty()
    pool = multiprocessing.get_context('fork').Pool(workers) if workers > 1 else None
    try:
        results = (pool.imap(_check_one_image, tasks, chunksize=16) if pool
                   else map(_check_one_image, tasks))
        for problem in results:
            done += 1
            if problem:
                problems.append(problem)
            if progress is not None and (time.time() - shown > (1 if tty else 30)
                                         or done == len(tasks)):
                shown = time.time()
                progress.write('%s%s: images decoded %d/%d, %d bad%s'
                               % ('\r' if tty else '', entries.path, done, len(tasks),
                                  len(problems), '' if tty else '\n'))
                progress.flush()
    finally:
        if pool:
            pool.terminate()
            pool.join()
    if progress is not None and tty and tasks:
        progress.write('\n')
    return problems


class Datalist(Entries):
    """The images of a checked datalist (see scan_datalist for the checks; any problem raises
    DatalistError; what is accepted is said in one warning in the log). With bbox_num, lines
    with more proposals keep their bbox_num best-scoring ones, said once in the log; shorter
    lines stay short (the data layer pads them)."""

    def __init__(self, path, num_classes, bbox_num=None, new_width=None, new_height=None,
                 root_folder=None, labels_only=False):
        entries, problems = scan_datalist(path, num_classes, new_width, new_height, root_folder,
                                          labels_only, bbox_num)
        if problems:
            raise DatalistError(problems)
        self.__dict__.update(entries.__dict__)
        self.num_classes = num_classes
        self.bbox_num = bbox_num
        if self.warning:
            logger.warning(self.warning)
        if self.lines_cut:
            logger.warning('%s: %d of %d lines have more than bbox_num = %d proposals; each '
                           'keeps its %d best-scoring ones', path, self.lines_cut, len(self),
                           bbox_num, bbox_num)


def datalist_sizes(path, num_classes):
    """The sizes a complete datalist fixes (read and checked by Datalist; image files are not
    opened): {'num_proposals': the most proposals on a line, 'min_image_size': the largest box
    corner + 1, a lower bound of the image size the proposals were computed at,
    'corner_line': the line of that box}."""
    entries = Datalist(path, num_classes)
    real = ~is_padding(entries.proposals)
    line_of_row = np.repeat(np.arange(len(entries)), entries.proposal_counts())[real]
    counts = np.bincount(line_of_row, minlength=len(entries))
    if not len(line_of_row):
        raise ValueError('%s: no line has proposals (a labels-only list from make_datalist.py? '
                         'Add them with tools/compute_proposals.py first)' % path)
    corners = entries.proposals[real, :4].max(axis=1)
    row = int(corners.argmax())
    return {'num_proposals': int(counts.max()), 'min_image_size': int(corners[row]) + 1,
            'corner_line': int(entries.line_numbers[line_of_row[row]])}
