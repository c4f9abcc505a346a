"""The hierarchical spatial-temporal denoiser (the reference's ``MixSTE2``).

See docs/model.md "The denoiser".

Input: 2D keypoints and noisy bone slots; output: the clean 3D pose x̂0 in metres. One plain
spatial/temporal layer, then ``depth - 1`` hierarchical layers: HRST (spatial attention whose
scores are edited along the kinematic chains) and HRTT (temporal attention with extra keys from
a child-mean feature). All dataset tables (levels, chains, children) come from the
:class:`~ddhpose.skeleton.Skeleton`, so the MPI-INF-3DHP variant is the same classes.

Child-feature layout (``xc_layout``), see docs/model.md "Quirks: HRTT child reshape":

* ``"reference"`` (default, checkpoint compatible): the child-mean feature (B', F, J, C) is
  *flat-reshaped* into temporal rows (B'·J, F, C), exactly like the authors' code. Row
  r = b·J + j, key s then holds frame ⌊(j·F + s)/J⌋, joint (j·F + s) mod J of clip b — frames and
  joints are scrambled. Needed to match reference weights.
* ``"transpose"``: the intended layout — row b·J + j, key s holds frame s of joint j.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from ddhpose.errors import ConfigError
from ddhpose.model.config import XC_LAYOUTS
from ddhpose.model.fused import add_linear, linear, linear_gelu, use_fused
from ddhpose.model.layers import Attention, Block, init_weights
from ddhpose.model.linear_grad import linear_train
from ddhpose.skeleton import Skeleton


class SinusoidalEmbedding(nn.Module):
    """t (B,) -> [sin(t·f_i), cos(t·f_i)] (B, C), f_i = exp(-i·ln(10000)/(C/2 - 1))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        # empty, not saved: follows ``module.to(dtype)`` so the output matches the MLP's dtype
        self.register_buffer("dtype_probe", torch.empty(0), persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """Computed in float32 from the integer t (bfloat16 cannot hold t = 999), then cast to
        the module's dtype."""
        half = self.dim // 2
        step = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=t.device) * -step)
        args = t[:, None] * freqs[None, :]
        return torch.cat((args.sin(), args.cos()), dim=-1).to(self.dtype_probe.dtype)


