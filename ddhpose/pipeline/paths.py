"""Where each stage reads and writes, relative to the project root (the DVC outs of dvc.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def processed(self) -> Path:
        return self.root / "data" / "processed"

    def split(self, name: str) -> Path:
        return self.processed / f"{name}.npz"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def best(self) -> Path:
        return self.models / "best.pt"

    @property
    def init_dir(self) -> Path:
        """``models/init``: the resolved ``model.init`` (the init_model stage's output)."""
        return self.models / "init"

    @property
    def init_checkpoint(self) -> Path:
        return self.init_dir / "init.pt"

    @property
    def init_source(self) -> Path:
        return self.init_dir / "source.json"

    @property
    def train_log(self) -> Path:
        return self.models / "train_log.csv"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def predictions(self) -> Path:
        return self.reports / "predictions"

    @property
    def eval_dir(self) -> Path:
        return self.reports / "eval"

    @property
    def plots(self) -> Path:
        return self.reports / "plots"

    @property
    def export(self) -> Path:
        return self.reports / "export"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"
