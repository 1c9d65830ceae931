"""Real images for calibration and validation (Debian's opencv-doc media), and the input
tensors that models with the AI Hub contracts expect.

Two disjoint sets, so that validation never sees a calibration image:

* calibration: vtest.avi frames 0, 60, 120, ... and the photos in CALIB_IMAGES;
* validation:  vtest.avi frames 30, 90, 150, ... and the photos in VALID_IMAGES.

vtest.avi (768x576 street scene with pedestrians) is decoded with OpenCV (the
opencv-python-headless wheel carries FFmpeg). Nothing here is random noise.
"""

from __future__ import annotations

import os

import numpy as np

DATA_DIR = os.environ.get("FFNETSEG_MEDIA", "/usr/share/doc/opencv-doc/examples/data")
VIDEO = "vtest.avi"
# photos with people or street/indoor scenes, split by hand into two disjoint sets
CALIB_IMAGES = ("messi5.jpg", "basketball1.png", "home.jpg", "building.jpg", "fruits.jpg",
                "aero1.jpg", "baboon.jpg", "stuff.jpg")
VALID_IMAGES = ("basketball2.png", "leuvenA.jpg", "aero3.jpg", "orange.jpg", "blox.jpg",
                "squirrel_cls.jpg")
VIDEO_STEP = 60  # calibration frames every 60th frame, validation frames offset by 30


def _cv2():
    import cv2  # imported lazily: tests that need no images need no OpenCV

    return cv2


def video_frames(indices, path: str | None = None) -> list[np.ndarray]:
    """RGB uint8 frames of vtest.avi at the given frame indices (sequential decode)."""
    cv2 = _cv2()
    path = path or os.path.join(DATA_DIR, VIDEO)
    wanted = sorted(set(int(i) for i in indices))
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {path}: install Debian's opencv-doc package")
    out, i = {}, 0
    try:
        while wanted and i <= wanted[-1]:
            ok, frame = cap.read()
            if not ok:
                break
            if i in wanted:
                out[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()
    return [out[k] for k in wanted if k in out]


def photos(names) -> list[np.ndarray]:
    cv2 = _cv2()
    imgs = []
    for n in names:
        p = os.path.join(DATA_DIR, n)
        bgr = cv2.imread(p, cv2.IMREAD_COLOR)
        if bgr is None:
            continue  # a missing optional photo is skipped, not an error
        imgs.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return imgs


def image_set(kind: str, n_video: int = 6, n_photos: int | None = None) -> list[np.ndarray]:
    """``kind``: "calib" or "valid". Returns RGB uint8 images of various sizes."""
    if kind not in ("calib", "valid"):
        raise ValueError(kind)
    offset = 0 if kind == "calib" else VIDEO_STEP // 2
    frames = video_frames([offset + VIDEO_STEP * k for k in range(n_video)])
    names = CALIB_IMAGES if kind == "calib" else VALID_IMAGES
    pics = photos(names[:n_photos] if n_photos is not None else names)
    imgs = frames + pics
    if not imgs:
        raise FileNotFoundError(
            f"no images found under {DATA_DIR}: install Debian's opencv-doc package "
            "(or set FFNETSEG_MEDIA to a folder holding vtest.avi and photos)")
    return imgs


def to_input(rgb: np.ndarray, shape, layout: str) -> np.ndarray:
    """Resize (bilinear, stretch) an RGB uint8 image to the model input and scale to [0,1].
    ``shape``: the model's 4-D input shape; ``layout``: "nchw" or "nhwc"."""
    cv2 = _cv2()
    if layout == "nchw":
        h, w = int(shape[2]), int(shape[3])
    else:
        h, w = int(shape[1]), int(shape[2])
    x = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    if layout == "nchw":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


def input_contract(model_path: str):
    """(name, shape, layout) of a model's single image input, from the ONNX file."""
    import onnx

    m = onnx.load(model_path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    ins = [i for i in m.graph.input if i.name not in inits]
    if len(ins) != 1:
        raise ValueError(f"{model_path}: expected one input, found {[i.name for i in ins]}")
    i = ins[0]
    shape = [d.dim_value for d in i.type.tensor_type.shape.dim]
    if len(shape) != 4 or any(s <= 0 for s in shape):
        raise ValueError(f"{model_path}: input {i.name} must have a static 4-D shape, got {shape}")
    layout = "nchw" if shape[1] == 3 else "nhwc" if shape[3] == 3 else None
    if layout is None:
        raise ValueError(f"{model_path}: cannot tell the layout of input shape {shape}")
    return i.name, shape, layout
