"""Self-supervised pretraining benchmark (issue 13): ``python bench/ssl.py …`` runs ``bench/ssl_bench.py``.

This file has the name the issue gives it, which is also the name of the standard library's ``ssl``. A script run
from ``bench/`` has this folder first on ``sys.path``, so when torch imports asyncio, which imports ``ssl``, it
would get this file. Imported under that name, it hands over to the real module; run as a script, it runs the
benchmark (see ``bench/ssl_bench.py`` for what it measures and how).
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _not_here(path: str) -> bool:
    return os.path.abspath(path or os.curdir) != _HERE


if __name__ == "ssl":  # imported as the standard library's ssl: load that and stand aside
    _saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if _not_here(p)]
    try:
        del sys.modules["ssl"]
        import ssl as _real
    finally:
        sys.path[:] = _saved
    sys.modules["ssl"] = _real  # what the importer is handed (the import system reads it back from here)
elif __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if _not_here(p)]
    sys.path.insert(0, os.path.dirname(_HERE))
    from bench.ssl_bench import main

    main()
