"""Parts of the MONAI Label app, one concept per module.

* :mod:`.datastore`: MONAI Label ``Datastore`` over a TileDB store (images, versioned labels);
* :mod:`.store_access`: listings, id checks and label writes of one store;
* :mod:`radiobject_adapter.store.label_versions`: label versions as TileDB fragments with per-save records;
* :mod:`.uploads`: checking an uploaded label against its image;
* :mod:`.cache`: NIfTI conversions per volume version;
* :mod:`.image_info`: per-image scores and state shared with MONAI Label's subprocesses;
* :mod:`.bundle`: the workspace copy of a bundle (configs from the repository, weights kept);
* :mod:`.train`: MONAI Label's bundle training with checked overrides and tracking defaults;
* :mod:`.conf`: the ``--conf`` options;
* :mod:`.errors`: exceptions answered as clear 4xx responses.
"""
