"""Inference side of the demo: load an image, find faces, align, predict, explain, draw (no Gradio in here).

`demo.pipeline.Pipeline` is the entry point for the UI, the API and the CLI (`python -m demo.cli`).
"""
