"""Shared library of the skin-trouble detector.

Every stage of the pipeline (train/, handler/, space/, bench/) imports from here, so that
image decoding, inference and severity grading are written once.
"""
