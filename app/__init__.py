"""The DiffuGTS MONAI Deploy application (``python app -i DICOM_DIR -o OUT``)."""

from .app import CONFIG_PATH, DiffuGTSApp, main

__all__ = ["CONFIG_PATH", "DiffuGTSApp", "main"]
