"""Shared setup for the consent tests.

* Puts the repository root first on ``sys.path`` so ``import consent`` finds the regular package even
  when the editable install predates ``consent/__init__.py`` (it then registers ``consent`` as a
  namespace package and ``from consent import ...`` fails).
* Makes ``consent_factories`` (next to this file) importable under any pytest import mode.
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE), str(_HERE.parents[1])):
    if _p in sys.path:
        sys.path.remove(_p)
    sys.path.insert(0, _p)
_mod = sys.modules.get("consent")
if _mod is not None and getattr(_mod, "__file__", None) is None:  # a namespace import slipped in first
    for _name in [n for n in sys.modules if n == "consent" or n.startswith("consent.")]:
        del sys.modules[_name]
