"""Tumors drawn from the attribute vocabulary and inserted into a host anatomy.

For every lesion one value per attribute kind (location, shape, margin, intensity, texture,
enhancement) is drawn from ``data/attributes.json``, the same file the prompt builder reads, and
the lesion is built to show exactly those attributes:

* **location** picks the host sub-region the centre is drawn from (``LOCATION_REGIONS``);
* **shape**: ``round`` (near-spherical ellipsoid), ``lobulated`` (union of 3 to 5 lobes),
  ``irregular`` (strong surface noise), ``spiculated`` (core with 6 to 14 spikes), ``exophytic``
  (centre near the organ surface), ``focal wall thickening`` (flattened, on the bowel wall);
* **margin**: ``well-defined`` (sharp edge), ``ill-defined`` / ``infiltrative`` / ``irregular``
  (intensity fades over 2 to 5 mm, rougher surface), ``spiculated`` (spikes);
* **intensity**: mean difference to the host organ (CT, ``INTENSITY_RULES``) or absolute density
  (lung and colon lesions against air), ratio to white matter (MR);
* **texture**: ``homogeneous`` / ``heterogeneous`` internal variation, necrotic core;
* **enhancement**: rim, ring, peripheral nodular or vessel-like bright components.

Difficulty follows benchmark.md: diameters 5 mm to several cm (log-uniform), contrast to the host
organ down to 10 HU for liver and pancreas tumors, irregular shapes, several lesions in some cases.
Lesions never leave their host organ: every tumor voxel carries one of the host's labels.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .anatomy import Anatomy, TissueContrast
from .labels import OrganLabel, TumorPart, host_labels
from .realism import smooth_noise
from .shapes import rotation_matrix

__all__ = [
    "VOCABULARY_PATH",
    "load_vocabulary",
    "draw_attributes",
    "LesionRecord",
    "LesionInsertion",
    "insert_lesions",
    "LOCATION_REGIONS",
    "MIN_DIAMETER_MM",
]

logger = logging.getLogger(__name__)

VOCABULARY_PATH = Path(__file__).resolve().parents[1] / "bundle" / "scripts" / "data" / "attributes.json"
MIN_DIAMETER_MM = 5.0

#: Location phrase of the vocabulary -> region name an :class:`~.anatomy.Anatomy` provides.
#: A phrase without an entry (or a host without that region) places the lesion anywhere in the
#: host organ, and the lesion record says so (``location_region = "whole organ"``).
LOCATION_REGIONS: dict[str, str] = {
    "in the right lobe of the liver": "liver_right_lobe",
    "in the left lobe of the liver": "liver_left_lobe",
    "along the hepatic vessels": "liver_near_vessels",
    "beside the portal vein": "liver_near_portal",
    "in the upper pole of the kidney": "kidney_upper_pole",
    "in the lower pole of the kidney": "kidney_lower_pole",
    "in the renal cortex": "kidney_cortex",
    "in the head of the pancreas": "pancreas_head",
    "in the body of the pancreas": "pancreas_body",
    "in the tail of the pancreas": "pancreas_tail",
    "in the ascending colon": "colon_ascending",
    "in the descending colon": "colon_descending",
    "in the transverse colon": "colon_transverse",
    "in the upper lobe of the lung": "lung_upper",
    "in the lower lobe of the lung": "lung_lower",
    "in the periphery of the lung": "lung_periphery",
    "in the cerebral hemisphere": "brain_hemisphere",
    "in the white matter of the frontal lobe": "brain_frontal_white_matter",
    "in the temporal lobe": "brain_temporal",
}

#: CT intensity phrase -> (mode, low, high). ``delta``: HU difference of the lesion mean to the
#: host organ's median; ``absolute``: lesion mean in HU (lesions against air or bowel content).
#: Keys are (finding, phrase); ``(None, phrase)`` is the default for any finding.
INTENSITY_RULES: dict[tuple[str | None, str], tuple[str, float, float]] = {
    (None, "hypodense"): ("delta", -60.0, -25.0),
    (None, "slightly hypodense"): ("delta", -25.0, -10.0),
    (None, "isodense"): ("delta", -22.0, -10.0),
    (None, "slightly hyperdense"): ("delta", 10.0, 25.0),
    (None, "soft-tissue density"): ("absolute", 35.0, 55.0),
    (None, "soft-tissue density against air"): ("absolute", 10.0, 50.0),
    (None, "part-solid"): ("absolute", -500.0, -250.0),
    ("liver tumor", "hypodense"): ("delta", -70.0, -25.0),
    ("kidney tumor", "hypodense"): ("delta", -90.0, -35.0),
    ("colon tumor", "slightly hyperdense"): ("absolute", 55.0, 75.0),
}
#: MR intensity phrase -> (ratio of lesion solid part to white matter) per contrast.
_MR_SOLID_RATIO = {TissueContrast.T2_FLAIR: (1.45, 1.85), TissueContrast.T1: (0.55, 0.78)}
_MR_EDEMA_RATIO = {TissueContrast.T2_FLAIR: (1.28, 1.55), TissueContrast.T1: (0.78, 0.92)}
_MR_NECROSIS_RATIO = {TissueContrast.T2_FLAIR: (0.6, 0.9), TissueContrast.T1: (0.3, 0.45)}

#: Largest primary diameter (mm) and the distribution of the number of lesions per finding.
_MAX_DIAMETER_MM = {
    "liver tumor": 60.0,
    "kidney tumor": 60.0,
    "pancreas tumor": 40.0,
    "colon tumor": 45.0,
    "lung tumor": 45.0,
    "hepatic vessel tumor": 45.0,
    "brain tumor": 55.0,
}
_LESION_COUNT_P = {
    "liver tumor": (0.5, 0.25, 0.15, 0.1),
    "hepatic vessel tumor": (0.6, 0.3, 0.1),
    "kidney tumor": (0.8, 0.2),
    "lung tumor": (0.6, 0.25, 0.15),
    "pancreas tumor": (1.0,),
    "colon tumor": (0.9, 0.1),
    "brain tumor": (0.85, 0.15),
}


@lru_cache(maxsize=4)
def _read_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_vocabulary(path: str | Path = VOCABULARY_PATH) -> dict[str, Any]:
    """The attribute vocabulary (``organs``, ``findings``, ``attribute_kinds``), read once."""
    return _read_json(str(path))


def draw_attributes(finding: str, rng: np.random.Generator, vocabulary: dict[str, Any] | None = None) -> dict[str, str]:
    """One value per attribute kind of ``finding``, drawn uniformly from the vocabulary.

    Returns an ordered dict following the vocabulary's ``attribute_kinds``.

    Raises:
        ValueError: if ``finding`` is not a finding of the vocabulary.
    """
    vocabulary = vocabulary or load_vocabulary()
    findings = vocabulary["findings"]
    if finding not in findings:
        raise ValueError(f"finding must be one of {sorted(findings)}, got {finding!r}")
    values = findings[finding]["attributes"]
    return {kind: str(values[kind][int(rng.integers(len(values[kind])))]) for kind in vocabulary["attribute_kinds"] if kind in values}


@dataclass
class LesionRecord:
    """What was drawn and built for one lesion (written to the case metadata).

    Attributes:
        finding: the finding name, e.g. ``"liver tumor"``.
        attributes: the drawn attribute values, keyed by attribute kind.
        center_mm: lesion centre in world RAS mm.
        diameter_mm: nominal diameter before clipping to the host organ.
        volume_ml: volume of the lesion's mask (whole tumor, edema included), after clipping.
        intensity_mode: ``delta`` (difference to the host median), ``absolute`` (HU) or ``ratio``
            (MR, ratio of the solid part to white matter).
        intensity_target: the drawn difference / density / ratio.
        location_region: the host region the centre was drawn from.
    """

    finding: str
    attributes: dict[str, str]
    center_mm: list[float]
    diameter_mm: float
    volume_ml: float = 0.0
    intensity_mode: str = "delta"
    intensity_target: float = 0.0
    location_region: str = "whole organ"
    extras: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LesionInsertion:
    """Result of :func:`insert_lesions`: the new image, masks and one record per lesion."""

    image: np.ndarray
    tumor_mask: np.ndarray
    tumor_parts: np.ndarray
    lesions: list[LesionRecord]


def _intensity_rule(finding: str, phrase: str) -> tuple[str, float, float]:
    for key in ((finding, phrase), (None, phrase)):
        if key in INTENSITY_RULES:
            return INTENSITY_RULES[key]
    logger.debug("no intensity rule for %r / %r: using a hypodense default", finding, phrase)
    return ("delta", -50.0, -15.0)


def _host_box(host: np.ndarray) -> tuple[slice, slice, slice]:
    found = ndimage.find_objects(host.view(np.uint8))
    if not found or found[0] is None:
        raise ValueError("the host organ is absent from this anatomy")
    return found[0]


class _LesionBuilder:
    """Builds and paints the lesions of one case; all randomness from ``rng``."""

    def __init__(self, anatomy: Anatomy, finding: str, rng: np.random.Generator, vocabulary: dict[str, Any]) -> None:
        self.anatomy, self.finding, self.rng, self.vocabulary = anatomy, finding, rng, vocabulary
        organ = vocabulary["findings"][finding]["organ"]
        self.host = anatomy.mask(*host_labels(organ))
        self.host_slices = _host_box(self.host)
        self.spacing = np.asarray(anatomy.grid.spacing, dtype=np.float64)
        # Depth of every host voxel below the organ surface (mm), on the organ's bounding box.
        self.depth = ndimage.distance_transform_edt(self.host[self.host_slices], sampling=self.spacing).astype(np.float32)
        self.image = anatomy.image.copy()
        self.parts = np.zeros(anatomy.grid.shape, dtype=np.uint8)
        is_mr = anatomy.contrast is not TissueContrast.CT
        reference = anatomy.mask(OrganLabel.WHITE_MATTER) if is_mr else self.host
        values = anatomy.image[reference] if reference.any() else anatomy.image[self.host]
        self.host_level = float(np.median(values))
        self.centers: list[np.ndarray] = []

    # -- placement -------------------------------------------------------------------------
    def draw_center(self, location: str, radius: float, shape: str) -> tuple[np.ndarray, str]:
        region_name = LOCATION_REGIONS.get(location)
        region = self.anatomy.regions.get(region_name) if region_name else None
        local_host = self.host[self.host_slices]
        candidates = local_host if region is None else local_host & region[self.host_slices]
        if not candidates.any():
            candidates, region_name = local_host, None
        if shape == "exophytic":
            wanted = self.depth < max(0.35 * radius, 1.5 * float(self.spacing.min()))
        else:
            wanted = self.depth >= min(0.5 * radius, 0.6 * float(self.depth[candidates].max()))
        choices = np.flatnonzero(candidates & wanted)
        if choices.size == 0:
            choices = np.flatnonzero(candidates)
        offset = np.array([s.start for s in self.host_slices], dtype=np.float64)
        # Keep lesions of one case apart so that they stay separate lesions.
        for _ in range(20):
            index = np.array(np.unravel_index(int(choices[int(self.rng.integers(choices.size))]), candidates.shape))
            center = self.anatomy.grid.index_to_mm(index + offset)
            if all(np.linalg.norm(center - c) > radius + 4.0 for c in self.centers):
                break
        self.centers.append(center)
        return center, (region_name if region_name else "whole organ")

    # -- one lesion ------------------------------------------------------------------------
    def build(self, diameter: float, attributes: dict[str, str]) -> LesionRecord:
        rng, grid = self.rng, self.anatomy.grid
        radius = diameter / 2.0
        shape, margin = attributes.get("shape", "round"), attributes.get("margin", "well-defined")
        texture, enhancement = attributes.get("texture", "homogeneous"), attributes.get("enhancement", "")
        center, region_name = self.draw_center(attributes.get("location", ""), radius, shape)
        is_mr = self.anatomy.contrast is not TissueContrast.CT
        edema_mm = 0.0
        if is_mr:
            with_edema = "edema" in attributes.get("intensity", "")
            edema_mm = float(rng.uniform(8.0, 20.0) if with_edema else rng.uniform(2.0, 7.0))
        fuzzy = margin in ("ill-defined", "infiltrative", "irregular")
        transition_mm = float(rng.uniform(2.0, 5.0)) if fuzzy else 0.5
        box = grid.box(center, radius * 2.3 + transition_mm + edema_mm + 2.0 * float(self.spacing.max()))
        dx, dy, dz = box.x - np.float32(center[0]), box.y - np.float32(center[1]), box.z - np.float32(center[2])
        rot = rotation_matrix(rng.uniform(0.0, 360.0, 3)).astype(np.float32)
        u = dx * rot[0, 0] + dy * rot[1, 0] + dz * rot[2, 0]
        v = dx * rot[0, 1] + dy * rot[1, 1] + dz * rot[2, 1]
        w = dx * rot[0, 2] + dy * rot[1, 2] + dz * rot[2, 2]

        rho = self.shape_rho(u, v, w, radius, shape, margin, fuzzy, box.shape)
        signed_mm = (rho - np.float32(1.0)) * np.float32(radius)  # ~ signed distance to the surface

        host = self.host[box.slices]
        weight = np.clip(0.5 - signed_mm / np.float32(2.0 * transition_mm), 0.0, 1.0) * host
        core = (signed_mm < 0) & host
        if not core.any():  # a lesion smaller than a voxel keeps at least its centre voxel
            core = np.zeros_like(host)
            index = tuple(int(np.argmin(np.abs(a.ravel()))) for a in (dx, dy, dz))
            core[index] = host[index]
            weight = np.maximum(weight, core.astype(np.float32))

        # Lesion values: level, internal texture, necrosis, enhancing rim / nodules.
        mode, low, high = self.intensity(attributes)
        target = float(rng.uniform(low, high))
        hetero = smooth_noise(box.shape, np.maximum(2.5 / self.spacing, 1.0), rng)
        ct = not is_mr
        hetero_sd = (18.0 if "heterogeneous" in texture else 4.0) if ct else (0.10 if "heterogeneous" in texture else 0.03)
        if ct:
            level = self.host_level + target if mode == "delta" else target
        else:
            level = self.host_level * target
        values = np.float32(level) + np.float32(hetero_sd * (1.0 if ct else self.host_level)) * hetero
        necrosis = np.zeros_like(core)
        if "necrotic" in texture and radius >= 5.0:
            necrotic_fraction = rng.uniform(0.35, 0.6)
            necrosis = core & (rho < necrotic_fraction)
            if ct:
                necrotic_value = np.float32(rng.uniform(5.0, 25.0))
            else:
                necrotic_value = np.float32(self.host_level * rng.uniform(*_MR_NECROSIS_RATIO[self.anatomy.contrast]))
            values = np.where(necrosis, necrotic_value + np.float32(0.3) * (values - np.float32(level)), values)
        if attributes.get("intensity") == "part-solid":
            solid = rho < rng.uniform(0.3, 0.6)
            values = np.where(solid, np.float32(rng.uniform(10.0, 40.0)) + np.float32(4.0) * hetero, values)
        rim_mm = max(1.5, float(self.spacing.min()))
        rim = core & (signed_mm > -rim_mm)
        if any(key in enhancement for key in ("rim", "ring")):
            boost = rng.uniform(15.0, 35.0) if ct else self.host_level * rng.uniform(0.08, 0.18)
            values = np.where(rim, values + np.float32(boost), values)
        if "nodular" in enhancement or "vessel-like" in enhancement:
            nodules = core & (signed_mm > -2.5 * rim_mm) & (hetero > 1.2)
            values = np.where(nodules, values + np.float32(rng.uniform(40.0, 70.0)), values)

        whole = core.copy()
        edema_weight = None
        if is_mr:
            edema_weight, edema_mask = self.edema(box, signed_mm, edema_mm, core, rng)
            whole |= edema_mask
        volume_ml = float(whole.sum() * np.prod(self.spacing) / 1000.0)

        # Paint: blend the lesion values into the host with the margin's transition weight.
        local = self.image[box.slices]
        if edema_weight is not None:
            edema_level = np.float32(self.host_level * rng.uniform(*_MR_EDEMA_RATIO[self.anatomy.contrast]))
            edema_values = edema_level + np.float32(0.04 * self.host_level) * hetero
            if self.anatomy.contrast is TissueContrast.T2_FLAIR:
                edema_values = np.maximum(edema_values, local)  # edema never darkens bright gray matter
            local += edema_weight * (edema_values - local)
        # The mean over the lesion, once blended into its margin, equals the drawn target
        # (part-solid nodules keep their mixture of ground glass and solid core).
        if attributes.get("intensity") != "part-solid":
            blended = local[core] + weight[core] * (values[core] - local[core])
            values = values + np.float32((level - float(blended.mean())) / max(float(weight[core].mean()), 1e-3))
        local += weight * (values - local)
        if self.anatomy.noise_sd > 0:
            local += weight * np.float32(self.anatomy.noise_sd) * rng.standard_normal(local.shape, dtype=np.float32)
        parts = self.parts[box.slices]
        if is_mr:
            parts[whole & (parts == 0)] = TumorPart.EDEMA
        parts[core] = TumorPart.SOLID
        parts[necrosis] = TumorPart.NECROSIS

        world = self.anatomy.affine @ np.append(self._index_of(center), 1.0)
        return LesionRecord(
            finding=self.finding,
            attributes=dict(attributes),
            center_mm=[round(float(c), 2) for c in world[:3]],
            diameter_mm=round(float(diameter), 2),
            volume_ml=round(volume_ml, 4),
            intensity_mode=mode,
            intensity_target=round(target, 4),
            location_region=region_name,
            extras={"transition_mm": round(transition_mm, 2), "edema_mm": round(edema_mm, 2)},
        )

    def shape_rho(self, u, v, w, radius: float, shape: str, margin: str, fuzzy: bool, box_shape) -> np.ndarray:
        """Normalised radius of the lesion shape in its own frame (rho < 1 inside)."""
        rng = self.rng
        elongation = rng.uniform(0.85, 1.15, 3)
        if shape == "irregular":
            elongation = rng.uniform(0.7, 1.3, 3)
        if shape == "focal wall thickening":
            elongation = np.array([1.3, 1.3, 0.55])
        semi = (radius * elongation).astype(np.float32)
        rho = np.sqrt((u / semi[0]) ** 2 + (v / semi[1]) ** 2 + (w / semi[2]) ** 2)
        if shape == "lobulated":
            for _ in range(int(rng.integers(3, 6))):
                direction = rng.normal(size=3)
                direction /= np.linalg.norm(direction)
                lobe_center = direction * radius * rng.uniform(0.35, 0.6)
                lobe_radius = np.float32(radius * rng.uniform(0.45, 0.7))
                lobe = np.sqrt((u - lobe_center[0]) ** 2 + (v - lobe_center[1]) ** 2 + (w - lobe_center[2]) ** 2) / lobe_radius
                rho = np.minimum(rho, lobe)
        if shape == "spiculated" or margin == "spiculated":
            rho = rho / np.float32(0.8)
            spike_radius = np.float32(max(0.12 * radius, 0.5 * float(self.spacing.min())))
            for _ in range(int(rng.integers(6, 15))):
                direction = rng.normal(size=3).astype(np.float32)
                direction /= np.linalg.norm(direction)
                length = np.float32(radius * rng.uniform(1.1, 1.8))
                t = np.clip(u * direction[0] + v * direction[1] + w * direction[2], 0.0, length)
                dist = np.sqrt((u - t * direction[0]) ** 2 + (v - t * direction[1]) ** 2 + (w - t * direction[2]) ** 2)
                taper = np.float32(1.0) - np.float32(0.7) * t / length
                rho = np.minimum(rho, dist / (spike_radius * taper))
        roughness = {"irregular": 0.25, "lobulated": 0.08}.get(shape, 0.05) + (0.12 if fuzzy else 0.0)
        surface_scale = np.maximum(radius * 0.5 / self.spacing, 1.0)
        return rho + np.float32(roughness) * smooth_noise(box_shape, surface_scale, rng)

    def _index_of(self, center_mm: np.ndarray) -> np.ndarray:
        """Voxel index (float) of a point in the grid's centred frame."""
        return center_mm / self.spacing + (np.asarray(self.anatomy.grid.shape) - 1) / 2.0

    def intensity(self, attributes: dict[str, str]) -> tuple[str, float, float]:
        if self.anatomy.contrast is TissueContrast.CT:
            return _intensity_rule(self.finding, attributes.get("intensity", ""))
        return ("ratio", *_MR_SOLID_RATIO[self.anatomy.contrast])

    def edema(self, box, signed_mm, extent_mm, core, rng):
        """Peritumoral edema: spreads along white matter, barely into the cortex."""
        labels = self.anatomy.labels[box.slices]
        white = labels == OrganLabel.WHITE_MATTER
        host = self.host[box.slices]
        reach = np.float32(extent_mm) * (np.float32(1.0) + np.float32(0.4) * smooth_noise(box.shape, np.maximum(4.0 / self.spacing, 1.0), rng))
        reach = np.where(white, reach, np.float32(0.3) * reach)
        weight = np.clip(1.0 - (signed_mm - reach) / np.float32(3.0), 0.0, 1.0) * host * (signed_mm >= 0)
        mask = (weight >= 0.5) & ~core
        return weight.astype(np.float32), mask


