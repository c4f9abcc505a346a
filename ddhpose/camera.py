"""Camera geometry: Human3.6M cameras, world <-> camera transforms, projection, normalisation.

Units: 3D in metres; image coordinates in pixels; "normalised" screen coordinates map the image
width to [-1, 1] (docs/model.md "Cameras and projection"). Quaternions are (w, x, y, z) and rotate
camera -> world. All functions accept NumPy arrays or torch tensors and are batched over leading
dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# --- Human3.6M camera parameters (VideoPose3D's common/h36m_dataset.py) ------------------------

H36M_CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
H36M_RESOLUTIONS = ((1000, 1002), (1000, 1000), (1000, 1000), (1000, 1002))  # (width, height) px
H36M_FOCAL = (
    (1145.0494384765625, 1143.7811279296875),
    (1149.6756591796875, 1147.5916748046875),
    (1149.1407470703125, 1148.7989501953125),
    (1145.5113525390625, 1144.77392578125),
)
H36M_CENTER = (
    (512.54150390625, 515.4514770507812),
    (508.8486328125, 508.0649108886719),
    (519.8158569335938, 501.40264892578125),
    (514.9682006835938, 501.88201904296875),
)
H36M_RADIAL = (
    (-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
    (-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
    (-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
    (-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
)
H36M_TANGENTIAL = (
    (-0.0009756988729350269, -0.00142447161488235),
    (-0.0016190266469493508, -0.0027408944442868233),
    (0.0014843869721516967, -0.0007599993259645998),
    (-0.0005872055771760643, -0.0018133620033040643),
)
# subject -> 4 x (orientation (w, x, y, z), translation in mm as stored)
H36M_EXTRINSICS: dict[str, tuple[tuple[tuple[float, ...], tuple[float, ...]], ...]] = {
    "S1": (
        ((0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088),
         (1841.1070556640625, 4955.28466796875, 1563.4454345703125)),
        ((0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205),
         (1761.278564453125, -5078.0068359375, 1606.2650146484375)),
        ((0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696),
         (-1846.7777099609375, 5215.04638671875, 1491.972412109375)),
        ((0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435),
         (-1794.7896728515625, -3722.698974609375, 1574.8927001953125)),
    ),
    "S5": (
        ((0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332),
         (2097.3916015625, 4880.94482421875, 1605.732421875)),
        ((0.6159758567810059, -0.7626792192459106, -0.15728192031383514, 0.1189815029501915),
         (2031.7008056640625, -5167.93310546875, 1612.923095703125)),
        ((0.14291371405124664, -0.12907841801643372, 0.7678384780883789, -0.6110143065452576),
         (-1620.5948486328125, 5171.65869140625, 1496.43701171875)),
        ((0.5920479893684387, -0.7814217805862427, 0.1274748593568802, -0.15036417543888092),
         (-1637.1737060546875, -3867.3173828125, 1547.033203125)),
    ),
    "S6": (
        ((0.1337897777557373, -0.15692396461963654, -0.7571090459823608, 0.6198879480361938),
         (1935.4517822265625, 4950.24560546875, 1618.0838623046875)),
        ((0.6147197484970093, -0.7628812789916992, -0.16174767911434174, 0.11819244921207428),
         (1969.803955078125, -5128.73876953125, 1632.77880859375)),
        ((0.1529948115348816, -0.13529130816459656, 0.7646096348762512, -0.6112781167030334),
         (-1769.596435546875, 5185.361328125, 1476.993408203125)),
        ((0.5916101336479187, -0.7804774045944214, 0.12832270562648773, -0.1561593860387802),
         (-1721.668701171875, -3884.13134765625, 1540.4879150390625)),
    ),
    "S7": (
        ((0.1435241848230362, -0.1631336808204651, -0.7548328638076782, 0.6188824772834778),
         (1974.512939453125, 4926.3544921875, 1597.8326416015625)),
        ((0.6141672730445862, -0.7638262510299683, -0.1596645563840866, 0.1177929937839508),
         (1937.0584716796875, -5119.7900390625, 1631.5665283203125)),
        ((0.14550060033798218, -0.12874816358089447, 0.7660516500473022, -0.6127139329910278),
         (-1741.8111572265625, 5208.24951171875, 1464.8245849609375)),
        ((0.5912848114967346, -0.7821764349937439, 0.12445473670959473, -0.15196487307548523),
         (-1734.7105712890625, -3832.42138671875, 1548.5830078125)),
    ),
    "S8": (
        ((0.14110587537288666, -0.15589867532253265, -0.7561917304992676, 0.619644045829773),
         (2150.65185546875, 4896.1611328125, 1611.9046630859375)),
        ((0.6169601678848267, -0.7647668123245239, -0.14846350252628326, 0.11158157885074615),
         (2219.965576171875, -5148.453125, 1613.0440673828125)),
        ((0.1471444070339203, -0.13377119600772858, 0.7670128345489502, -0.6100369691848755),
         (-1571.2215576171875, 5137.0185546875, 1498.1761474609375)),
        ((0.5927824378013611, -0.7825870513916016, 0.12147816270589828, -0.14631995558738708),
         (-1476.913330078125, -3896.7412109375, 1547.97216796875)),
    ),
    "S9": (
        ((0.15540587902069092, -0.15548215806484222, -0.7532095313072205, 0.6199594736099243),
         (2044.45849609375, 4935.1171875, 1481.2275390625)),
        ((0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801),
         (1990.959716796875, -5123.810546875, 1568.8048095703125)),
        ((0.13357827067375183, -0.1367100477218628, 0.7689454555511475, -0.6100738644599915),
         (-1670.9921875, 5211.98583984375, 1528.387939453125)),
        ((0.5879399180412292, -0.7823407053947449, 0.1427614390850067, -0.14794869720935822),
         (-1696.04345703125, -3827.099853515625, 1591.4127197265625)),
    ),
    "S11": (
        ((0.15232472121715546, -0.15442320704460144, -0.7547563314437866, 0.6191070079803467),
         (2098.440185546875, 4926.5546875, 1500.278564453125)),
        ((0.6189449429512024, -0.7600917220115662, -0.15300633013248444, 0.1255258321762085),
         (2083.182373046875, -4912.1728515625, 1561.07861328125)),
        ((0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407),
         (-1609.8153076171875, 5177.3359375, 1537.896728515625)),
        ((0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809),
         (-1590.738037109375, -3854.1689453125, 1578.017578125)),
    ),
}
H36M_SUBJECTS = tuple(H36M_EXTRINSICS)


@dataclass(frozen=True)
class Camera:
    """One calibrated camera.

    Attributes:
        id: camera identifier.
        res_w, res_h: image size in pixels.
        orientation: (4,) float32 quaternion (w, x, y, z), camera -> world.
        translation: (3,) float32 camera centre in world coordinates, metres.
        intrinsic: (9,) float32 normalised intrinsics [fx, fy, cx, cy, k1, k2, k3, p1, p2]
            (focal lengths and centre in normalised screen units).
        intrinsic_px: (9,) float64 the same in pixels [fx, fy, cx, cy, k1, k2, k3, p1, p2].
    """

    id: str
    res_w: int
    res_h: int
    orientation: np.ndarray
    translation: np.ndarray
    intrinsic: np.ndarray
    intrinsic_px: np.ndarray


def normalized_intrinsic(
    focal_px: tuple[float, float],
    center_px: tuple[float, float],
    radial: tuple[float, float, float],
    tangential: tuple[float, float],
    res_w: int,
    res_h: int,
) -> np.ndarray:
    """The reference's normalised 9-vector: f/w*2, centre normalised like keypoints, float32."""
    f = np.asarray(focal_px, dtype=np.float32) / np.float32(res_w) * np.float32(2.0)
    c = normalize_screen_coordinates(np.asarray(center_px, dtype=np.float32), res_w, res_h)
    return np.concatenate(
        [f, c.astype(np.float32), np.asarray(radial, np.float32),
         np.asarray(tangential, np.float32)]
    ).astype(np.float32)


