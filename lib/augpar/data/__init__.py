"""Data layer: generated and shipped datasets, tfds/grain pipelines, step-indexed batching.

Submodules (imported lazily by the caller, so that the tfds/grain imports are only paid when
used): ``arrow_pointing``, ``digits``, ``batching``, ``tfds_source``.
"""
