"""Upstream: settings and the ``upstream`` command line that ties the libraries together."""
