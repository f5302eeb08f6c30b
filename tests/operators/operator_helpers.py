"""Helpers of the operator tests: the DICOM operators run by hand, without a Holoscan graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.deploy.operators import DICOMSeriesToVolumeOperator

from operators import ClinicalSeriesSelectorOperator, DICOMInputLoaderOperator

#: Two prompts: one of the attribute vocabulary (coded Neoplasm in Liver), one free text (Lesion).
PROMPTS = ("liver tumor", "bright round blob")


def load_selection(fragment, folder, *, rules_file=None, allow_non_dicom_files=False):
    """Loader -> selector -> volume, the SDK way (the SDK's own ``test()`` functions do the same).

    Returns:
        ``(study_selected_series_list, image)``.
    """
    loader = DICOMInputLoaderOperator(fragment, input_folder=folder, allow_non_dicom_files=allow_non_dicom_files, name="test_loader")
    selector = ClinicalSeriesSelectorOperator(fragment, rules_file=rules_file, name="test_selector")
    to_volume = DICOMSeriesToVolumeOperator(fragment, name="test_to_volume")
    selection = selector.filter(None, loader.load_data_to_studies(Path(folder)))
    image = to_volume.convert_to_image(selection)
    return selection, image


def loaded_series(fragment, folder):
    """What a writer's ``SegmentationRun`` is made of, for a series folder.

    Returns:
        ``(selection, datasets, volume, affine)``: the SDK's selection, the slices in volume
        order, the volume (slice, row, column) as float32 and its RAS affine on the (x, y, z) grid.
    """
    from operators.volume_geometry import series_affine

    selection, image = load_selection(fragment, folder)
    series = selection[0].selected_series[0].series
    datasets = [instance.get_native_sop_instance() for instance in series.get_sop_instances()]
    return selection, datasets, np.asarray(image.asnumpy(), dtype=np.float32), series_affine(datasets, space="RAS")
