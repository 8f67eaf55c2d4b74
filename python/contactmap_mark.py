# SPDX-License-Identifier: LGPL-2.1 OR BSD-2-Clause
"""Request markers for contactmap, from Python.

    import contactmap_mark
    with contactmap_mark.request(request_id):
        handle(request)

    contactmap_mark.begin(request_id); ...; contactmap_mark.end(request_id)

A request runs from begin to end on the calling thread; contactmap reports each
request's critical path and the requests by latency band. The calls go through
ctypes to libcontactmap-mark.so, whose two functions contactmap probes; when
contactmap is not tracing the process they do nothing (about a microsecond
from Python). Where the library cannot be found the markers are plain no-ops.

The library is looked for in $CONTACTMAP_MARK_LIB (contactmap sets it for the
commands it wraps), next to this module's repository build (.output/), then
by the dynamic linker's own search (ctypes.util.find_library).
"""
import contextlib
import ctypes
import ctypes.util
import os

__all__ = ["begin", "end", "request", "library"]


def _load():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("CONTACTMAP_MARK_LIB"),
                  os.path.join(here, "..", ".output", "libcontactmap-mark.so"),
                  ctypes.util.find_library("contactmap-mark")]
    for path in candidates:
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for fn in (lib.contactmap_request_begin, lib.contactmap_request_end):
            fn.argtypes = [ctypes.c_uint64]
            fn.restype = None
        return lib, path
    return None, None


_lib, library = _load()

if _lib is not None:
    begin = _lib.contactmap_request_begin
    end = _lib.contactmap_request_end
else:
    def begin(request_id):      # no library: nothing to probe
        pass

    def end(request_id):
        pass


@contextlib.contextmanager
def request(request_id):
    """Marks the block as request `request_id` (an integer, 0 to 2**64-1)."""
    begin(request_id)
    try:
        yield
    finally:
        end(request_id)
