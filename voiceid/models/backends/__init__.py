"""Embedding backends other than the fp32 PyTorch reference (`voiceid.models.embedder.Embedder`):
bf16 on oneDNN and ONNX Runtime. `voiceid.models.registry` is the one place that picks and builds them."""
