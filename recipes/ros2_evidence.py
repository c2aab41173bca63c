"""Evidence for docs/ros2.md: edgedet's ROS 2 output without ROS, checked end to end.

1. Writes N synthetic road frames (640x480; bgr8, rgb8 and mono8 in turn) as sensor_msgs/Image
   to a rosbag2, runs ``edgedet ros2 --input-bag ... --out-bag ... --transport dds`` with a
   separate ``python -m edgedet.ros2.echo`` subscriber process on DDS, then compares the bag read
   back and what the subscriber received with the detector's own output on the same images.
2. Times the per-message costs of the transport (not the detector) on this machine.

Run: ``python recipes/ros2_evidence.py [N]`` (needs the 'ros' extra). Prints one JSON object.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edgedet
from edgedet.assets import sample_model_path
from edgedet.cli import main
from edgedet.data.synthetic import make_scenes
from edgedet.ros2 import msgs
from edgedet.ros2.convert import (
    DETECTION_ARRAY,
    IMAGE,
    Stamp,
    from_detection2d_array,
    header,
    image_fields,
    image_to_bgr,
    to_detection2d_array,
)
from edgedet.ros2.dds import idl_type, to_idl

CAM, OUT = "/cam_front/image_raw", "/edgedet/detections"


def _best_ms(fn, repeat: int = 20) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return round(best * 1e3, 3)


def main_(n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="edgedet_ros2_"))
    make = msgs.factory()
    frames = [s.image for s in make_scenes(n, seed=11, imgsz=(480, 640))]
    stamps = [Stamp(1_733_000_000 + i // 30, (i % 30) * 33_333_333) for i in range(n)]
    encodings = ["bgr8", "rgb8", "mono8"]
    images = [
        make(IMAGE, header=header(make, s, "cam_front"), **image_fields(f, encodings[i % 3]))
        for i, (f, s) in enumerate(zip(frames, stamps))
    ]
    msgs.write_bag(work / "in", CAM, IMAGE, [(s.ns, m) for s, m in zip(stamps, images)])
    domain = random.randint(30, 200)
    echo = subprocess.Popen(
        [sys.executable, "-m", "edgedet.ros2.echo", OUT, "--count", str(n), "--timeout", "120",
         "--domain-id", str(domain)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert echo.stderr is not None and "ready" in echo.stderr.readline()
    model = str(sample_model_path())
    rc = main(["ros2", model, "--runtime", "onnxruntime", "--transport", "dds", "--domain-id",
               str(domain), "--input-bag", str(work / "in"), "--input-topic", CAM,
               "--output-topic", OUT, "--out-bag", str(work / "out"), "--wait-subscribers", "30",
               "--report", str(work / "report.json")])  # fmt: skip
    out, _ = echo.communicate(timeout=120)
    received = [json.loads(line) for line in out.splitlines()]
    bag = [from_detection2d_array(m) for _, m in msgs.read_bag(work / "out", OUT, DETECTION_ARRAY)]

    det = edgedet.load(model, runtime="onnxruntime")
    boxes = same_bag = same_dds = 0
    for i, image in enumerate(images):
        want = det(image_to_bgr(image))
        boxes += len(want)
        b, r = bag[i], received[i]
        same_bag += bool(
            np.array_equal(b.xyxy.astype(np.float32), want.xyxy)
            and np.array_equal(b.scores.astype(np.float32), want.scores)
            and b.class_ids == [det.class_names[c] for c in want.class_ids]
            and b.stamp == stamps[i] and b.frame_id == "cam_front"
        )  # fmt: skip
        same_dds += bool(
            np.array_equal(np.float32(r["xyxy"]).reshape(-1, 4), want.xyxy)
            and np.array_equal(np.float32(r["scores"]), want.scores)
            and r["class_ids"] == [det.class_names[c] for c in want.class_ids]
            and Stamp(*r["stamp"]) == stamps[i] and r["decoders_agree"]
        )  # fmt: skip

    # per-message transport costs (best of 20), one 640x480 frame and its detections
    dets = det(frames[0])
    arr = to_detection2d_array(dets, stamp=stamps[0], frame_id="cam_front",
                               class_names=det.class_names, make=make)  # fmt: skip
    bgr8 = images[0]
    idl_img = to_idl(bgr8)
    wire_img = idl_img.serialize(use_version_2=False)
    timings = {
        "detections_in_frame0": len(dets),
        "convert_detection2d_array_ms": _best_ms(lambda: to_detection2d_array(
            dets, stamp=stamps[0], frame_id="cam_front", class_names=det.class_names, make=make)),
        "rosbags_serialize_array_ms": _best_ms(lambda: msgs.serialize(arr)),
        "cyclonedds_serialize_array_ms": _best_ms(lambda: to_idl(arr).serialize(use_version_2=False)),
        "cyclonedds_serialize_image_640x480_ms": _best_ms(lambda: to_idl(bgr8).serialize(use_version_2=False), 5),
        "cyclonedds_deserialize_image_640x480_ms": _best_ms(lambda: idl_type(IMAGE).deserialize(wire_img), 5),
        "rosbags_deserialize_image_640x480_ms": _best_ms(lambda: msgs.deserialize(msgs.serialize(bgr8), IMAGE), 5),
        "image_to_bgr_from_dds_list_ms": _best_ms(lambda: image_to_bgr(idl_type(IMAGE).deserialize(wire_img)), 5),
        "image_to_bgr_from_dds_via_rosbags_ms": _best_ms(lambda: image_to_bgr(msgs.deserialize(wire_img, IMAGE)), 5),
        "detector_ms": _best_ms(lambda: det(frames[0]), 10),
    }  # fmt: skip
    det.close()
    return {
        "frames": n,
        "node_exit_status": rc,
        "node_report": json.loads((work / "report.json").read_text()),
        "boxes_total": boxes,
        "bag_messages": len(bag),
        "bag_messages_identical": same_bag,
        "dds_messages_received_by_subscriber_process": len(received),
        "dds_messages_identical": same_dds,
        "dds_cdr_bytes_first": received[0]["cdr_bytes"] if received else None,
        "timings": timings,
    }


if __name__ == "__main__":
    print(json.dumps(main_(int(sys.argv[1]) if len(sys.argv) > 1 else 30), indent=2))
