"""The README and docs/*.md render as meant: their code fences are closed, and every relative
link points at a file of the repository (and, with #anchor, at one of its headings)."""
import glob
import os
import re

import pytest

from mlic.paths import ROOT

DOCS = ['README.md'] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(
    os.path.join(ROOT, 'docs', '*.md')))
FENCE = re.compile(r'^ {0,3}(`{3,}|~{3,})(.*)$')
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def outside_fences(text, name):
    """The lines outside code fences; fails on a fence that is never closed."""
    lines, fence, opened = [], None, 0
    for number, line in enumerate(text.split('\n'), 1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence, opened = match.group(1), number
            else:
                lines.append(line)
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                and not match.group(2).strip():
            fence = None
    assert fence is None, '%s:%d: a code fence that is never closed' % (name, opened)
    return lines


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r'`|\*\*|\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def anchors(path):
    with open(path) as f:
        lines = outside_fences(f.read(), path)
    return {anchor(line.lstrip('#')) for line in lines if re.match(r'#{1,6} ', line)}


@pytest.mark.parametrize('name', DOCS)
def test_code_fences_are_closed(name):
    with open(os.path.join(ROOT, name)) as f:
        outside_fences(f.read(), name)


@pytest.mark.parametrize('name', DOCS)
def test_relative_links_and_anchors_resolve(name):
    path = os.path.join(ROOT, name)
    with open(path) as f:
        text = '\n'.join(outside_fences(f.read(), name))
    text = re.sub(r'`[^`]*`', '', text)  # inline code is not a link
    broken = []
    for target in LINK.findall(text):
        if re.match(r'[a-z]+:', target):
            continue  # an absolute URL
        file_part, _, fragment = target.partition('#')
        linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part \
            else path
        if not os.path.exists(linked):
            broken.append('%s: no file %s' % (target, os.path.relpath(linked, ROOT)))
        elif fragment and linked.endswith('.md') and fragment not in anchors(linked):
            broken.append('%s: no heading #%s in %s' % (target, fragment,
                                                        os.path.relpath(linked, ROOT)))
    assert not broken, '%s: broken links:\n%s' % (name, '\n'.join(broken))


def test_the_checks_catch_what_they_are_for():
    """An unclosed fence and a heading's anchor as GitHub makes them."""
    with pytest.raises(AssertionError, match='never closed'):
        outside_fences('text\n```sh\nmake demo\n', 'x.md')
    assert outside_fences('a\n```\ncode\n```\nb', 'x.md') == ['a', 'b']
    assert anchor(' 9. No TEST-phase `Gather` / `MAP` layers') == '9-no-test-phase-gather--map-layers'
    assert anchor(" The paper's numbers") == 'the-papers-numbers'
