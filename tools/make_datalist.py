#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Converts a dataset's annotations into a labels-only datalist `OUT` (one line `image l_1 ..
l_C` per image), its class order `OUT.classes` and, for datasets with boxes, a ground-truth box
JSON. Then `tools/compute_proposals.py OUT FINAL` adds the proposals; or pass --proposals here
to do both in one go.

  make_datalist.py voc     --root VOCdevkit/VOC2007 --split trainval OUT
  make_datalist.py voc     --root my_voc_export --split train --classes classes.txt OUT
  make_datalist.py coco    --annotations instances_val2014.json --images val2014 OUT
  make_datalist.py nuswide --root NUS-WIDE --images Flickr --split train OUT
  make_datalist.py csv     --csv labels.csv --images photos OUT
"""
import argparse
import sys

from mlic import converters
from mlic.proposal_options import add_proposal_arguments, run_proposals


def voc_order_note(classes, out):
    if classes == list(converters.VOC_CLASSES):
        return ('note: every class name is a PASCAL VOC class: the 20 VOC classes in VOC\'s '
                'order (pass --classes FILE for another order)')
    return ('note: class order taken from the annotations, sorted: %s. Convert every split '
            'with the same order: pass --classes %s to the other splits (their names may '
            'differ)' % (', '.join(classes), converters.classes_path(out)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='dataset', required=True)
    voc = commands.add_parser(
        'voc', help='a VOC-format folder: PASCAL VOC (20 classes, VOC order) or your own '
                    'classes')
    voc.add_argument('--root', required=True,
                     help='folder with Annotations/, ImageSets/Main/ and JPEGImages/, e.g. '
                          'VOCdevkit/VOC2007')
    voc.add_argument('--split', default='trainval', help='ImageSets/Main/<split>.txt')
    voc.add_argument('--classes', help='class order, one name per line (default: PASCAL '
                                       'VOC\'s 20 classes when every name is one of them, '
                                       'else the names in the annotations, sorted; give the '
                                       'same file to every split so that columns agree)')
    coco = commands.add_parser('coco', help='MS-COCO instances JSON (classes by ascending id)')
    coco.add_argument('--annotations', required=True, help='instances_<split>2014.json')
    coco.add_argument('--images', required=True, help='folder of the split\'s images')
    nus = commands.add_parser('nuswide', help='NUS-WIDE (81 concepts, Concepts81.txt order)')
    nus.add_argument('--root', required=True,
                     help='folder with Concepts81.txt, ImageList/, Groundtruth/')
    nus.add_argument('--images', required=True, help='folder of the images (Flickr/)')
    nus.add_argument('--split', choices=('train', 'test', 'all'), default='train')
    table = commands.add_parser('csv', help='an image folder and a CSV of labels')
    table.add_argument('--csv', required=True,
                       help='header "filename,<class>,..." (1/0/-1) or "filename,labels" '
                            '(names separated by ";")')
    table.add_argument('--images', required=True, help='folder the file names are relative to')
    table.add_argument('--classes', help='class order for the "labels" form, one per line')
    for sub in (voc, coco, nus, table):
        sub.add_argument('out', help='the datalist to write')
        sub.add_argument('--boxes', help='also write the ground-truth box JSON here '
                                         '(voc, coco)')
        sub.add_argument('--path-prefix',
                         help='write image paths as PREFIX + dataset-relative path instead '
                              'of absolute paths (then give --root-folder for --proposals, '
                              'as for the data layer)')
        sub.add_argument('--skip-missing', action='store_true',
                         help='leave out images whose file does not exist')
        sub.add_argument('--proposals', metavar='FINAL',
                         help='then compute proposals and write the training datalist FINAL')
        if sub in (coco, nus):
            sub.add_argument('--keep-unlabelled', action='store_true',
                             help='keep images without any label')
        add_proposal_arguments(sub)
    args = parser.parse_args(argv)
    try:
        if args.dataset == 'voc':
            given = converters.read_classes(args.classes) if args.classes else None
            classes, entries = converters.voc_entries(args.root, args.split, args.path_prefix,
                                                      given)
            if given is None:
                print(voc_order_note(classes, args.out))
        elif args.dataset == 'coco':
            classes, entries = converters.coco_entries(args.annotations, args.images,
                                                       args.path_prefix, args.keep_unlabelled)
        elif args.dataset == 'nuswide':
            classes, entries = converters.nuswide_entries(args.root, args.images, args.split,
                                                          args.path_prefix,
                                                          args.keep_unlabelled)
        else:
            given = converters.read_classes(args.classes) if args.classes else None
            classes, entries = converters.csv_entries(args.csv, args.images, given,
                                                      args.path_prefix)
        count = converters.convert(args.out, classes, entries, args.boxes, args.skip_missing)
        print('wrote %s (%d images, %d classes) and %s'
              % (args.out, count, len(classes), converters.classes_path(args.out)))
        if args.proposals:
            run_proposals(args, args.out, args.proposals)
    except (ValueError, IOError) as error:
        sys.exit('make_datalist.py: error: %s' % error)


if __name__ == '__main__':
    main()
