"""edge-rec converter (workstation side): data -> teacher -> distilled int8 student + HNSW index -> bundle.

Subpackages and modules, in data-flow order: ``data``, ``text``, ``teacher``, ``evaluate``, ``student``,
``distill``, ``quantize``, ``index``, ``bundle``, ``convert``, ``report``. Importing this package imports
nothing heavy; ``teacher``, ``distill``, ``quantize`` and ``convert`` import TensorFlow.
"""
