"""Organ label ids of the corpus: defined in the bundle (``scripts.organ_labels``), because
training reads them too (on-the-fly lesion synthesis, the organ loss); re-exported here."""

from scripts.organ_labels import HOST_LABELS, OrganLabel, TumorPart, host_labels

__all__ = ["OrganLabel", "TumorPart", "HOST_LABELS", "host_labels"]
