"""The store: layout, writing, ingest, and read access (RadiObject / VolumeCollection).

Import from the submodules (``radiobject_adapter.store.radiobject`` ...) or from the
package root; this package module imports nothing so that ``volume`` can use ``layout``.
"""
