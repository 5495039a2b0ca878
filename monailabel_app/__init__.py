"""MONAI Label app over radiobundles stores (see issue: MONAI Label app)."""
