"""DiffuGTS: zero-shot text-prompted 3D tumor segmentation on a frozen MAISI foundation model.

The bundle's code package (imported as ``scripts``, as MONAI bundles do). Modules, one job each:
``preprocessing`` (intensity, invertible geometry), ``foundation`` (MAISI networks, profiles,
checkpoints), ``features`` (encoder taps), ``text`` (attribute prompts, sentence encoder), ``aova``
(attention maps, coarse mask), ``inpainting`` (latent space inpainting), ``residual`` (residuals,
refiner, mask clean-up), ``heads`` (the trainable parts), ``pipeline`` (end to end), ``metrics``.
"""

from .pipeline import DiffuGTSPipeline, PipelineConfig, PipelineOutput, SegmentationResult, build_pipeline
from .preprocessing import Modality

__all__ = ["DiffuGTSPipeline", "PipelineConfig", "PipelineOutput", "SegmentationResult", "build_pipeline", "Modality"]
