#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Converts a prototxt written for the original fork (caffe-MLIC) to this project's syntax.

  tools/convert_prototxt.py wsddn_train.prototxt prototxt/my/wsddn_train.prototxt

roi_pooling_param / interp_param / the fork's WsdRoigenSingleScale settings become
python_param { param_str: "..." } of our layers; HumanAttData (human_att_data_param and its
transform_param) becomes our Python data layer. Errors name the input line and field.
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input', help='prototxt in the original fork\'s syntax')
    parser.add_argument('output', help='where to write ours')
    args = parser.parse_args(argv)
    from mlic import original_prototxt
    try:
        original_prototxt.convert_file(args.input, args.output)
    except (original_prototxt.ConversionError, OSError) as error:
        sys.stderr.write('convert_prototxt: %s\n' % error)
        return 1
    print('wrote %s' % args.output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
