"""The proposal options of the command-line tools (compute_proposals.py, and make_datalist.py
with --proposals) and the run they configure."""
import os

from mlic import proposals


def add_proposal_arguments(parser):
    """The proposal options (make_datalist.py --proposals takes them too)."""
    group = parser.add_argument_group('proposals')
    group.add_argument('--method', choices=('edgeboxes', 'selective_search'),
                       default='edgeboxes')
    group.add_argument('--bbox-num', type=int, default=500,
                       help='proposals kept per image (the data layer\'s bbox_num)')
    group.add_argument('--new-size', type=int, nargs=2, default=(672, 672),
                       metavar=('WIDTH', 'HEIGHT'),
                       help='the data layer\'s new_width new_height: box coordinates are in '
                            'pixels of the image resized to this')
    group.add_argument('--cache',
                       help='folder of the per-image proposal cache (default: proposal_cache '
                            'beside the output datalist)')
    group.add_argument('--workers', type=int, default=os.cpu_count() or 1)
    group.add_argument('--max-side', type=int, default=512,
                       help='images are scaled down to this longer side before computing')
    group.add_argument('--edge-model',
                       help='structured edge model file (model.yml.gz) for EdgeBoxes; '
                            'default: gradient edges, no model needed')
    group.add_argument('--alpha', type=float, default=0.65,
                       help='EdgeBoxes sliding-window step (default: EdgeBoxes\' own)')
    group.add_argument('--beta', type=float, default=0.75,
                       help='EdgeBoxes NMS threshold (default: EdgeBoxes\' own, tuned for IoU '
                            '0.7; its authors advise 0.55 for IoU 0.5, the WSDDN metrics)')
    group.add_argument('--ss-mode', choices=('fast', 'quality'), default='fast')
    group.add_argument('--pad', action='store_true',
                       help='pad every line to exactly bbox_num proposals with rows '
                            '-1 -1 -1 -1 -1 (for readers that demand it)')
    group.add_argument('--root-folder', default='',
                       help='folder that relative image paths of the datalist are in (the '
                            'data layer\'s root_folder)')


def run_proposals(args, datalist, out):
    settings = proposals.proposal_settings(args.method, max_boxes=args.bbox_num,
                                           max_side=args.max_side, edge_model=args.edge_model,
                                           alpha=args.alpha, beta=args.beta, mode=args.ss_mode)
    cache = args.cache or os.path.join(os.path.dirname(os.path.abspath(out)), 'proposal_cache')
    counts = proposals.complete_datalist(datalist, out, settings, cache,
                                         new_width=args.new_size[0],
                                         new_height=args.new_size[1], bbox_num=args.bbox_num,
                                         root_folder=args.root_folder, workers=args.workers,
                                         pad=args.pad)
    print('wrote %s: %d images, %d computed, %d cached, %d with fewer than %d proposals'
          % (out, counts['images'], counts['computed'], counts['images'] - counts['computed'],
             counts['fewer_than_bbox_num'], args.bbox_num))
