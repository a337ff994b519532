"""Where things are in the checkout: the one module that knows the repository's root.

The packages are installed in editable mode (tools/setup/setup.sh), so this file stays in
tools/mlic/ of the checkout and the root is two folders above it.
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(ROOT, 'tools')
BUILD = os.path.join(ROOT, 'build')
PROTOTXT = os.path.join(ROOT, 'prototxt')
SNAPSHOTS = os.path.join(ROOT, 'snapshots')
# The stock caffe binary with our layers (plugin, Python layers, pycaffe) available.
CAFFE_TOOL = os.path.join(TOOLS, 'caffe')
