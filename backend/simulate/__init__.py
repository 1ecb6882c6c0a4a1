"""Offline simulation of the labelling loop: the backend's sampler, students and teacher code run
against labelled corpora, to measure labels saved and selection cost (`mraru simulate`)."""
