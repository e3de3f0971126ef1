"""The ``piano-dist`` command line (installed as piano_dist.cli)."""
