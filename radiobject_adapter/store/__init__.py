"""The store: layout, writers, labels, and read access (RadiObject / VolumeCollection).

Files in and out (NIfTI, TIF, DICOM ingest) are in :mod:`radiobject_adapter.io`; label
checks, versions and the foreground index invariant in :mod:`.labels` / :mod:`.label_versions`.

Import from the submodules (``radiobject_adapter.store.radiobject`` ...) or from the
package root; this package module imports nothing so that ``volume`` can use ``layout``.
"""