def h36m_camera(subject: str, index: int) -> Camera:
    """The calibrated Human3.6M camera ``index`` (0..3) of ``subject`` (S1, S5..S9, S11)."""
    if subject not in H36M_EXTRINSICS:
        raise KeyError(f"no Human3.6M extrinsics for subject '{subject}' (known: {H36M_SUBJECTS})")
    if not 0 <= index < 4:
        raise IndexError(f"Human3.6M camera index must be 0..3, got {index}")
    w, h = H36M_RESOLUTIONS[index]
    orient, trans_mm = H36M_EXTRINSICS[subject][index]
    px = np.asarray(
        [*H36M_FOCAL[index], *H36M_CENTER[index], *H36M_RADIAL[index], *H36M_TANGENTIAL[index]],
        dtype=np.float64,
    )
    return Camera(
        id=H36M_CAMERA_IDS[index],
        res_w=w,
        res_h=h,
        orientation=np.asarray(orient, dtype=np.float32),
        translation=(np.asarray(trans_mm, dtype=np.float32) / np.float32(1000.0)),
        intrinsic=normalized_intrinsic(
            H36M_FOCAL[index], H36M_CENTER[index], H36M_RADIAL[index], H36M_TANGENTIAL[index], w, h
        ),
        intrinsic_px=px,
    )


