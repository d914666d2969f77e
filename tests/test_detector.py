"""A detector with a non-square input: letterbox, thresholds, NMS, boxes back in frame pixels."""

import numpy as np
import pytest

pytest.importorskip("onnx")

from model_kit import model, write_package
from onnx import TensorProto, helper

from edgefusion.backends import open_backend
from edgefusion.engine import FusionStep
from edgefusion.package import load_package
from edgefusion.preprocess import FeedBuilder, Geometry, ImageParams
from edgefusion.preprocess.image import preprocess_image_geometry
from edgefusion.samples import FusionWindow

F = TensorProto.FLOAT
LABELS = ["car", "person"]
# in model-input pixels (320 x 240), xyxy; per class scores
BOXES = np.array([[100, 60, 200, 140],     # person 0.9: the known box
                  [104, 62, 204, 142],     # person 0.8, overlaps the first: suppressed by NMS
                  [10, 40, 50, 80],        # car 0.7
                  [250, 100, 300, 200],    # person 0.2: under the threshold
                  [102, 61, 202, 141]],    # car 0.6 on the person: another class, NMS keeps it
                 np.float32)
SCORES = np.array([[0.05, 0.9], [0.1, 0.8], [0.7, 0.1], [0.1, 0.2], [0.6, 0.3]], np.float32)


def _detector(boxes: np.ndarray, scores: np.ndarray, nhwc: bool = False, yolo: bool = False):
    """image -> constant boxes and scores (+ 0 x the image mean, so the output depends on the input)."""
    shape = ["batch", 240, 320, 3] if nhwc else ["batch", 3, 240, 320]
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"])]
    inits = {"zero": np.zeros(1, np.float32), "b": boxes[None], "s": scores[None]}
    if yolo:  # YOLOv8 style: one (batch, 4 + classes, N) tensor
        inits = {"zero": np.zeros(1, np.float32), "y": np.concatenate([boxes, scores], axis=1).T[None].copy()}
        nodes.append(helper.make_node("Add", ["y", "z"], ["out"]))
        return model(nodes, [("image", F, shape)], [("out", F, ["batch", 4 + scores.shape[1], len(boxes)])], inits)
    nodes += [helper.make_node("Add", ["b", "z"], ["boxes"]), helper.make_node("Add", ["s", "z"], ["scores"])]
    return model(nodes, [("image", F, shape)], [("boxes", F, ["batch", len(boxes), 4]),
                                                 ("scores", F, ["batch", len(boxes), scores.shape[1]])], inits)


def _image(layout="CHW", resize="letterbox"):
    shape = ["batch", 240, 320, 3] if layout == "HWC" else ["batch", 3, 240, 320]
    return [{"name": "image", "modality": "image", "dtype": "float32", "shape": shape,
             "preprocess": {"kind": "image", "width": 320, "height": 240, "resize": resize, "layout": layout}}]


DETS = {"name": "boxes", "kind": "detections", "scores": "scores", "labels": LABELS, "threshold": 0.5, "iou": 0.45}


def _run(pkg_dir, frame):
    pkg = load_package(pkg_dir)
    with open_backend("onnxruntime", pkg, threads=1) as be:
        return FusionStep(pkg, be)(FusionWindow(t_ns=0, image=frame, audio=None, command=None))


def test_letterboxed_detections_come_back_in_frame_pixels(tmp_path):
    pkg = write_package(tmp_path / "det", _detector(BOXES, SCORES), _image(), [DETS])
    frame = np.zeros((360, 640, 3), np.uint8)  # 16:9 into 4:3: scale 0.5, 30 px bands above and below
    r = _run(pkg, frame)
    dets = r.outputs["boxes"]
    assert [(d["label"], d["score"]) for d in dets] == [("person", 0.9), ("car", 0.7), ("car", 0.6)]
    assert dets[0]["box"] == [200.0, 60.0, 400.0, 220.0]  # (x / 0.5, (y - 30) / 0.5)
    assert dets[1]["box"] == [20.0, 20.0, 100.0, 100.0]
    assert r.events == ("person", "car") and r.scores == {"person": pytest.approx(0.9), "car": pytest.approx(0.7)}
    assert r.action == "none" and r.to_dict()["outputs"]["boxes"] == dets


def test_the_letterbox_puts_the_frame_where_the_geometry_says():
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[60:220, 200:400] = 255  # the known box, in frame pixels
    p = ImageParams(width=320, height=240, resize="letterbox", dtype="uint8", layout="HWC", pad=0)
    x, geo = preprocess_image_geometry(frame, p)
    assert x.shape == (240, 320, 3) and geo == Geometry(0.5, 0.5, 0.0, 30.0, 320, 240, 640, 360)
    ys, xs = np.nonzero(x[:, :, 0])
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (100, 60, 200, 140)
    assert geo.to_frame(np.array([[100, 60, 200, 140]])).tolist() == [[200.0, 60.0, 400.0, 220.0]]


