"""The embedding network on ONNX Runtime: same front end, same batching, another kernel library.

The features stay in torch (Fbank + mean normalisation, about 1 % of the time); only the ECAPA
network runs in ORT, from the file `voiceid models export` wrote and recorded. The vectors carry
the export's recorded `model_version`: the checkpoint's own for the fp32 file when it proved
numerically equivalent, a derived one for int8 (see onnx_export.py).
"""

from __future__ import annotations

import torch

from voiceid.models.embedder import Embedder
from voiceid.models.files import VerifiedModel
from voiceid.models.onnx_export import OnnxPrecision, load_exported, session_options


class OnnxEmbedder(Embedder):
    """An `Embedder` whose network forward pass is an ONNX Runtime session (thread-safe `run`)."""

    def __init__(self, model: VerifiedModel, precision: OnnxPrecision, threads: int = 0) -> None:
        import onnxruntime as ort

        super().__init__(model, threads=threads)
        exported = load_exported(model, precision)
        # The torch copy of the network is not used here; free its ~80 MB of weights.
        del self._modules["embedding_model"]
        self.precision = precision
        self.model_version = exported.model_version
        self.onnx_sha256 = exported.sha256
        self._session = ort.InferenceSession(
            str(exported.path), session_options(threads), providers=["CPUExecutionProvider"]
        )

    def _network(self, feats: torch.Tensor, rel_lens: torch.Tensor) -> torch.Tensor:
        out = self._session.run(None, {"feats": feats.numpy(), "lengths": rel_lens.numpy()})[0]
        return torch.from_numpy(out)
