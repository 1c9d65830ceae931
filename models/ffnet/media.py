"""Real images for calibration and validation (Debian's opencv-doc media, and sample images
shipped inside the matplotlib and scikit-image wheels), and the input tensors that models
with the AI Hub contracts expect.

Three sets, pairwise disjoint, so that validation never sees a calibration image:

* calibration ("calib"): vtest.avi frames 0, 60, 120, ... and the photos in CALIB_IMAGES;
* validation  ("valid"): vtest.avi frames 30, 90, 150, ... and the photos in VALID_IMAGES;
  mostly street scenes with small, far pedestrians: out of the selfie model's domain;
* portrait    ("portrait"): people close to the camera, the selfie model's domain; see
  portrait_images(). Used for validation only, never for calibration.

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

# The portrait set, declared before any quantized model was measured on it; every image that
# the rule names is used (no choice by result). Sources, all read from files installed on
# this machine (nothing is downloaded):
#   * Megamind.avi (Debian opencv-doc, OpenCV's sample data): 720x528, 270 frames of an
#     animated film excerpt (DreamWorks' "Megamind"), human characters in head-and-shoulders
#     shots close to the camera. Every PORTRAIT_VIDEO_STEP-th frame from 0: frames 0, 10, ...,
#     260 (27 frames; frame 0 is black, the fade-in, and is kept by the rule). Licence: not
#     stated by OpenCV; a copyrighted film excerpt that OpenCV redistributes as sample data.
#     It is rendered, not photographed: person-like, not a photo of a person.
#   * grace_hopper.jpg (matplotlib wheel, mpl-data/sample_data): 512x600 head-and-shoulders
#     photo of Grace Hopper; U.S. Navy photograph, public domain.
#   * astronaut.png (scikit-image wheel, skimage/data): 512x512 photo of the astronaut Eileen
#     Collins, upper body; NASA, public domain (skimage.data.astronaut's docstring).
#   * camera.png (scikit-image wheel, skimage/data): 512x512 grey photo of a man with a camera
#     on a tripod, upper body to knees; CC0 by Lav Varshney (skimage.data.camera's
#     docstring). Read as three equal channels.
# Looked at and left out, for reasons fixed before any measurement: skimage's lfw_subset.npy
# (25x25 grey face crops, half of them non-faces), no_time_for_that_tiny.gif (25x14 pixels),
# matplotlib's Minduka_Present_Blue_Pack.png (a drawn gift box), Megamind_bugy.avi (the
# same clip, badly encoded).
PORTRAIT_VIDEO = "Megamind.avi"
PORTRAIT_VIDEO_STEP = 10
PORTRAIT_VIDEO_FRAMES = 270  # frames in Megamind.avi: 0, 10, ..., 260 are used
# (python package, path inside the package, pip requirement) of each bundled photo
PORTRAIT_PHOTOS = (
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "matplotlib"),
    ("skimage", "data/astronaut.png", "scikit-image"),
    ("skimage", "data/camera.png", "scikit-image"),
)


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


def _package_file(package: str, rel: str, requirement: str) -> str:
    """Path of a data file shipped inside an installed Python package (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the portrait set needs {rel} from the Python package {package}: "
            f"pip install {requirement} (models/requirements-ffnet.txt pins it)")
    path = os.path.join(list(spec.submodule_search_locations)[0], rel)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the installed {requirement}: "
                                f"reinstall it (pip install --force-reinstall {requirement})")
    return path


def portrait_sources() -> list[str]:
    """Names of the portrait set's images, in image_set("portrait")'s order."""
    frames = [f"{PORTRAIT_VIDEO}#{i}" for i in range(0, PORTRAIT_VIDEO_FRAMES, PORTRAIT_VIDEO_STEP)]
    return frames + [f"{pkg}:{rel}" for pkg, rel, _ in PORTRAIT_PHOTOS]


def portrait_images() -> list[np.ndarray]:
    """The portrait set (see the comment at PORTRAIT_VIDEO): Megamind.avi frames 0, 10, ...,
    260, then grace_hopper.jpg, astronaut.png, camera.png; RGB uint8. Every image is required:
    a missing source raises FileNotFoundError naming what to install."""
    cv2 = _cv2()
    video = os.path.join(DATA_DIR, PORTRAIT_VIDEO)
    if not os.path.exists(video):
        raise FileNotFoundError(f"{video} not found: the portrait set needs Debian's opencv-doc "
                                "package (or FFNETSEG_MEDIA pointing at a folder with Megamind.avi)")
    idx = list(range(0, PORTRAIT_VIDEO_FRAMES, PORTRAIT_VIDEO_STEP))
    frames = video_frames(idx, video)
    if len(frames) != len(idx):
        raise FileNotFoundError(f"{video}: decoded {len(frames)} of the {len(idx)} frames "
                                f"{idx[0]}..{idx[-1]}")
    pics = []
    for package, rel, requirement in PORTRAIT_PHOTOS:
        path = _package_file(package, rel, requirement)
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)  # grey camera.png -> three equal channels
        if bgr is None:
            raise FileNotFoundError(f"cannot decode {path}")
        pics.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames + pics


def image_set(kind: str, n_video: int = 6, n_photos: int | None = None) -> list[np.ndarray]:
    """``kind``: "calib", "valid" or "portrait". Returns RGB uint8 images of various sizes.
    ``n_video``/``n_photos`` choose how many vtest.avi frames / photos of "calib" and
    "valid" are used; "portrait" is always the whole set (they are ignored)."""
    if kind == "portrait":
        return portrait_images()
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
