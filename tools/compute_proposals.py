#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Adds object proposals to a datalist: reads DATALIST (lines `image l_1 .. l_C`, class count
from DATALIST.classes), computes the proposals of every image in parallel (cached per image in
--cache: a rerun only computes what is missing) and writes OUT with each image's best
--bbox-num proposals `x1 y1 x2 y2 s` in pixels of the image resized to --new-size."""
import argparse
import sys

from mlic.proposal_options import add_proposal_arguments, run_proposals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('datalist', help='labels-only datalist (from make_datalist.py)')
    parser.add_argument('out', help='the datalist with proposals to write')
    add_proposal_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run_proposals(args, args.datalist, args.out)
    except (ValueError, IOError) as error:
        sys.exit('compute_proposals.py: error: %s' % error)


if __name__ == '__main__':
    main()