def h36m_cameras(subject: str) -> list[Camera]:
    """The four cameras of a subject, in the order of the 2D files."""
    return [h36m_camera(subject, i) for i in range(4)]


# --- screen coordinates ---------------------------------------------------------------------------


def normalize_screen_coordinates(x: Array, w: int, h: int) -> Array:
    """Pixels -> normalised screen coordinates: ``x/w*2 - [1, h/w]``. (..., 2) -> (..., 2)."""
    if x.shape[-1] != 2:
        raise ValueError(f"expected (..., 2) pixel coordinates, got shape {tuple(x.shape)}")
    offset = [1.0, h / w]
    if isinstance(x, torch.Tensor):
        return x / w * 2 - x.new_tensor(offset)
    # As the reference: scale in x's dtype, subtract the float64 offset, round back (h/w = 1.002
    # is not exact in float32; subtracting in float32 moves ~30% of values by one ulp).
    scaled = x / w * 2
    return (scaled - np.asarray(offset)).astype(scaled.dtype, copy=False)


def image_coordinates(x: Array, w: int, h: int) -> Array:
    """Normalised screen coordinates -> pixels: ``(x + [1, h/w]) * w/2``. (..., 2) -> (..., 2)."""
    if x.shape[-1] != 2:
        raise ValueError(f"expected (..., 2) screen coordinates, got shape {tuple(x.shape)}")
    offset = [1.0, h / w]
    if isinstance(x, torch.Tensor):
        return (x + x.new_tensor(offset)) * w / 2
    return (x + np.asarray(offset, dtype=x.dtype)) * w / 2


# --- rotations ------------------------------------------------------------------------------------


