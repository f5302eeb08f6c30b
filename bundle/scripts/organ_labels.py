"""Organ label ids of the corpus: one table for phantoms, real anatomy and the written label maps.

Every organ label map of the corpus (``organs/*.nii.gz``, ``PhantomCase.organ_labels``) is a uint8
volume with the values of :class:`OrganLabel`. Tumors do not change it: a tumor voxel keeps the
label of the organ that hosts it (as TotalSegmentator's liver includes liver lesions), and the
tumor itself lives in the separate tumor mask.

CT torso ids are 1..16, MR head ids 20..28, so a label map says by its values which kind of
volume it describes. Labels that real segmentations cannot distinguish (e.g. slicerio's "tissue")
map to :attr:`OrganLabel.SOFT_TISSUE`.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["OrganLabel", "TumorPart", "HOST_LABELS", "host_labels"]


class OrganLabel(IntEnum):
    """Organ label ids of the corpus label maps (uint8).

    CT torso:
        ``FAT`` subcutaneous and visceral fat, ``MUSCLE`` body wall, paraspinal and psoas muscles,
        ``BONE`` vertebrae, ribs and pelvis, ``LUNG`` parenchyma including pulmonary vessels,
        ``LIVER`` parenchyma, ``HEPATIC_VESSEL`` portal and hepatic veins inside the liver,
        ``KIDNEY`` cortex and medulla, ``PANCREAS``, ``SPLEEN``, ``COLON`` wall and lumen,
        ``GREAT_VESSELS`` aorta and inferior vena cava, ``HEART``, ``STOMACH`` wall and content,
        ``SMALL_BOWEL`` small-bowel loops, ``SPINAL_CANAL``, ``SOFT_TISSUE`` any other soft
        tissue (mediastinum, or a real segmentation's unspecific "tissue").
    MR head:
        ``SCALP``, ``SKULL``, ``CSF`` extra-axial CSF and sulci, ``GRAY_MATTER`` cortex,
        ``WHITE_MATTER``, ``VENTRICLES``, ``DEEP_GRAY_MATTER`` basal ganglia and thalami,
        ``CEREBELLUM``, ``BRAINSTEM``.
    """

    BACKGROUND = 0
    FAT = 1
    MUSCLE = 2
    BONE = 3
    LUNG = 4
    LIVER = 5
    HEPATIC_VESSEL = 6
    KIDNEY = 7
    PANCREAS = 8
    SPLEEN = 9
    COLON = 10
    GREAT_VESSELS = 11
    HEART = 12
    STOMACH = 13
    SMALL_BOWEL = 14
    SPINAL_CANAL = 15
    SOFT_TISSUE = 16
    SCALP = 20
    SKULL = 21
    CSF = 22
    GRAY_MATTER = 23
    WHITE_MATTER = 24
    VENTRICLES = 25
    DEEP_GRAY_MATTER = 26
    CEREBELLUM = 27
    BRAINSTEM = 28


#: Labels that make up each host organ of ``attributes.json`` (the ``organ`` of a finding).
#: A tumor of that organ lies only on voxels with one of these labels.
HOST_LABELS: dict[str, tuple[OrganLabel, ...]] = {
    "liver": (OrganLabel.LIVER, OrganLabel.HEPATIC_VESSEL),
    "kidney": (OrganLabel.KIDNEY,),
    "pancreas": (OrganLabel.PANCREAS,),
    "colon": (OrganLabel.COLON,),
    "lung": (OrganLabel.LUNG,),
    "spleen": (OrganLabel.SPLEEN,),
    "brain": (OrganLabel.GRAY_MATTER, OrganLabel.WHITE_MATTER, OrganLabel.DEEP_GRAY_MATTER),
}


def host_labels(organ: str) -> tuple[OrganLabel, ...]:
    """Labels of a host organ named as in ``attributes.json`` (``"liver"``, ``"brain"``, ...).

    Raises:
        ValueError: if the organ has no label in the corpus.
    """
    try:
        return HOST_LABELS[organ]
    except KeyError:
        raise ValueError(f"organ must be one of {sorted(HOST_LABELS)}, got {organ!r}") from None


class TumorPart(IntEnum):
    """Tumor sub-regions of ``PhantomCase.tumor_parts`` (the tumor mask is ``parts > 0``).

    ``SOLID`` viable or enhancing tumor, ``NECROSIS`` necrotic core, ``EDEMA`` peritumoral edema
    (gliomas only; part of the whole tumor, as in BraTS and MSD brain labels).
    """

    NONE = 0
    SOLID = 1
    NECROSIS = 2
    EDEMA = 3