def insert_lesions(
    anatomy: Anatomy,
    finding: str,
    rng: np.random.Generator,
    *,
    count: int | None = None,
    attributes: dict[str, str] | None = None,
    vocabulary: dict[str, Any] | None = None,
) -> LesionInsertion:
    """Draw attributes and insert one or more lesions of ``finding`` into ``anatomy``.

    Args:
        anatomy: the host; must contain the finding's host organ.
        finding: a finding name of the vocabulary (``"liver tumor"``, ...).
        rng: the only source of randomness.
        count: number of lesions; drawn per finding when None (some cases have several).
        attributes: values that replace the drawn ones for every lesion (e.g.
            ``{"margin": "ill-defined"}``); each must be a value of the vocabulary.
        vocabulary: attribute vocabulary; ``data/attributes.json`` by default.

    Returns:
        The image with lesions (float32), the tumor mask (uint8, 1 = tumor, edema included for
        gliomas), the :class:`~.labels.TumorPart` map and one :class:`LesionRecord` per lesion,
        largest first.
    """
    vocabulary = vocabulary or load_vocabulary()
    if finding not in vocabulary["findings"]:
        raise ValueError(f"finding must be one of {sorted(vocabulary['findings'])}, got {finding!r}")
    if count is None:
        p = _LESION_COUNT_P.get(finding, (1.0,))
        count = 1 + int(rng.choice(len(p), p=p))
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    overrides = dict(attributes or {})
    allowed = vocabulary["findings"][finding]["attributes"]
    for kind, value in overrides.items():
        if value not in allowed.get(kind, ()):
            raise ValueError(f"attributes[{kind!r}] must be one of {allowed.get(kind, [])} for {finding!r}, got {value!r}")
    builder = _LesionBuilder(anatomy, finding, rng, vocabulary)
    max_diameter = _MAX_DIAMETER_MM.get(finding, 40.0)
    primary = float(np.exp(rng.uniform(np.log(2.0 * MIN_DIAMETER_MM), np.log(max_diameter))))
    diameters = [primary] + [float(np.exp(rng.uniform(np.log(MIN_DIAMETER_MM), np.log(max(primary, MIN_DIAMETER_MM + 1e-3))))) for _ in range(count - 1)]
    records = [builder.build(d, {**draw_attributes(finding, rng, vocabulary), **overrides}) for d in diameters]
    mask = (builder.parts > 0).astype(np.uint8)
    return LesionInsertion(image=builder.image, tumor_mask=mask, tumor_parts=builder.parts, lesions=records)
