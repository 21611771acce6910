"""Models: architectures, shared preprocessing, age-distribution helpers, Grad-CAM and Hub I/O.

Data flows train -> model files -> demo; this package is the middle and imports neither side.
"""
