"""Whole-column work on Arrow: stream a CSV, parse its columns by the ``columns`` rules.

Base layer: the data steps and batch scoring both read files through it, so it imports neither.
"""
