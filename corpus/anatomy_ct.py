"""Procedural CT torso: lung bases to pelvis, portal venous phase, in Hounsfield units.

The anatomy is laid out in an "adult" frame (mm, x toward the patient's right, y anterior, z
superior, z = 0 at the level of L1) and scaled uniformly so that the body fits the field of view:
a 128^3 volume at 2 mm (256 mm field) holds a slim patient at about 0.7 of adult size, a 512 mm
field a full adult. Organ positions, sizes, rotations and densities are jittered per seed.

Tissue values (mean, before texture and noise), in line with portal venous phase CT:

========================  ===========  ==========================================
tissue                    HU           label
========================  ===========  ==========================================
air outside the body      -1000        BACKGROUND
fat                       -100         FAT
muscle                    50           MUSCLE
lung parenchyma           -850         LUNG (pulmonary vessels about -50 to 40)
liver                     95 to 125    LIVER (hepatic vessels +40 to +70)
spleen                    105 to 125   SPLEEN
kidney cortex / medulla   ~170 / ~130  KIDNEY
pancreas                  85 to 110    PANCREAS
colon wall / lumen        55 / gas     COLON
aorta, IVC                ~165, ~130   GREAT_VESSELS
vertebral body / cortex   ~230 / ~600  BONE
========================  ===========  ==========================================
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .anatomy import Anatomy, TissueContrast
from .geometry import VoxelGrid
from .labels import OrganLabel as L
from .realism import smooth_noise
from .shapes import Tube, ellipsoid_box, ellipsoid_rho, rotation_matrix

__all__ = ["build_torso", "ADULT_HALF_WIDTH_MM"]

#: Half-width of the adult body in the anatomy frame; the scale is chosen from it.
ADULT_HALF_WIDTH_MM = 150.0
_ADULT_HALF_DEPTH_MM = 110.0

#: Texture amplitude (HU SD of a smooth field) per label: parenchyma is nearly flat, fat and
#: lung are mottled, bone marrow is coarse.
_TEXTURE_HU = {
    L.FAT: 8.0,
    L.MUSCLE: 5.0,
    L.BONE: 45.0,
    L.LUNG: 25.0,
    L.LIVER: 4.0,
    L.HEPATIC_VESSEL: 4.0,
    L.KIDNEY: 6.0,
    L.PANCREAS: 6.0,
    L.SPLEEN: 4.0,
    L.COLON: 10.0,
    L.GREAT_VESSELS: 3.0,
    L.HEART: 4.0,
    L.STOMACH: 6.0,
    L.SMALL_BOWEL: 10.0,
    L.SPINAL_CANAL: 3.0,
    L.SOFT_TISSUE: 8.0,
}


class _Torso:
    """Paints one torso; every random number comes from ``rng`` in a fixed order."""

    def __init__(self, grid: VoxelGrid, rng: np.random.Generator) -> None:
        self.grid = grid
        self.rng = rng
        half = grid.half_extent
        self.s = float(min(1.0, 0.92 * half[0] / ADULT_HALF_WIDTH_MM, 0.92 * half[1] / _ADULT_HALF_DEPTH_MM))
        self.image = np.full(grid.shape, -1000.0, dtype=np.float32)
        self.labels = np.zeros(grid.shape, dtype=np.uint8)
        self.regions: dict[str, np.ndarray] = {}
        self.full = grid.full()

    # -- helpers ---------------------------------------------------------------------------
    def mm(self, adult: npt.ArrayLike) -> np.ndarray:
        return np.asarray(adult, dtype=np.float64) * self.s

    def jitter(self, value: float, sd: float) -> float:
        return float(value + self.rng.normal(0.0, sd))

    def jitter_point(self, point: list[float], sd: float) -> list[float]:
        return [self.jitter(v, sd) for v in point]

    def paint(self, mask: np.ndarray, label: L, hu: float | np.ndarray, slices=None) -> None:
        target = (slice(None),) * 3 if slices is None else slices
        self.labels[target][mask] = np.uint8(label)
        image = self.image[target]
        image[mask] = hu[mask] if isinstance(hu, np.ndarray) else np.float32(hu)

    def ellipsoid(self, center_adult, semi_adult, angles=(0.0, 0.0, 0.0)):
        center, semi = self.mm(center_adult), self.mm(semi_adult)
        box = ellipsoid_box(self.grid, center, semi)
        return box, ellipsoid_rho(box, center, semi, rotation_matrix(angles))

    # -- anatomy ---------------------------------------------------------------------------
    def body(self) -> None:
        s = self.s
        x, y, z = self.full.x, self.full.y, self.full.z
        half_width = self.jitter(ADULT_HALF_WIDTH_MM, 5.0) * s
        front, back = self.jitter(_ADULT_HALF_DEPTH_MM, 5.0) * s, self.jitter(95.0, 4.0) * s
        # The lower thorax is a little wider than the abdomen.
        width_z = np.float32(half_width) * (1.0 + 0.05 * np.clip(z / (80.0 * s), 0.0, 1.0)).astype(np.float32)
        depth_y = np.where(y >= 0, np.float32(front), np.float32(back)).astype(np.float32)
        self.wall_rho = lambda inset: np.sqrt((x / (width_z - inset)) ** 2 + (y / (depth_y - inset)) ** 2)
        fat_mm = self.jitter(20.0, 5.0) * s
        self.cavity_inset = fat_mm + 9.0 * s
        body = self.wall_rho(0.0) < 1.0
        self.paint(body, L.FAT, self.jitter(-100.0, 5.0))
        inner = self.wall_rho(fat_mm)
        self.paint(inner < 1.0, L.MUSCLE, self.jitter(50.0, 5.0))
        self.cavity_rho = self.wall_rho(self.cavity_inset)
        self.cavity = self.cavity_rho < 1.0
        self.visceral_fat_hu = self.jitter(-95.0, 5.0)
        self.paint(self.cavity, L.FAT, self.visceral_fat_hu)

    def diaphragm(self) -> None:
        s, x, y = self.s, self.full.x, self.full.y
        right_apex, left_apex = self.jitter(70.0, 6.0) * s, self.jitter(55.0, 6.0) * s
        right = right_apex - 40 * s * ((x - 60 * s) / (75 * s)) ** 2 - 45 * s * (y / (80 * s)) ** 2
        left = left_apex - 40 * s * ((x + 60 * s) / (75 * s)) ** 2 - 45 * s * (y / (80 * s)) ** 2
        self.dome = np.maximum(right, left).astype(np.float32)  # (n, m, 1): height of the diaphragm
        self.dome_right, self.dome_left = right.astype(np.float32), left.astype(np.float32)

    def thorax(self) -> None:
        rng, s, z = self.rng, self.s, self.full.z
        diaphragm_muscle = self.cavity & (z > self.dome - 6 * s) & (z <= self.dome)
        self.paint(diaphragm_muscle, L.MUSCLE, 50.0)
        thoracic = self.cavity & (z > self.dome)
        x, y = self.full.x, self.full.y
        mediastinum = thoracic & (np.abs(x + 5 * s) < 16 * s) & (y > -75 * s)
        self.paint(mediastinum, L.SOFT_TISSUE, self.jitter(-40.0, 15.0))
        lungs = thoracic & ~mediastinum
        lung_hu = self.jitter(-850.0, 20.0)
        self.paint(lungs, L.LUNG, lung_hu)
        # Pulmonary vessels: where two smooth fields are both near zero (tubular network),
        # thicker toward the hilum.
        shape = self.grid.shape
        scale = np.maximum(14.0 * s / np.asarray(self.grid.spacing), 1.0)
        n1, n2 = smooth_noise(shape, scale, rng), smooth_noise(shape, scale, rng)
        width = np.float32(0.13) * (1.3 - np.clip(self.cavity_rho, 0.0, 1.0))
        vessels = lungs & (np.abs(n1) < width) & (np.abs(n2) < width)
        self.paint(vessels, L.LUNG, self.jitter(0.0, 15.0))
        per_slice = np.cumsum(lungs.sum(axis=(0, 1)))
        middle = int(np.searchsorted(per_slice, per_slice[-1] / 2.0))
        self.regions["lung_upper"] = lungs & (np.arange(lungs.shape[2]) > middle)
        self.regions["lung_lower"] = lungs & ~self.regions["lung_upper"]
        self.regions["lung_periphery"] = lungs & (self.cavity_rho > 0.82)
        box, rho = self.ellipsoid(self.jitter_point([-20.0, 15.0, 100.0], 5.0), [60.0, 48.0, 52.0], (0.0, 20.0, 25.0))
        heart = (rho < 1.0) & self.cavity[box.slices] & (box.z > self.dome[box.slices[0], box.slices[1]] - 5 * s)
        self.paint(heart, L.HEART, self.jitter(130.0, 8.0), box.slices)

    def liver(self) -> None:
        rng, s = self.rng, self.s
        center = self.jitter_point([62.0, 0.0, 15.0], 4.0)
        box, rho = self.ellipsoid(center, [self.jitter(85.0, 5.0), self.jitter(85.0, 4.0), 85.0], (0.0, 0.0, self.jitter(15.0, 5.0)))
        x, y, z = box.x, box.y, box.z
        sl = box.slices
        rho = rho + np.float32(0.04) * smooth_noise(rho.shape, max(1.0, 8.0 * s / self.grid.spacing[0]), rng)
        inferior = -40.0 * s - 0.8 * np.maximum(x - 40.0 * s, 0.0)
        liver = (
            (rho < 1.0)
            & self.cavity[sl]
            & (z < self.dome_right[sl[0], sl[1]] - 4 * s)
            & (z > inferior)
            & ~((x < 20 * s) & (y < -25 * s))
            & (x > -45 * s + 0.8 * np.maximum(20 * s - y, 0.0))
        )
        self.liver_hu = self.jitter(110.0, 8.0)
        self.paint(liver, L.LIVER, self.liver_hu, sl)
        # Portal vein trunk and a branching tree of portal / hepatic veins.
        vessel_hu = self.liver_hu + float(rng.uniform(40.0, 70.0))
        portal = Tube(self.mm([[10, -12, -40], [32, -2, -12], [52, 4, 8], [75, 0, 20]]), self.mm([7.0, 7.0, 6.0, 4.0]))
        portal_rho, _ = portal.evaluate(self.grid)
        liver_full = self.labels == L.LIVER
        trunk = liver_full & (portal_rho < 1.0)
        scale = max(1.0, 12.0 * s / self.grid.spacing[0])
        n1, n2 = smooth_noise(rho.shape, scale, rng), smooth_noise(rho.shape, scale, rng)
        tree = liver & (np.abs(n1) < 0.14) & (np.abs(n2) < 0.14)
        self.paint(trunk, L.HEPATIC_VESSEL, vessel_hu)
        self.paint(tree, L.HEPATIC_VESSEL, vessel_hu, sl)
        # Right lobe to the right of the falciform plane (about 15 mm right of the midline).
        full_x = self.full.x
        liver_now = np.isin(self.labels, (L.LIVER, L.HEPATIC_VESSEL))
        self.regions["liver_right_lobe"] = liver_now & (full_x > 15 * s)
        self.regions["liver_left_lobe"] = liver_now & (full_x <= 15 * s)
        self.regions["liver_near_portal"] = liver_now & (portal_rho < 3.0)
        vessel = self.labels == L.HEPATIC_VESSEL
        near = np.zeros_like(vessel)
        near[sl] = _dilate_box(vessel[sl], max(1, int(round(6.0 * s / self.grid.spacing[0]))))
        self.regions["liver_near_vessels"] = liver_now & near

    def spleen(self) -> None:
        center = self.jitter_point([-80.0, -40.0, 35.0], 4.0)
        angles = (0.0, 0.0, self.jitter(-30.0, 6.0))
        box, rho = self.ellipsoid(center, [32.0, 55.0, 50.0], angles)
        hollow = ellipsoid_rho(box, self.mm(np.add(center, [40.0, 22.0, 0.0])), self.mm([28.0, 42.0, 42.0]), rotation_matrix(angles))
        sl = box.slices
        spleen = (rho < 1.0) & (hollow > 1.0) & self.cavity[sl] & (box.z < self.dome_left[sl[0], sl[1]] - 3 * self.s)
        self.paint(spleen, L.SPLEEN, self.jitter(115.0, 5.0), sl)

    def stomach(self) -> None:
        s = self.s
        center = self.jitter_point([-40.0, 40.0, 40.0], 4.0)
        box, rho = self.ellipsoid(center, [42.0, 32.0, 40.0], (0.0, 0.0, 30.0))
        sl = box.slices
        stomach = (rho < 1.0) & self.cavity[sl] & (box.z < self.dome_left[sl[0], sl[1]] - 5 * s)
        wall_fraction = 5.0 / 35.0
        lumen = stomach & (rho < 1.0 - wall_fraction)
        gas = lumen & (box.y > np.float32(self.mm(center)[1] + 12 * s))
        hu = np.where(gas, np.float32(-950.0), np.where(lumen, np.float32(15.0), np.float32(55.0))).astype(np.float32)
        self.paint(stomach, L.STOMACH, hu, sl)

    def pancreas(self) -> None:
        rng, s = self.rng, self.s
        centerline = [
            self.jitter_point([25.0, -8.0, -45.0], 3.0),
            self.jitter_point([5.0, 2.0, -36.0], 3.0),
            self.jitter_point([-25.0, -3.0, -26.0], 3.0),
            self.jitter_point([-55.0, -22.0, -13.0], 3.0),
            self.jitter_point([-72.0, -34.0, -6.0], 3.0),
        ]
        radii = [self.jitter(17.0, 1.5), 11.0, self.jitter(12.0, 1.0), self.jitter(11.0, 1.0), 8.0]
        rho, t = Tube(self.mm(centerline), self.mm(radii)).evaluate(self.grid)
        lobulation = smooth_noise(self.grid.shape, max(1.0, 5.0 * s / self.grid.spacing[0]), rng)
        gland = (rho + np.float32(0.12) * lobulation < 1.0) & self.cavity
        self.paint(gland, L.PANCREAS, self.jitter(98.0, 6.0))
        self.pancreas_t = t

    def kidneys(self) -> None:
        rng = self.rng
        for side in (1.0, -1.0):  # right, left
            center = self.jitter_point([65.0 * side, -45.0, -45.0 if side > 0 else -30.0], 4.0)
            semi = [self.jitter(28.0, 2.0), self.jitter(24.0, 2.0), self.jitter(55.0, 3.0)]
            angles = (0.0, 15.0 * side, self.jitter(-30.0 * side, 5.0))
            rotation = rotation_matrix(angles)
            box, rho = self.ellipsoid(center, semi, angles)
            sinus_center = np.add(center, rotation @ np.array([-20.0 * side, 0.0, 0.0]))
            sinus = ellipsoid_rho(box, self.mm(sinus_center), self.mm([14.0, 10.0, 26.0]), rotation) < 1.0
            sl = box.slices
            organ = (rho < 1.0) & ~sinus
            cortex_hu = self.jitter(170.0, 10.0)
            medulla_hu = cortex_hu - float(rng.uniform(25.0, 50.0))
            hu = np.where(rho < 0.68, np.float32(medulla_hu), np.float32(cortex_hu)).astype(np.float32)
            self.paint(sinus & (rho < 1.05), L.FAT, -90.0, sl)
            self.paint(organ, L.KIDNEY, hu, sl)
            z_center, half_height = self.mm(center)[2], self.mm(semi)[2]
            for region, extra in (
                ("kidney_upper_pole", box.z > z_center + 0.3 * half_height),
                ("kidney_lower_pole", box.z < z_center - 0.3 * half_height),
                ("kidney_cortex", rho > 0.72),
            ):
                target = self.regions.setdefault(region, np.zeros(self.grid.shape, dtype=bool))
                target[sl] |= organ & extra

    def colon(self) -> None:
        rng, s = self.rng, self.s
        path = [
            [85.0, 15.0, -150.0],
            [86.0, 5.0, -75.0],  # ascending
            [70.0, 35.0, -72.0],
            [30.0, 62.0, -82.0],
            [-25.0, 65.0, -78.0],
            [-65.0, 45.0, -55.0],  # transverse
            [-85.0, 10.0, -40.0],
            [-88.0, 5.0, -130.0],  # descending
            [-55.0, 25.0, -160.0],
            [-10.0, 15.0, -172.0],  # sigmoid
        ]
        points = [self.jitter_point(p, 3.0) for p in path]
        radius = self.jitter(18.0, 1.5)
        tube = Tube(self.mm(points), self.mm([radius] * len(points)))
        rho, t = tube.evaluate(self.grid)
        colon = (rho < 1.0) & self.cavity
        wall = 3.5 / radius
        lumen = colon & (rho < 1.0 - wall)
        stool = smooth_noise(self.grid.shape, max(1.0, 6.0 * s / self.grid.spacing[0]), rng)
        lumen_hu = np.where(stool > 0.4, np.float32(-120.0) + 60.0 * stool, np.float32(-950.0))
        hu = np.where(lumen, lumen_hu, np.float32(self.jitter(55.0, 5.0))).astype(np.float32)
        self.paint(colon, L.COLON, hu)
        c = tube.cumulative
        self.regions["colon_ascending"] = colon & (t <= c[1])
        self.regions["colon_transverse"] = colon & (t > c[2]) & (t < c[5])
        self.regions["colon_descending"] = colon & (t >= c[6]) & (t <= c[7])

    def small_bowel(self) -> None:
        s, z = self.s, self.full.z
        free = (self.labels == L.FAT) & self.cavity & (z < -35 * s) & (z > -170 * s)
        # Loops: a band around the zero set of a smooth field reads as coiled tubes in a slice;
        # fluid in their centre, mesenteric fat between them.
        loops = np.abs(smooth_noise(self.grid.shape, max(1.0, 16.0 * s / self.grid.spacing[0]), self.rng))
        bowel = free & (loops < 0.45)
        hu = np.where(loops < 0.15, np.float32(self.jitter(15.0, 5.0)), np.float32(self.jitter(40.0, 5.0))).astype(np.float32)
        self.paint(bowel, L.SMALL_BOWEL, hu)

    def vessels(self) -> None:
        s, x, y = self.s, self.full.x, self.full.y
        aorta_x, aorta_y = self.jitter(-18.0, 2.0) * s, self.jitter(-40.0, 2.0) * s
        aorta = ((x - aorta_x) ** 2 + (y - aorta_y) ** 2 < (12.0 * s) ** 2) & self.cavity
        self.paint(aorta, L.GREAT_VESSELS, self.jitter(165.0, 10.0))
        ivc_x, ivc_y = self.jitter(22.0, 2.0) * s, self.jitter(-32.0, 2.0) * s
        ivc = ((x - ivc_x) ** 2 + ((y - ivc_y) / 0.8) ** 2 < (11.0 * s) ** 2) & self.cavity & (self.full.z < 80 * s)
        self.paint(ivc, L.GREAT_VESSELS, self.jitter(130.0, 8.0))

    def muscles(self) -> None:
        s, x, y, z = self.s, self.full.x, self.full.y, self.full.z
        body = self.wall_rho(0.0) < 1.0
        for side in (1.0, -1.0):
            paraspinal = ((x - side * 35 * s) / (28 * s)) ** 2 + ((y + 90 * s) / (20 * s)) ** 2 < 1.0
            self.paint(paraspinal & body, L.MUSCLE, 50.0)
            psoas_radius = (8.0 + 0.13 * np.clip(-z / s, 0.0, 140.0)) * s
            psoas = ((x - side * 38 * s) ** 2 + (y + 52 * s) ** 2 < psoas_radius**2) & (z < 0) & self.cavity
            self.paint(psoas, L.MUSCLE, 50.0)

    def skeleton(self) -> None:
        s, x, y, z = self.s, self.full.x, self.full.y, self.full.z
        body = self.wall_rho(0.0) < 1.0
        pitch, disc = 32.0 * s, 7.0 * s
        phase = self.rng.uniform(0.0, pitch)
        is_disc = np.mod(z - phase, pitch) < disc  # (1, 1, p)
        vb = (x / (20 * s)) ** 2 + ((y + 55 * s) / (17 * s)) ** 2
        cortex_hu, marrow_hu = self.jitter(600.0, 40.0), self.jitter(230.0, 25.0)
        self.paint((vb < 1.0) & is_disc & body, L.SOFT_TISSUE, 90.0)
        self.paint((vb < 1.0) & ~is_disc & body, L.BONE, np.where(vb > 0.8, np.float32(cortex_hu), np.float32(marrow_hu)).astype(np.float32) * np.ones_like(z))
        posterior = ((x / (24 * s)) ** 2 + ((y + 100 * s) / (12 * s)) ** 2 < 1.0) & ~is_disc & body
        self.paint(posterior, L.BONE, self.jitter(420.0, 40.0))
        canal = (x**2 + (y + 82 * s) ** 2 < (9 * s) ** 2) & body
        self.paint(canal, L.SPINAL_CANAL, 15.0)
        # Ribs: an inclined periodic band in the body wall above the lower abdomen.
        ring = (self.cavity_rho >= 1.0) & (self.wall_rho(self.cavity_inset - 9 * s) < 1.0)
        band = np.cos(2 * np.pi * (z + 0.35 * y) / (26 * s)) > 0.55
        ribs = ring & band & (z > -35 * s) & ~((np.abs(x) < 30 * s) & (y > 0)) & (y > -85 * s)
        self.paint(ribs, L.BONE, self.jitter(500.0, 40.0))
        for side in (1.0, -1.0):
            box, rho = self.ellipsoid([75.0 * side, -40.0, -185.0], [45.0, 30.0, 60.0], (0.0, -20.0 * side, 0.0))
            wing = (rho < 1.0) & (rho > 0.85) & body[box.slices]
            self.paint(wing, L.BONE, self.jitter(450.0, 40.0), box.slices)
        box, rho = self.ellipsoid([0.0, -72.0, -180.0], [35.0, 18.0, 40.0])
        self.paint((rho < 1.0) & body[box.slices], L.BONE, self.jitter(300.0, 30.0), box.slices)

    def pancreas_regions(self) -> None:
        gland = self.labels == L.PANCREAS
        t = self.pancreas_t
        self.regions["pancreas_head"] = gland & (t < 0.3)
        self.regions["pancreas_body"] = gland & (t >= 0.3) & (t < 0.62)
        self.regions["pancreas_tail"] = gland & (t >= 0.62)
        del self.pancreas_t

    def texture(self) -> None:
        amplitude = np.zeros(256, dtype=np.float32)
        for label, hu in _TEXTURE_HU.items():
            amplitude[int(label)] = hu
        scale = np.maximum(3.0 / np.asarray(self.grid.spacing), 1.0)
        field = smooth_noise(self.grid.shape, scale, self.rng)
        self.image += field * amplitude[self.labels]

    def build(self) -> Anatomy:
        self.body()
        self.diaphragm()
        self.small_bowel()
        self.thorax()
        self.liver()
        self.spleen()
        self.stomach()
        self.pancreas()
        self.kidneys()
        self.colon()
        self.vessels()
        self.muscles()
        self.skeleton()
        self.pancreas_regions()
        self.texture()
        # Later organs overwrite earlier ones: keep each region to the voxels its organ still owns.
        owners = {"liver": (L.LIVER, L.HEPATIC_VESSEL), "kidney": (L.KIDNEY,), "pancreas": (L.PANCREAS,), "colon": (L.COLON,), "lung": (L.LUNG,)}
        for name, region in self.regions.items():
            region &= np.isin(self.labels, owners[name.split("_")[0]])
        return Anatomy(grid=self.grid, image=self.image, labels=self.labels, contrast=TissueContrast.CT, regions=self.regions)


def _dilate_box(mask: np.ndarray, radius_voxels: int) -> np.ndarray:
    """Binary dilation by a cube of half-width ``radius_voxels`` (separable maximum filter)."""
    return ndimage.maximum_filter(mask.view(np.uint8), size=2 * radius_voxels + 1) > 0


def build_torso(grid: VoxelGrid, rng: np.random.Generator) -> Anatomy:
    """Build a clean CT torso (no blur, no noise) on ``grid`` from ``rng``.

    Returns an :class:`~.anatomy.Anatomy` with HU image, organ labels and the lesion location
    regions ``liver_right_lobe``, ``liver_left_lobe``, ``liver_near_vessels``,
    ``liver_near_portal``, ``kidney_upper_pole``, ``kidney_lower_pole``, ``kidney_cortex``,
    ``pancreas_head``, ``pancreas_body``, ``pancreas_tail``, ``colon_ascending``,
    ``colon_transverse``, ``colon_descending``, ``lung_upper``, ``lung_lower``, ``lung_periphery``.
    """
    return _Torso(grid, rng).build()