def _cross(a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return torch.linalg.cross(a, b, dim=-1)
    return np.cross(a, b)


def qrot(q: Array, v: Array) -> Array:
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4) (w, x, y, z), broadcast."""
    if q.shape[-1] != 4 or v.shape[-1] != 3:
        raise ValueError(
            f"qrot expects (..., 4) and (..., 3), got {tuple(q.shape)}, {tuple(v.shape)}"
        )
    if isinstance(v, torch.Tensor):
        q = torch.as_tensor(q, dtype=v.dtype, device=v.device).expand(*v.shape[:-1], 4)
    else:
        q = np.broadcast_to(np.asarray(q, dtype=v.dtype), (*v.shape[:-1], 4))
    u = q[..., 1:]
    uv = _cross(u, v)
    uuv = _cross(u, uv)
    return v + 2 * (q[..., :1] * uv + uuv)


def qinverse(q: Array) -> Array:
    """Conjugate of unit quaternions (..., 4): (w, -x, -y, -z)."""
    sign = [1.0, -1.0, -1.0, -1.0]
    if isinstance(q, torch.Tensor):
        return q * q.new_tensor(sign)
    return q * np.asarray(sign, dtype=q.dtype)


def world_to_camera(x: Array, orientation: Any, translation: Any) -> Array:
    """World -> camera coordinates: ``qrot(conj(R), X - t)``. (..., 3) metres -> (..., 3) metres."""
    t = _like(translation, x)
    return qrot(qinverse(_like(orientation, x)), x - t)


def camera_to_world(x: Array, orientation: Any, translation: Any) -> Array:
    """Camera -> world coordinates: ``qrot(R, X) + t``. (..., 3) metres -> (..., 3) metres."""
    return qrot(_like(orientation, x), x) + _like(translation, x)


def _like(a: Any, ref: Any) -> Any:
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a,
                               dtype=ref.dtype, device=ref.device)
    return np.asarray(a, dtype=ref.dtype)


# --- projection -----------------------------------------------------------------------------------


def project_to_2d(x: Array, intrinsic: Any) -> Array:
    """Project camera-space points with the full distortion model (docs/model.md "Cameras and
    projection").

    Args:
        x: (..., 3) camera-space points (metres).
        intrinsic: (..., 9) [fx, fy, cx, cy, k1, k2, k3, p1, p2], broadcastable to x's leading
            dims (normalised units give normalised screen coordinates, pixel units give pixels).
    Returns:
        (..., 2) projected points in the units of ``intrinsic``.
    """
    if x.shape[-1] != 3:
        raise ValueError(f"expected (..., 3) camera-space points, got shape {tuple(x.shape)}")
    cam = _like(intrinsic, x)
    f, c, k, p = cam[..., 0:2], cam[..., 2:4], cam[..., 4:7], cam[..., 7:9]
    if isinstance(x, torch.Tensor):
        xx = torch.clamp(x[..., :2] / x[..., 2:], min=-1, max=1)
        r2 = (xx[..., :2] ** 2).sum(-1, keepdim=True)
        radial = 1 + (k * torch.cat((r2, r2**2, r2**3), dim=-1)).sum(-1, keepdim=True)
        tan = (p * xx).sum(-1, keepdim=True)
    else:
        xx = np.clip(x[..., :2] / x[..., 2:], -1, 1)
        r2 = (xx[..., :2] ** 2).sum(-1, keepdims=True)
        radial = 1 + (k * np.concatenate((r2, r2**2, r2**3), axis=-1)).sum(-1, keepdims=True)
        tan = (p * xx).sum(-1, keepdims=True)
    xxx = xx * (radial + tan) + p * r2
    return f * xxx + c


def project_to_2d_linear(x: Array, intrinsic: Any) -> Array:
    """Pinhole projection, no distortion: ``f * clamp(X_xy / X_z, -1, 1) + c``."""
    cam = _like(intrinsic, x)
    f, c = cam[..., 0:2], cam[..., 2:4]
    if isinstance(x, torch.Tensor):
        xx = torch.clamp(x[..., :2] / x[..., 2:], min=-1, max=1)
    else:
        xx = np.clip(x[..., :2] / x[..., 2:], -1, 1)
    return f * xx + c


# --- MPI-INF-3DHP test cameras (pinhole, pixels; test_util/camera_calibration/*.calib) --------


def mpi3dhp_test_intrinsic_px(sequence: str) -> tuple[np.ndarray, int, int]:
    """Pixel intrinsics [fx, fy, cx, cy, 0, 0, 0, 0, 0] (float32, as the reference computes them),
    width and height of an MPI-INF-3DHP test sequence TS1..TS6."""
    index = int(sequence.removeprefix("TS"))
    if index in (1, 2, 3, 4):
        f = np.float32(7.32506) * np.float32(2048) / np.float32(10)
        cx = np.float32(-0.0322884) * np.float32(204.8) + np.float32(1024)
        cy = np.float32(0.0929296) * np.float32(204.8) + np.float32(1024)
        w, h = 2048, 2048
    elif index in (5, 6):
        f = np.float32(8.770747185) * np.float32(192)
        cx = np.float32(-0.104908645) * np.float32(192) + np.float32(960)
        cy = np.float32(0.104899704) * np.float32(192) + np.float32(540)
        w, h = 1920, 1080
    else:
        raise KeyError(f"unknown MPI-INF-3DHP test sequence '{sequence}' (expected TS1..TS6)")
    cam = np.zeros(9, dtype=np.float32)
    cam[:4] = (f, f, cx, cy)
    return cam, w, h
