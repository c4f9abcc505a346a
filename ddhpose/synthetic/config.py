"""What the synthetic generator makes (:class:`SyntheticConfig`) and its seeded random streams."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from ddhpose.camera import H36M_SUBJECTS
from ddhpose.errors import ConfigError
from ddhpose.synthetic.actions import H36M_ACTIONS

MPI3DHP_TEST_SEQUENCES = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
MPI3DHP_TRAIN_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)

@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. Pixel values are standard deviations in pixels.

    ``actions`` holds action names or name prefixes (``None`` = all 15); ``outlier_rate`` is the
    approximate fraction of detected (frame, joint) entries hit by an outlier (limb swaps and
    jumps of ~``outlier_px``). The ``mpi3dhp_*`` fields shape the MPI-INF-3DHP files.
    """

    seed: int = 0
    frames_per_sequence: int = 300
    subjects: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
    actions: tuple[str, ...] | None = H36M_ACTIONS
    subactions: int = 1
    jitter_px: float = 3.0
    bias_px: float = 2.0
    outlier_rate: float = 0.01
    outlier_px: float = 40.0
    mpi3dhp_subjects: int = 8
    mpi3dhp_sequences: int = 2
    mpi3dhp_cameras: tuple[int, ...] = MPI3DHP_TRAIN_CAMERAS
    mpi3dhp_test_sequences: tuple[str, ...] = field(default=MPI3DHP_TEST_SEQUENCES)

    def __post_init__(self) -> None:
        if self.frames_per_sequence < 2:
            raise ConfigError("synthetic.frames_per_sequence", "must be >= 2")
        if self.subactions < 1:
            raise ConfigError("synthetic.subactions", "must be >= 1")
        unknown = [s for s in self.subjects if s not in H36M_SUBJECTS]
        if unknown:
            raise ConfigError("synthetic.subjects", f"unknown subjects {unknown} "
                                                    f"(known: {list(H36M_SUBJECTS)})")
        for name in ("jitter_px", "bias_px", "outlier_px"):
            if getattr(self, name) < 0:
                raise ConfigError(f"synthetic.{name}", "must be >= 0")
        if not 0 <= self.outlier_rate <= 1:
            raise ConfigError("synthetic.outlier_rate", "must be in [0, 1]")
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
                raise ConfigError("synthetic.actions", f"'{name}' matches no action "
                                                       f"(known: {list(H36M_ACTIONS)})")
        return tuple(a for a in H36M_ACTIONS if any(a.startswith(n) for n in self.actions))


def stream(seed: int, *parts: str | int) -> np.random.Generator:
    """An independent random stream for ``seed`` and a name (strings hashed with CRC-32)."""
    words = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return np.random.default_rng([seed, *words])
