"""Camera geometry (docs/model.md "Cameras and projection")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddhpose.camera import (
    H36M_EXTRINSICS,
    camera_to_world,
    h36m_camera,
    h36m_cameras,
    image_coordinates,
    mpi3dhp_test_intrinsic_px,
    normalize_screen_coordinates,
    project_to_2d,
    project_to_2d_linear,
    qinverse,
    qrot,
    world_to_camera,
)

# Normalised intrinsics measured on the reference.
SPEC_INTRINSIC = [
    [2.29009891, 2.28756237, 0.025083065, 0.0289029814, -0.207098916, 0.247775182,
     -0.00307515031, -0.000975698873, -0.00142447161],
    [2.29935122, 2.29518342, 0.0176972151, 0.0161298513, -0.194213629, 0.24040854,
     0.00681997556, -0.00161902665, -0.00274089444],
    [2.29828143, 2.29759789, 0.0396317244, 0.00280535221, -0.208338186, 0.255488008,
     -0.00246049743, 0.00148438697, -0.000759999326],
    [2.29102278, 2.28954792, 0.0299364328, 0.00176403334, -0.198384091, 0.218323678,
     -0.00894780736, -0.000587205577, -0.001813362],
]


@pytest.mark.parametrize("index", range(4))
def test_normalised_intrinsics_match_spec(index):
    cam = h36m_camera("S9", index)
    assert cam.intrinsic.dtype == np.float32 and cam.intrinsic.shape == (9,)
    np.testing.assert_allclose(cam.intrinsic, SPEC_INTRINSIC[index], atol=1e-6, rtol=0)
    # The centre rounds like the reference (float32 scale, float64 offset): within 1e-8.
    np.testing.assert_allclose(cam.intrinsic[2:4], SPEC_INTRINSIC[index][2:4], atol=1e-8, rtol=0)


def test_h36m_camera_fields():
    cams = h36m_cameras("S1")
    assert [c.id for c in cams] == ["54138969", "55011271", "58860488", "60457274"]
    assert [(c.res_w, c.res_h) for c in cams] == [(1000, 1002), (1000, 1000), (1000, 1000),
                                                  (1000, 1002)]
    orient, trans_mm = H36M_EXTRINSICS["S1"][0]
    np.testing.assert_allclose(cams[0].translation, np.asarray(trans_mm) / 1000, rtol=1e-6)
    np.testing.assert_allclose(cams[0].orientation, orient, rtol=1e-7)
    assert cams[0].intrinsic_px[0] == pytest.approx(1145.0494384765625)
    with pytest.raises(KeyError):
        h36m_camera("S2", 0)
    with pytest.raises(IndexError):
        h36m_camera("S1", 4)


# --- screen coordinates -----------------------------------------------------------------------


def test_normalize_screen_coordinates_spec_examples():
    px = np.array([[0, 0], [500, 500], [1000, 1002]], dtype=np.float32)
    want = np.array([[-1, -1.002], [0, -0.002], [1, 1.002]])
    out = normalize_screen_coordinates(px, 1000, 1002)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, want, atol=1e-7)
    out_t = normalize_screen_coordinates(torch.from_numpy(px), 1000, 1002)
    np.testing.assert_allclose(out_t.numpy(), want, atol=1e-7)
    np.testing.assert_allclose(image_coordinates(out, 1000, 1002), px, atol=1e-4)
    np.testing.assert_allclose(image_coordinates(want, 1000, 1002), px, atol=1e-9)


@pytest.mark.parametrize("wh", [(1000, 1002), (2048, 2048), (1920, 1080)])
def test_normalize_inverse_round_trip(wh):
    w, h = wh
    px = np.random.default_rng(0).uniform(0, w, size=(4, 17, 2))
    np.testing.assert_allclose(image_coordinates(normalize_screen_coordinates(px, w, h), w, h),
                               px, atol=1e-9)
    t = torch.from_numpy(px)
    torch.testing.assert_close(image_coordinates(normalize_screen_coordinates(t, w, h), w, h), t)
    with pytest.raises(ValueError):
        normalize_screen_coordinates(px[..., :1], w, h)


def test_normalize_rounds_like_the_reference():
    # The reference: float32 X / w * 2, minus the float64 list [1, h / w], stored as float32.
    px = np.random.default_rng(1).uniform(0, 1000, size=(2000, 2)).astype(np.float32)
    ref = ((px / np.float32(1000) * np.float32(2)).astype(np.float64)
           - np.array([1.0, 1002 / 1000])).astype(np.float32)
    np.testing.assert_array_equal(normalize_screen_coordinates(px, 1000, 1002), ref)


# --- projection -------------------------------------------------------------------------------


def test_projection_hand_computed_simple():
    # X = (1, 2, 4): p = (0.25, 0.5), r2 = 0.3125, radial = 1 + 0.1 r2 = 1.03125,
    # tan = 0.01*0.25 + 0.02*0.5 = 0.0125, q = p * 1.04375 + (0.01, 0.02) * 0.3125
    #   = (0.2640625, 0.528125); f q + c = (2*0.2640625 + 0.1, 3*0.528125 - 0.2).
    cam = np.array([2.0, 3.0, 0.1, -0.2, 0.1, 0.0, 0.0, 0.01, 0.02])
    x = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(project_to_2d(x, cam), [0.628125, 1.384375], atol=1e-12)
    out_t = project_to_2d(torch.from_numpy(x), cam)
    np.testing.assert_allclose(out_t.numpy(), [0.628125, 1.384375], atol=1e-12)
    np.testing.assert_allclose(project_to_2d_linear(x, cam), [0.6, 1.3], atol=1e-12)


def test_projection_hand_computed_h36m_camera():
    k = [float(v) for v in h36m_camera("S11", 0).intrinsic]
    fx, fy, cx, cy, k1, k2, k3, p1, p2 = k
    x, y, z = 0.3, -0.2, 4.0
    u, v = x / z, y / z
    r2 = u * u + v * v
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    tan = p1 * u + p2 * v
    want = [fx * (u * (radial + tan) + p1 * r2) + cx, fy * (v * (radial + tan) + p2 * r2) + cy]
    pts = np.array([[x, y, z]] * 3)  # batched over points
    np.testing.assert_allclose(project_to_2d(pts, np.asarray(k)), [want] * 3, atol=1e-12)


def test_projection_clamps_to_unit_square():
    cam = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(project_to_2d(np.array([10.0, -10.0, 1.0]), cam), [1.0, -1.0])
    np.testing.assert_allclose(project_to_2d_linear(np.array([0.5, -3.0, 1.0]), cam), [0.5, -1.0])


# --- rotations and world <-> camera -----------------------------------------------------------


def _rotation_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def test_qrot_matches_rotation_matrix():
    rng = np.random.default_rng(2)
    q = rng.normal(size=(5, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    v = rng.normal(size=(5, 3))
    want = np.stack([_rotation_matrix(qi) @ vi for qi, vi in zip(q, v, strict=True)])
    np.testing.assert_allclose(qrot(q, v), want, atol=1e-12)
    np.testing.assert_allclose(qrot(torch.from_numpy(q), torch.from_numpy(v)).numpy(), want,
                               atol=1e-12)
    # One quaternion broadcast over a batch of vectors; the inverse undoes it.
    vv = rng.normal(size=(2, 7, 3))
    np.testing.assert_allclose(qrot(q[0], vv), vv @ _rotation_matrix(q[0]).T, atol=1e-12)
    np.testing.assert_allclose(qrot(qinverse(q[0]), qrot(q[0], vv)), vv, atol=1e-12)


def test_qrot_90_degrees_about_z():
    q = np.array([np.sqrt(0.5), 0.0, 0.0, np.sqrt(0.5)])
    np.testing.assert_allclose(qrot(q, np.array([1.0, 0.0, 0.0])), [0.0, 1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("subject", ["S1", "S11"])
def test_world_camera_round_trip(subject):
    cam = h36m_camera(subject, 2)
    pts = np.random.default_rng(3).normal(size=(4, 17, 3))
    c = world_to_camera(pts, cam.orientation, cam.translation)
    np.testing.assert_allclose(camera_to_world(c, cam.orientation, cam.translation), pts,
                               atol=1e-6)
    t = torch.from_numpy(pts)
    ct = world_to_camera(t, cam.orientation, cam.translation)
    np.testing.assert_allclose(ct.numpy(), c, atol=1e-9)
    # The camera centre maps to the camera origin; camera +z is R applied to (0, 0, 1).
    origin = world_to_camera(cam.translation.astype(np.float64), cam.orientation, cam.translation)
    np.testing.assert_allclose(origin, 0.0, atol=1e-9)
    axis = camera_to_world(np.array([0.0, 0.0, 1.0]), cam.orientation, cam.translation)
    r = _rotation_matrix(cam.orientation.astype(np.float64))
    np.testing.assert_allclose(axis - cam.translation, r[:, 2], atol=1e-6)


def test_mpi3dhp_test_intrinsics():
    cam, w, h = mpi3dhp_test_intrinsic_px("TS1")
    assert (w, h) == (2048, 2048) and cam.dtype == np.float32
    np.testing.assert_allclose(cam[:4], [7.32506 * 204.8, 7.32506 * 204.8,
                                         -0.0322884 * 204.8 + 1024, 0.0929296 * 204.8 + 1024],
                               rtol=1e-6)
    assert (cam[4:] == 0).all()
    cam5, w5, h5 = mpi3dhp_test_intrinsic_px("TS6")
    assert (w5, h5) == (1920, 1080)
    np.testing.assert_allclose(cam5[:4], [8.770747185 * 192, 8.770747185 * 192,
                                          -0.104908645 * 192 + 960, 0.104899704 * 192 + 540],
                               rtol=1e-6)
    with pytest.raises(KeyError):
        mpi3dhp_test_intrinsic_px("TS7")
