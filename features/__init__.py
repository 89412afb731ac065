"""Code lists, the feature registry, the point-in-time feature builder and the data dictionary."""
