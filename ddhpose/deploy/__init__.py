"""Deployment: the denoiser step as an ONNX graph (:mod:`.onnx_export`) and that graph run on
onnxruntime inside the same DDIM sampler as the PyTorch model (:mod:`.onnx_runtime`).
Needs the ``onnx`` extra (``pip install -e '.[onnx]'``; the commands that need it install it)."""
