#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""Writes the example configs from the config schema (tools/mlic/config_examples.py):
tools/demo.toml (the demo's settings) and tools/run_pipeline.example.toml (a user's, every key
with its default). A test checks that the checked-in files match.

  tools/generate_configs.py            rewrite both
  tools/generate_configs.py --check    exit 1 when a checked-in file differs
"""
import argparse
import os
import sys

from mlic import caffe_train, config_examples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--check', action='store_true', help='compare, do not write')
    args = parser.parse_args(argv)
    stale = []
    for kind, relative in sorted(config_examples.EXAMPLE_FILES.items()):
        path = os.path.join(caffe_train.ROOT, relative)
        text = config_examples.example_toml(kind)
        if args.check:
            with open(path) as f:
                if f.read() != text:
                    stale.append(relative)
        else:
            with open(path, 'w') as f:
                f.write(text)
            print(path)
    if stale:
        sys.stderr.write('differ from the schema: %s (run tools/generate_configs.py)\n'
                         % ', '.join(stale))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
