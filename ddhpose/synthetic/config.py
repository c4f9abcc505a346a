"""What the synthetic generator makes (:class:`SyntheticConfig`) and its seeded random streams."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ddhpose.camera import H36M_SUBJECTS
from ddhpose.errors import ConfigError

# The 15 Human3.6M actions, in the order of the real files (each has a recipe in
# :mod:`ddhpose.synthetic.actions`).
H36M_ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)
MPI3DHP_TEST_SEQUENCES = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
MPI3DHP_TRAIN_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: params.yaml's ``data.synthetic`` keys under the same names, plus the
    subjects and actions of ``data.*`` (:meth:`from_params` is the adapter; no defaults, the demo's
    values live in params.yaml). Pixel values are standard deviations in pixels.

    ``actions`` holds action names or name prefixes (``None`` = all 15); ``outlier_rate`` is the
    approximate fraction of detected (frame, joint) entries hit by an outlier (limb swaps and
    jumps of ~``outlier_px``). The ``mpi3dhp_*`` fields shape the MPI-INF-3DHP files (fixed by
    the generator, not params).
    """

    seed: int
    frames: int
    subactions: int
    jitter_px: float
    bias_px: float
    outlier_rate: float
    outlier_px: float
    subjects: tuple[str, ...]
    actions: tuple[str, ...] | None
    mpi3dhp_subjects: int = 8
    mpi3dhp_sequences: int = 2
    mpi3dhp_cameras: tuple[int, ...] = MPI3DHP_TRAIN_CAMERAS
    mpi3dhp_test_sequences: tuple[str, ...] = field(default=MPI3DHP_TEST_SEQUENCES)

    @classmethod
    def from_params(cls, data: Any) -> SyntheticConfig:
        """From params.yaml's ``data`` section: ``data.synthetic.*``, the train and test subjects
        (Human3.6M; the synthetic 3DHP files have fixed subjects) and ``data.actions``
        (``'*'`` = all)."""
        actions = None if data.actions == "*" else tuple(data.actions)
        subjects: tuple[str, ...] = ()
        if data.dataset == "h36m":
            for key in ("subjects_train", "subjects_test"):  # the error names the key
                _check_subjects(f"data.{key}", tuple(getattr(data, key)))
            subjects = tuple(data.subjects_train) + tuple(data.subjects_test)
        return cls(subjects=subjects, actions=actions, **dataclasses.asdict(data.synthetic))

    def __post_init__(self) -> None:
        key = "data.synthetic"
        if self.seed < 0:
            raise ConfigError(f"{key}.seed", f"must be >= 0, got {self.seed}")
        if self.frames < 2:
            raise ConfigError(f"{key}.frames", f"must be >= 2, got {self.frames}")
        if self.subactions < 1:
            raise ConfigError(f"{key}.subactions", f"must be >= 1, got {self.subactions}")
        for name in ("jitter_px", "bias_px", "outlier_px"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{key}.{name}", f"must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.outlier_rate <= 1:
            raise ConfigError(f"{key}.outlier_rate", f"must be in [0, 1], got {self.outlier_rate}")
        _check_subjects("synthetic.subjects", self.subjects)
        bad = [s for s in self.mpi3dhp_test_sequences if s not in MPI3DHP_TEST_SEQUENCES]
        if bad:
            raise ConfigError("synthetic.mpi3dhp_test_sequences", f"unknown sequences {bad}")
        self.selected_actions()  # fail early on unknown names

    def selected_actions(self) -> tuple[str, ...]:
        """The H36M actions picked by ``actions`` (names or prefixes), in canonical order."""
        if self.actions is None:
            return H36M_ACTIONS
        for name in self.actions:
            if not any(a.startswith(name) for a in H36M_ACTIONS):
                raise ConfigError("data.actions", f"'{name}' matches no action "
                                                  f"(known: {list(H36M_ACTIONS)})")
        return tuple(a for a in H36M_ACTIONS if any(a.startswith(n) for n in self.actions))


def _check_subjects(key: str, subjects: tuple[str, ...]) -> None:
    """ConfigError naming ``key`` when ``subjects`` holds a name that is no Human3.6M subject."""
    unknown = [s for s in subjects if s not in H36M_SUBJECTS]
    if unknown:
        raise ConfigError(key, f"unknown subjects {unknown} (known: {list(H36M_SUBJECTS)})")


def stream(seed: int, *parts: str | int) -> np.random.Generator:
    """An independent random stream for ``seed`` and a name (strings hashed with CRC-32)."""
    words = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return np.random.default_rng([seed, *words])
