"""Make ``examples/keypoints_walk_coco.json``: 120 frames (50 Hz) of COCO-17 pixel keypoints of a
walking person, seen by Human3.6M camera 54138969 (1000 x 1002 px), with detector-like jitter,
per-keypoint confidences and a few missing keypoints (confidence 0).

The motion comes from the project's synthetic motion model (:mod:`ddhpose.synthetic.motion`). COCO's
face points (nose, eyes, ears) do not exist in the Human3.6M skeleton, so they are placed on a
small head model: the head centre sits between the Human3.6M neck/nose and head joints, the face
looks along the body's forward direction.

Usage (from the repository root)::

    python examples/make_example_keypoints.py [--out examples/keypoints_walk_coco.json]
        [--tiny-checkpoint /tmp/tiny.pt] [--alphapose examples/alphapose_two_people.json]

``--tiny-checkpoint`` also writes a tiny *random-initialised* model (width 32, depth 2, 27
frames) to try ``ddhpose infer``/``render`` end to end without a trained checkpoint (its 3D
output is meaningless). ``--alphapose`` also writes two walking people as AlphaPose's
``alphapose-results.json`` with ``--pose_track`` writes them (one entry per person and frame,
``idx`` the track; see :mod:`ddhpose.keypoints.detectors`): person 1 in frames 0-59, person 2
(another walker, 300 px to the right) in frames 15-59 without frames 30-32.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ddhpose.camera import h36m_camera, image_coordinates, project_to_2d, world_to_camera
from ddhpose.keypoints import save_keypoints_json
from ddhpose.skeleton import reduce_h36m32
from ddhpose.synthetic.actions import generate_motion
from ddhpose.synthetic.body import sample_body
from ddhpose.synthetic.motion import sample_style

FRAMES = 120
SEED = 7
# Missing keypoints: (COCO joint, first frame, last frame + 1).
GAPS = ((9, 40, 47), (4, 10, 16), (0, 90, 93))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def coco_from_h36m17(p: np.ndarray) -> np.ndarray:
    """World poses (T, 17, 3) metres, z up, Human3.6M-17 -> (T, 17, 3) COCO-17 points."""
    up = _unit(p[:, 10] - p[:, 9])  # head direction
    right = p[:, 1] - p[:, 4]  # left hip -> right hip
    fwd = _unit(np.cross(np.array([0.0, 0.0, 1.0]), right))
    right = _unit(np.cross(fwd, up))  # head-right, orthogonal to up and forward
    c = 0.55 * p[:, 10] + 0.45 * p[:, 9]  # head centre
    face = {
        0: c + 0.10 * fwd - 0.03 * up,  # nose
        1: c + 0.08 * fwd - 0.032 * right + 0.015 * up,  # left eye
        2: c + 0.08 * fwd + 0.032 * right + 0.015 * up,  # right eye
        3: c - 0.075 * right - 0.01 * fwd,  # left ear
        4: c + 0.075 * right - 0.01 * fwd,  # right ear
    }
    body = {5: 11, 6: 14, 7: 12, 8: 15, 9: 13, 10: 16, 11: 4, 12: 1, 13: 5, 14: 2, 15: 6, 16: 3}
    out = np.empty_like(p)
    for k, v in face.items():
        out[:, k] = v
    for k, j in body.items():
        out[:, k] = p[:, j]
    return out


def make_keypoints(frames: int = FRAMES, seed: int = SEED) -> tuple[np.ndarray, tuple[int, int]]:
    """(T, 17, 3) COCO-17 [u, v, confidence] pixels and the image size (w, h)."""
    rng = np.random.default_rng(seed)
    body, style = sample_body(rng), sample_style(rng)
    world = reduce_h36m32(generate_motion("Walking", body, style, rng, frames))  # (T, 17, 3)
    coco_world = coco_from_h36m17(world)
    cam = h36m_camera("S9", 0)
    x_cam = world_to_camera(coco_world.astype(np.float32), cam.orientation, cam.translation)
    uv = image_coordinates(project_to_2d(x_cam, cam.intrinsic), cam.res_w, cam.res_h)
    uv = uv + rng.normal(0.0, 1.5, size=uv.shape)  # detector jitter, pixels
    conf = rng.uniform(0.6, 0.98, size=(frames, 17, 1))
    for joint, start, stop in GAPS:
        conf[start:stop, joint] = 0.0
    return np.concatenate([uv, conf], axis=-1), (cam.res_w, cam.res_h)


def alphapose_two_people(frames: int = 60) -> tuple[list[dict], tuple[int, int]]:
    """Two walkers as AlphaPose tracking output (COCO-17), and the image size (w, h)."""
    one, size = make_keypoints(frames, seed=SEED)
    two, _ = make_keypoints(frames, seed=SEED + 4)
    two[..., 0] += 300.0
    entries = []
    for f in range(frames):
        for idx, kp in ((1, one), (2, two)):
            if idx == 2 and (f < 15 or 30 <= f < 33):
                continue
            xy = kp[f, :, :2]
            box = [float(xy[:, 0].min()), float(xy[:, 1].min()),
                   float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1]))]
            entries.append({"image_id": f"{f}.jpg", "category_id": 1,
                            "keypoints": [round(float(v), 2) for v in kp[f].reshape(-1)],
                            "score": round(float(kp[f, :, 2].mean() * 3), 3),
                            "box": [round(b, 1) for b in box], "idx": idx})
    return entries, size


def save_tiny_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """A random-initialised tiny DDHPose (width 32, depth 2, 27 frames) for smoke runs."""
    import torch

    from ddhpose.model.checkpoint import save_checkpoint
    from ddhpose.model.ddhpose import DDHPose, ModelConfig

    torch.manual_seed(seed)
    cfg = ModelConfig(dataset="h36m", width=32, depth=2, heads=4, mlp_ratio=2.0, frames=27,
                      timesteps=1000, scale=1.0, drop_path=0.1, xc_layout="reference")
    model = DDHPose(cfg)
    return save_checkpoint(path, model, metadata={"note": "random init, for smoke tests only"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("keypoints_walk_coco.json")))
    parser.add_argument("--tiny-checkpoint", default=None, metavar="PT",
                        help="also write a random-initialised tiny checkpoint here")
    parser.add_argument("--alphapose", default=None, metavar="JSON",
                        help="also write two tracked people as AlphaPose results here")
    args = parser.parse_args(argv)
    kp, size = make_keypoints()
    save_keypoints_json(args.out, kp, "coco17", size, decimals=1)
    print(f"wrote {args.out}: {kp.shape[0]} frames, coco17, image {size[0]}x{size[1]} px, "
          f"{int((kp[..., 2] == 0).sum())} keypoints with confidence 0")
    if args.alphapose:
        from ddhpose.io import atomic_open

        entries, size = alphapose_two_people()
        with atomic_open(args.alphapose, "w", encoding="utf-8") as fh:
            fh.write("[\n" + ",\n".join(json.dumps(e, separators=(",", ":")) for e in entries)
                     + "\n]\n")
        print(f"wrote {args.alphapose}: {len(entries)} AlphaPose entries, 2 tracks, image "
              f"{size[0]}x{size[1]} px")
    if args.tiny_checkpoint:
        print(f"wrote {save_tiny_checkpoint(args.tiny_checkpoint)} (random init)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