class HierarchicalAttention(Attention):
    """Attention of a hierarchical block; ``spatial`` selects HRST or HRTT behaviour.

    * spatial (HRST): pre-softmax scores (N, heads, J, J) are averaged along the kinematic
      chains, in place and in order; ``qkv_xc`` is unused (kept for the reference layout).
      See docs/model.md "HRST: chain-edited spatial attention".
    * temporal (HRTT): keys get the extra term k_xc = qkv_xc(norm1(xc)) (docs/model.md
      "HRTT: child-feature temporal attention"); since
      q·kᵀ + q·k_xcᵀ = q·(k + k_xc)ᵀ the fused kernel is used on k + k_xc.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        fused: bool,
        spatial: bool,
        chain_triples: tuple[tuple[int, int, int], ...],
        joints: int | None = None,
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias, fused, with_xc=True)
        self.spatial = spatial
        self.chain_triples = chain_triples
        #: ``False``: apply the edit as the sequential python loop (:meth:`edit_scores_loop`),
        #: the reference's structure; kept for the ablation and the equality tests.
        self.precomposed_edit = True
        joints = joints if joints is not None else 1 + max(
            (i for triple in chain_triples for i in triple), default=-1)
        self.edit_joints = joints
        if spatial and chain_triples:
            changed, source, weight = chain_edit_operator(chain_triples, joints)
            # not saved: derived from the skeleton; follow ``.to(device/dtype)`` of the module
            self.register_buffer("edit_changed", torch.tensor(changed), persistent=False)
            self.register_buffer("edit_source", torch.tensor(source), persistent=False)
            self.register_buffer("edit_weight", torch.tensor(weight), persistent=False)

    def edit_scores_loop(self, scores: Tensor) -> Tensor:
        """Sequential in-place chain edit of (N, heads, J, J) scores (later steps read updates):
        about 4·|triples| small kernels forward and more backward."""
        for pp, p, c in self.chain_triples:
            base = scores[:, :, pp, p]
            scores[:, :, p, c] = (scores[:, :, p, c] + base) / 2
            base = scores[:, :, pp, p]
            scores[:, :, c, p] = (scores[:, :, c, p] + base) / 2
        return scores

    def edit_scores(self, scores: Tensor) -> Tensor:
        """The chain edit of (N, heads, J, J) scores as one precomposed linear map: the E edited
        entries are a fixed weighted sum of S source entries (:func:`chain_edit_operator`), so
        ``edited[..., changed] = scores[..., source] @ weight`` (one gather, one (S, E) matmul,
        one scatter into a copy). Equal to :meth:`edit_scores_loop` up to float round-off;
        returns a new tensor (the input is not modified)."""
        n, h, j, _ = scores.shape
        if not self.precomposed_edit or j != self.edit_joints or not self.chain_triples:
            return self.edit_scores_loop(scores)
        flat = scores.reshape(n, h, j * j)
        upd = flat.index_select(-1, self.edit_source) @ self.edit_weight.to(flat.dtype)
        return flat.index_copy(-1, self.edit_changed, upd.to(flat.dtype)).view(n, h, j, j)

    def forward(  # type: ignore[override]
        self, x: Tensor, xc: Tensor | None = None, project: bool = True
    ) -> Tensor:
        """x (N, T, C) normalised tokens; xc (N, T, C) normalised child tokens (temporal only)."""
        q, k, v = self.split_qkv(x)
        if self.spatial:
            return self.attend(q, k, v, edit=True, project=project)
        if xc is None:
            raise ValueError("temporal hierarchical attention needs the child-mean feature xc")
        n, t, _ = xc.shape
        kc = linear(xc, self.qkv_xc) if use_fused(xc) else linear_train(xc, self.qkv_xc)
        kc = kc.reshape(n, t, self.num_heads, self.head_dim).transpose(1, 2)
        return self.attend(q, k + kc, v, project=project)


class HierarchicalBlock(Block):
    """Block_xxc: a :class:`Block` whose attention is HRST (spatial) or HRTT (temporal)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path: float,
        spatial: bool,
        fused: bool,
        chain_triples: tuple[tuple[int, int, int], ...],
        joints: int | None = None,
    ) -> None:
        self._triples = chain_triples
        self._joints = joints
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias, drop_path, spatial, fused)

    def make_attention(self, dim: int, num_heads: int, qkv_bias: bool, fused: bool) -> nn.Module:
        return HierarchicalAttention(dim, num_heads, qkv_bias, fused, self.spatial, self._triples,
                                     self._joints)

    def forward(self, x: Tensor, xc: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """x (N, T, C); xc (N, T, C) raw child tokens for temporal blocks (same norm1 applied)."""
        xcn = None if xc is None or self.spatial else self.norm1(xc)
        if use_fused(x):
            x = add_linear(x, self.attn(self.norm1(x), xcn, project=False), self.attn.proj)
            return add_linear(x, linear_gelu(self.norm2(x), self.mlp.fc1), self.mlp.fc2)
        x = x + self.drop_path(self.attn(self.norm1(x), xcn))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def chain_triples(skel: Skeleton) -> tuple[tuple[int, int, int], ...]:
    """(grandparent, parent, child) index triples of the HRST edit, in application order."""
    return tuple(
        (chain[i - 1], chain[i], chain[i + 1])
        for chain in skel.chains
        for i in range(1, len(chain) - 1)
    )


def chain_edit_operator(
    triples: tuple[tuple[int, int, int], ...], joints: int
) -> tuple[list[int], list[int], list[list[float]]]:
    """The sequential HRST edit of a (J, J) score matrix, composed into one linear map.

    Every step sets an entry to the mean of itself and another entry, so after all steps each
    entry is a fixed weighted sum of the original entries. Tracked exactly in float64 over the
    flattened index e = row·J + col. Returns ``(changed, source, weight)``: the E flat indices
    the edit changes, the S flat indices they read, and the (S, E) weights (dyadic fractions,
    exact in float32 and bfloat16), so that ``edited[changed] = scores[source] @ weight`` and all
    other entries stay as they are.
    """
    n = joints * joints
    coef = torch.eye(n, dtype=torch.float64, device="cpu")  # row e: entry e in original entries
    for pp, p, c in triples:
        coef[p * joints + c] = (coef[p * joints + c] + coef[pp * joints + p]) / 2
        coef[c * joints + p] = (coef[c * joints + p] + coef[pp * joints + p]) / 2
    eye = torch.eye(n, dtype=torch.float64, device="cpu")
    changed = [e for e in range(n) if not torch.equal(coef[e], eye[e])]
    used = coef[changed].abs().sum(0) > 0 if changed else torch.zeros(n, dtype=torch.bool)
    source = [e for e in range(n) if bool(used[e])]
    weight = coef[changed][:, source].t().tolist() if changed else []
    return changed, source, weight


class HSTDenoiser(nn.Module):
    """MixSTE2: (x2d, noisy bone slots, t) -> x̂0. Parameter names equal the reference's.

    Args:
        skeleton: joint layout providing levels, chains and children tables.
        num_frames: F, baked into ``Temporal_pos_embed``.
        width / depth / num_heads / mlp_ratio / qkv_bias: C, L, heads, MLP ratio, qkv bias.
        drop_path: maximum stochastic-depth rate; block i uses linspace(0, rate, depth)[i].
        xc_layout: ``"reference"`` or ``"transpose"`` (module docstring).
        fused_attention: use ``scaled_dot_product_attention`` where the scores are not edited.
    """

    def __init__(
        self,
        skeleton: Skeleton,
        num_frames: int = 243,
        width: int = 512,
        depth: int = 8,
        num_heads: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        xc_layout: str = "reference",
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        if xc_layout not in XC_LAYOUTS:
            raise ConfigError("model.xc_layout", f"must be one of {XC_LAYOUTS}, got {xc_layout!r}")
        if depth < 1:
            raise ConfigError("model.depth", f"must be >= 1, got {depth}")
        self.skeleton = skeleton
        self.num_frames = num_frames
        self.width = width
        self.xc_layout = xc_layout
        joints = skeleton.num_joints
        # Bare parameters first: the reference's parameter (and optimizer-state) order.
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, joints, width))
        self.Temporal_pos_embed = nn.Parameter(torch.zeros(1, num_frames, width))
        self.group = nn.Parameter(torch.zeros(1, len(skeleton.levels), width))
        self.Spatial_patch_to_embedding = nn.Linear(6, width)
        self.time_mlp = nn.Sequential(
            SinusoidalEmbedding(width),
            nn.Linear(width, width * 2),
            nn.GELU(),
            nn.Linear(width * 2, width),
        )
        dpr = [float(r) for r in torch.linspace(0, drop_path, depth, device="cpu").tolist()]
        triples = chain_triples(skeleton)
        common = {"num_heads": num_heads, "mlp_ratio": mlp_ratio, "qkv_bias": qkv_bias,
                  "fused": fused_attention}
        self.STEblocks_0 = nn.ModuleList([Block(width, drop_path=dpr[0], spatial=True, **common)])
        self.STEblocks = nn.ModuleList(
            HierarchicalBlock(width, drop_path=dpr[i], spatial=True, chain_triples=triples,
                              joints=joints, **common)
            for i in range(1, depth)
        )
        self.TTEblocks_0 = nn.ModuleList([Block(width, drop_path=dpr[0], spatial=False, **common)])
        self.TTEblocks = nn.ModuleList(
            HierarchicalBlock(width, drop_path=dpr[i], spatial=False, chain_triples=triples,
                              joints=joints, **common)
            for i in range(1, depth)
        )
        self.Spatial_norm = nn.LayerNorm(width, eps=1e-6)
        self.Temporal_norm = nn.LayerNorm(width, eps=1e-6)
        self.head_pose = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 3))

        level_of = torch.empty(joints, dtype=torch.long)
        for lev, members in enumerate(skeleton.levels):
            level_of[list(members)] = lev
        self.register_buffer("level_index", level_of, persistent=False)
        mean = torch.zeros(joints, joints)
        for j, group in enumerate(skeleton.child_mean_groups):
            mean[j, list(group)] = 1.0 / len(group)
        self.register_buffer("child_mean", mean, persistent=False)
        self.apply(init_weights)

    # --- layout helpers -------------------------------------------------------------------------

    @staticmethod
    def _to_temporal(x: Tensor, clips: int, frames: int) -> Tensor:
        """(B'·F, J, C) -> (B'·J, F, C)."""
        return rearrange(x, "(b f) j c -> (b j) f c", b=clips, f=frames)

    @staticmethod
    def _to_spatial(x: Tensor, clips: int, joints: int) -> Tensor:
        """(B'·J, F, C) -> (B'·F, J, C)."""
        return rearrange(x, "(b j) f c -> (b f) j c", b=clips, j=joints)

    def child_features(self, x: Tensor, clips: int) -> Tensor:
        """Child-mean tokens from the plain temporal output (B'·J, F, C) -> (B'·J, F, C) rows.

        xc[b, f, j] = mean over (children(j), j) of x[b, f, ·]; then arranged as temporal rows in
        the configured layout (flat reshape of (B', F, J, C) for "reference").
        """
        _, f, c = x.shape
        joints = self.skeleton.num_joints
        xs = x.view(clips, joints, f, c)
        w = self.child_mean.to(x.dtype)
        if self.xc_layout == "reference":
            xc = torch.einsum("jk,bkfc->bfjc", w, xs).contiguous()  # (B', F, J, C)
            return xc.reshape(clips * joints, f, c)
        xc = torch.einsum("jk,bkfc->bjfc", w, xs).contiguous()  # (B', J, F, C)
        return xc.reshape(clips * joints, f, c)

    def blocks_in_call_order(self) -> list[Block]:
        """The blocks in the order :meth:`forward` runs them (spatial, temporal, alternating)."""
        order: list[Block] = [self.STEblocks_0[0], self.TTEblocks_0[0]]
        for s_blk, t_blk in zip(self.STEblocks, self.TTEblocks, strict=True):
            order += [s_blk, t_blk]
        return order

    def drop_path_plan(self) -> list[tuple[int, float]]:
        """The drop-path masks one training forward draws, in call order: (rows per clip, keep
        probability) per call; rows per clip = F in spatial blocks (tokens (B'·F, J, C)) and J in
        temporal blocks ((B'·J, F, C)). Each block with a non-zero rate draws twice (attention,
        then MLP branch); blocks with rate 0 draw nothing."""
        plan: list[tuple[int, float]] = []
        for blk in self.blocks_in_call_order():
            if blk.drop_path.drop_prob > 0.0:
                rows = self.num_frames if blk.spatial else self.skeleton.num_joints
                plan += [(rows, 1.0 - blk.drop_path.drop_prob)] * 2
        return plan

    # --- forward --------------------------------------------------------------------------------

    def embed(self, x2d: Tensor, bone_dir: Tensor, bone_len: Tensor, t: Tensor) -> Tensor:
        """Token embedding (docs/model.md "Token embedding"): (B,F,J,2), (B,H,F,J,3), (B,H,F,J,1),
        (B,) -> (B·H·F, J, C)."""
        b, h, f, j, _ = bone_dir.shape
        x2d_h = x2d.unsqueeze(1).expand(b, h, f, j, x2d.shape[-1])
        tokens = torch.cat((x2d_h, bone_dir, bone_len), dim=-1).reshape(b * h * f, j, 6)
        x = self.Spatial_patch_to_embedding(tokens)
        x = x + self.group[0, self.level_index]
        x = x + self.Spatial_pos_embed
        temb = self.time_mlp(t)  # (B, C)
        x = x.view(b, h * f, j, -1) + temb[:, None, None, :]
        return x.view(b * h * f, j, -1)

    def forward(self, x2d: Tensor, bone_dir: Tensor, bone_len: Tensor, t: Tensor) -> Tensor:
        """Predict x̂0 (metres).

        Eval layout: x2d (B,F,J,2), bone_dir (B,H,F,J,3), bone_len (B,H,F,J,1), t (B,)
        -> (B,H,F,J,3). Training layout: bone_dir (B,F,J,3), bone_len (B,F,J,1) -> (B,F,J,3)
        (same code path with H = 1).
        """
        squeeze = bone_dir.dim() == 4
        if squeeze:
            bone_dir, bone_len = bone_dir.unsqueeze(1), bone_len.unsqueeze(1)
        self._check_shapes(x2d, bone_dir, bone_len, t)
        b, h, f, j, _ = bone_dir.shape
        clips = b * h
        x = self.embed(x2d, bone_dir, bone_len, t)  # (B'·F, J, C)

        x = self.Spatial_norm(self.STEblocks_0[0](x))
        x = self._to_temporal(x, clips, f) + self.Temporal_pos_embed
        x = self.Temporal_norm(self.TTEblocks_0[0](x))  # (B'·J, F, C)
        xc = self.child_features(x, clips) if len(self.TTEblocks) else None
        for s_blk, t_blk in zip(self.STEblocks, self.TTEblocks, strict=True):
            x = self.Spatial_norm(s_blk(self._to_spatial(x, clips, j)))
            x = self.Temporal_norm(t_blk(self._to_temporal(x, clips, f), xc))
        x = x.view(clips, j, f, -1).transpose(1, 2)  # (B', F, J, C)
        out = self.head_pose(x).view(b, h, f, j, 3)
        return out.squeeze(1) if squeeze else out

    def _check_shapes(self, x2d: Tensor, bone_dir: Tensor, bone_len: Tensor, t: Tensor) -> None:
        b, h, f, j, _ = bone_dir.shape
        joints = self.skeleton.num_joints
        if j != joints or bone_dir.shape[-1] != 3:
            raise ValueError(f"bone_dir must be (B,H,F,{joints},3), got {tuple(bone_dir.shape)}")
        if tuple(bone_len.shape) != (b, h, f, j, 1):
            raise ValueError(f"bone_len must be {(b, h, f, j, 1)}, got {tuple(bone_len.shape)}")
        if tuple(x2d.shape) != (b, f, j, 2):
            raise ValueError(f"x2d must be {(b, f, j, 2)}, got {tuple(x2d.shape)}")
        if tuple(t.shape) != (b,):
            raise ValueError(f"t must be ({b},), got {tuple(t.shape)}")
        if f != self.num_frames:
            raise ValueError(f"the model is built for {self.num_frames} frames, got {f}")


__all__ = ["XC_LAYOUTS", "HSTDenoiser", "HierarchicalAttention", "HierarchicalBlock",
           "SinusoidalEmbedding", "chain_edit_operator", "chain_triples"]