def test_stretch_maps_each_axis_by_its_own_scale(tmp_path):
    pkg = write_package(tmp_path / "det", _detector(BOXES, SCORES), _image(resize="stretch"), [DETS])
    r = _run(pkg, np.zeros((480, 1280, 3), np.uint8))  # x scale 1/4, y scale 1/2
    assert r.outputs["boxes"][0]["box"] == [400.0, 120.0, 800.0, 280.0]


def test_yolo_style_normalized_cxcywh_in_nhwc(tmp_path):
    cx = np.stack([(BOXES[:, 0] + BOXES[:, 2]) / 2 / 320, (BOXES[:, 1] + BOXES[:, 3]) / 2 / 240,
                   (BOXES[:, 2] - BOXES[:, 0]) / 320, (BOXES[:, 3] - BOXES[:, 1]) / 240], axis=1).astype(np.float32)
    out = {"name": "out", "kind": "detections", "labels": LABELS, "threshold": 0.5, "box_format": "cxcywh",
           "coords": "normalized"}
    pkg = write_package(tmp_path / "yolo", _detector(cx, SCORES, nhwc=True, yolo=True), _image("HWC"), [out])
    dets = _run(pkg, np.zeros((360, 640, 3), np.uint8)).outputs["out"]
    assert [d["label"] for d in dets] == ["person", "car", "car"]
    assert dets[0]["box"] == pytest.approx([200.0, 60.0, 400.0, 220.0], abs=0.01)


def test_boxes_outside_the_frame_are_clipped_and_a_class_index_beyond_the_labels_is_named(tmp_path):
    boxes = np.array([[-50, 0, 100, 300]], np.float32)  # beyond the letterboxed frame, above and below
    scores = np.array([[0.9]], np.float32)
    out = {**DETS, "classes": "classes", "labels": ["car"]}
    m = _detector(boxes, scores)
    m.graph.node.append(helper.make_node("Constant", [], ["classes"], value=helper.make_tensor(
        "c", TensorProto.INT64, [1, 1], [3])))
    m.graph.output.append(helper.make_tensor_value_info("classes", TensorProto.INT64, ["batch", 1]))
    pkg = write_package(tmp_path / "det", m, _image(), [out])
    d = _run(pkg, np.zeros((360, 640, 3), np.uint8)).outputs["boxes"]
    assert d == [{"label": "3", "score": 0.9, "box": [0.0, 0.0, 200.0, 360.0]}]


def test_uint8_nchw_input_keeps_pixel_values():
    b = FeedBuilder([("img", {"kind": "image", "width": 4, "height": 2, "color": "BGR"}, "uint8",
                      ["batch", 3, 2, 4])])
    frame = np.zeros((2, 4, 3), np.uint8)
    frame[..., 2] = 200
    feeds, info = b.build([FusionWindow(t_ns=0, image=frame, audio=None, command=None)])
    assert feeds["img"].dtype == np.uint8 and feeds["img"].shape == (1, 3, 2, 4)
    assert feeds["img"][0, 2].min() == 200 and feeds["img"][0, :2].max() == 0
    assert info[0].geometry["img"].scale_x == 1.0


def test_the_null_backend_runs_a_detector_with_no_detections(tmp_path):
    pkg = load_package(write_package(tmp_path / "det", _detector(BOXES, SCORES), _image(), [DETS]))
    with open_backend("null", pkg) as be:
        r = FusionStep(pkg, be)(FusionWindow(t_ns=0, image=np.zeros((360, 640, 3), np.uint8), audio=None,
                                             command=None))
    assert r.outputs == {"boxes": []} and r.events == ()


def test_two_image_inputs_each_get_their_own_preprocessing():
    b = FeedBuilder([("wide", {"kind": "image", "width": 8, "height": 4, "resize": "letterbox"}, "float32"),
                     ("small", {"kind": "image", "size": 2, "layout": "HWC"}, "uint8")])
    frame = np.full((4, 4, 3), 255, np.uint8)
    feeds, info = b.build([FusionWindow(t_ns=0, image=frame, audio=None, command=None)])
    assert feeds["wide"].shape == (1, 3, 4, 8) and feeds["wide"].dtype == np.float32
    assert feeds["small"].shape == (1, 2, 2, 3) and feeds["small"].dtype == np.uint8 and feeds["small"].min() == 255
    assert info[0].geometry["wide"].dx == 2.0 and info[0].geometry["small"].scale_x == 0.5
