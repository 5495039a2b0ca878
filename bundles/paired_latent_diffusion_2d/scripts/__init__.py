"""Code of the ``paired_latent_diffusion_2d`` bundle (referenced from its configs as ``scripts.…``).

Paired 2D image translation (e.g. dentate -> edentulous CBCT slices): data, model glue, engines.

* :mod:`.data` — ``create_vae_dataloaders`` / ``create_ldm_dataloaders`` over TIF folders or a store
* :mod:`.pairing` — matching target and condition images by name, reporting the unpaired
* :mod:`.transforms` — the preprocessing pipeline (MONAI transforms), ``DictToTuple``
* :mod:`.engines` — iteration steps for MONAI's trainer / evaluator (VAE-GAN, latent diffusion)
* :mod:`.latent` — latent scale factor, condition encoding, frozen checkpoints
* :mod:`.translator` — the ``network_def`` of ``inference.json`` (condition in, image out)
* :mod:`.losses`, :mod:`.metrics`, :mod:`.handlers`, :mod:`.io`, :mod:`.stats`, :mod:`.synthetic`

Run from the bundle folder, ``scripts`` is importable (MONAI puts the working directory first on
``sys.path``); the modules import each other relatively.

Example:
    >>> from scripts.data import create_ldm_dataloaders
    >>> from scripts.synthetic import make_paired_tifs
    >>> ds = make_paired_tifs("data", n_pairs=8, shape=(32, 32))
    >>> train, val = create_ldm_dataloaders(ds.root, batch_size=4, patch_size=32)
"""
