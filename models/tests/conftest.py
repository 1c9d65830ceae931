"""Shared set-up of the models/ tests: import path and skips.

Run them with the models virtualenv (made by models/ffnet/build_all.sh):

    out/venv-models/bin/python -m pytest models/tests -q

Without torch (or onnxruntime, onnx, OpenCV, the opencv-doc media) the tests that need it
are skipped, not failed.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FFNET_DIR = os.path.abspath(os.path.join(HERE, "..", "ffnet"))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
if FFNET_DIR not in sys.path:
    sys.path.insert(0, FFNET_DIR)


@pytest.fixture(scope="session")
def media_or_skip():
    """The opencv-doc images, or skip (needs OpenCV and Debian's opencv-doc)."""
    pytest.importorskip("cv2")
    import media

    try:
        calib = media.image_set("calib", n_video=1, n_photos=1)
        valid = media.image_set("valid", n_video=1, n_photos=1)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return calib, valid
