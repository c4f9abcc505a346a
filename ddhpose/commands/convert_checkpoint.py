"""``ddhpose convert-checkpoint REF.bin OUT.pt [--dataset h36m|3dhp]``: an authors' checkpoint
(or bare reference state_dict) -> our checkpoint format. REF is never written; an existing OUT
is replaced only with ``--force``."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="REF", help="authors' checkpoint (.bin) or state_dict file")
    parser.add_argument("out", metavar="OUT", help="output checkpoint in ddhpose format (.pt)")
    parser.add_argument("--dataset", choices=("h36m", "3dhp"), default="h36m",
                        help="dataset the model was trained for (tables and units; default h36m)")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing OUT (never REF itself)")


def run(args: argparse.Namespace) -> int:
    from ddhpose.io import check_outputs
    from ddhpose.model.checkpoint import convert_reference_checkpoint, load_checkpoint

    check_outputs([args.out], inputs=[args.ref], force=args.force)
    out = convert_reference_checkpoint(args.ref, args.out, dataset=args.dataset)
    cfg = load_checkpoint(out)["model_config"]
    print(
        f"wrote {out}: dataset={cfg['dataset']} width={cfg['width']} depth={cfg['depth']} "
        f"frames={cfg['frames']} mlp_ratio={cfg['mlp_ratio']}"
    )
    return 0
