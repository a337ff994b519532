#!/usr/bin/env -S sh -c 'exec "$(dirname "$0")/../.venv/bin/python" "$0" "$@"'
"""The results table (mAP, F1-C, F1-O, top-3 F1-C, top-3 F1-O; mean ± std over seeds).

  .venv/bin/python tools/results_table.py \
      --row "Teacher" teacher.json \
      --row "Student w/o KD" plain_seed1.json plain_seed2.json \
      --row "Student w/ KD" kd_seed1.json kd_seed2.json \
      --markdown results.md --json results_table.json

Each JSON file is one run's output of tools/evaluate.py --json; several files in a row are seeds.
"""
import argparse
import json
import sys

from mlic import plots


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--row', nargs='+', action='append', required=True,
                        metavar=('NAME', 'RESULT_JSON'),
                        help='a row name followed by the evaluate.py JSON of each seed')
    parser.add_argument('--markdown', help='write the Markdown table here')
    parser.add_argument('--json', help='write the table as JSON here')
    args = parser.parse_args(argv)
    rows = []
    for row in args.row:
        if len(row) < 2:
            parser.error('--row %s: give the row name, then at least one result JSON' % row[0])
        results = []
        for path in row[1:]:
            with open(path, encoding='utf-8') as source:
                try:
                    result = json.load(source)
                except ValueError as error:
                    raise ValueError('%s: not JSON (%s)' % (path, error))
            missing = [key for key in ('mAP', 'all', 'top3') if key not in result]
            if missing:
                raise ValueError('%s: not an evaluate.py result (no %s)' % (path, missing[0]))
            results.append(result)
        rows.append((row[0], results))
    table = plots.results_table(rows)
    plots.write_results_table(table, args.markdown, args.json)
    sys.stdout.write(plots.table_to_markdown(table))
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (ValueError, OSError) as error:
        sys.exit('results_table.py: %s' % error)
