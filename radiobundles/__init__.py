"""radiobundles — small, tested helper modules that the MONAI bundles in ``bundles/`` reference
by dotted path (handlers, data modules, networks glue). The data layer is ``radiobject_adapter``.
"""

from __future__ import annotations

__all__: list[str] = []
