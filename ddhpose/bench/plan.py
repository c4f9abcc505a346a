"""What the benchmark (:mod:`ddhpose.bench.suite`) measures: model sizes, sampling cases and the
full / quick plans."""

from __future__ import annotations

from dataclasses import dataclass, field

from ddhpose.model.config import ModelConfig


def bench_model(width: int, depth: int, frames: int, drop_path: float = 0.0) -> ModelConfig:
    """A Human3.6M model of the authors' architecture (8 heads, MLP ratio 2, T = 1000) at the
    given size: what the benchmark cases and the authors' timings use."""
    return ModelConfig(dataset="h36m", width=width, depth=depth, heads=8, mlp_ratio=2.0,
                       frames=frames, timesteps=1000, scale=1.0, drop_path=drop_path,
                       xc_layout="reference")


@dataclass(frozen=True)
class ModelSpec:
    """A model size: name, width C, depth L, frames F."""

    name: str
    width: int
    depth: int
    frames: int

    def config(self) -> ModelConfig:
        return bench_model(self.width, self.depth, self.frames)


PAPER_27 = ModelSpec("paper_f27", 512, 8, 27)
PAPER_243 = ModelSpec("paper_f243", 512, 8, 243)
DEMO_27 = ModelSpec("demo_f27", 64, 3, 27)


@dataclass(frozen=True)
class SampleCase:
    """One sampling measurement. ``from_hk`` = (H', K'): time that case and scale by H·K/(H'·K')."""

    model: str
    batch: int
    hypotheses: int
    steps: int
    from_hk: tuple[int, int] | None = None


@dataclass
class BenchPlan:
    """What to measure. Build with :func:`quick_plan`, :func:`full_plan` or by hand (tests)."""

    models: list[ModelSpec]
    sampling: list[SampleCase]
    denoiser_clips: dict[str, int]
    training: list[str]  # model names; batch 4 × F
    dtypes: list[str] = field(default_factory=lambda: ["float32", "bfloat16"])
    peak_size: int = 2048
    loader_frames: int = 200_000
    budget_s: float = 20.0  # repeat a timing while the total stays under this (max 3 repeats)
    train_repeats: int = 3  # interleaved rounds of training steps (one step per variant each)
    accuracy: bool = True
    # bf16 MPJPE change on a trained model's test set (skipped when the files are missing)
    demo_checkpoint: str | None = None
    demo_test_split: str = "data/processed/test.npz"
    mode: str = "custom"


def _grid(model: str, big: bool) -> list[SampleCase]:
    heavy = SampleCase(model, 1, 20, 10, (5, 1) if big else (20, 1))
    return [SampleCase(model, 1, 1, 1), SampleCase(model, 1, 5, 1), heavy]


def full_plan() -> BenchPlan:
    """Grid (H,K) = (1,1), (5,1), (20,10) for the three models plus the reference cases."""
    sampling = [SampleCase("demo_f27", 1, 1, 1), SampleCase("demo_f27", 1, 5, 1),
                SampleCase("demo_f27", 1, 20, 10)]
    sampling += [*_grid("paper_f27", False), SampleCase("paper_f27", 1, 20, 1),
                 SampleCase("paper_f27", 2, 8, 1)]
    sampling += [*_grid("paper_f243", True), SampleCase("paper_f243", 2, 1, 1),
                 SampleCase("paper_f243", 4, 1, 1)]
    return BenchPlan([DEMO_27, PAPER_27, PAPER_243], sampling,
                     {"demo_f27": 8, "paper_f27": 8, "paper_f243": 2},
                     ["demo_f27", "paper_f27", "paper_f243"], demo_checkpoint="models/best.pt",
                     mode="full")


def quick_plan() -> BenchPlan:
    """About two minutes on 2 idle cores: demo grid, small paper cases, one F=243 clip."""
    sampling = [SampleCase("demo_f27", 1, 1, 1), SampleCase("demo_f27", 1, 5, 1),
                SampleCase("demo_f27", 1, 20, 10, (20, 1)),
                SampleCase("paper_f27", 1, 1, 1), SampleCase("paper_f27", 1, 5, 1),
                SampleCase("paper_f27", 1, 20, 10, (5, 1)),
                SampleCase("paper_f243", 1, 1, 1)]
    return BenchPlan([DEMO_27, PAPER_27, PAPER_243], sampling,
                     {"demo_f27": 8, "paper_f27": 4, "paper_f243": 1}, ["demo_f27", "paper_f27"],
                     loader_frames=50_000, budget_s=8.0, train_repeats=2, mode="quick")


__all__ = [
    "DEMO_27",
    "PAPER_27",
    "PAPER_243",
    "BenchPlan",
    "ModelSpec",
    "SampleCase",
    "full_plan",
    "quick_plan",
]
