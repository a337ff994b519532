"""The MLIC-KD-WSD Caffe layers.

Importing this package loads the C++ plugin (build/plugin/lib/libmlic_layers.so, or the path
in MLIC_PLUGIN) into the process with RTLD_GLOBAL, which registers its layer types with the
libcaffe that pycaffe uses; the Python layers live in the submodules.
"""
import ctypes
import os

from mlic.paths import BUILD, ROOT

# The plugin's C++ sources, beside this file.
PLUGIN_SOURCES = [os.path.join(os.path.dirname(os.path.abspath(__file__)), d)
                  for d in ('src', 'include', 'proto')]
REBUILD_HINT = 'rebuild it with `make plugin` (or tools/setup/setup.sh plugin) in ' + ROOT


class PluginError(ImportError):
    pass


def plugin_path():
    return os.environ.get('MLIC_PLUGIN', os.path.join(BUILD, 'plugin', 'lib', 'libmlic_layers.so'))


def newest_source(sources=PLUGIN_SOURCES):
    """(mtime, path) of the most recently changed file under the folders `sources`, or
    (0, None)."""
    newest = (0.0, None)
    for top in sources:
        for dirpath, _, names in os.walk(top):
            for name in names:
                path = os.path.join(dirpath, name)
                newest = max(newest, (os.path.getmtime(path), path))
    return newest


def check_plugin(path=None, sources=PLUGIN_SOURCES):
    """Raise PluginError when the plugin is missing or older than its sources."""
    path = path or plugin_path()
    if not os.path.isfile(path):
        raise PluginError('the layer plugin %s does not exist; %s' % (path, REBUILD_HINT))
    if 'MLIC_PLUGIN' not in os.environ:
        mtime, source = newest_source(sources)
        if mtime > os.path.getmtime(path):
            raise PluginError('the layer plugin %s is older than %s; %s'
                              % (path, os.path.relpath(source, ROOT), REBUILD_HINT))
    return path


def load_plugin():
    path = check_plugin()
    return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_plugin = load_plugin()

# The Python bindings of our parameter messages, generated next to the plugin.
_proto_dir = os.path.join(os.path.dirname(os.path.dirname(plugin_path())), 'python')
if os.path.isdir(_proto_dir) and _proto_dir not in __import__('sys').path:
    __import__('sys').path.append(_proto_dir)
