"""AASIST (Jung et al., ICASSP 2022): raw waveform -> sinc filterbank -> residual encoder ->
spectral and temporal graph attention -> heterogeneous graph attention -> two logits.

Written here from the paper and the `model_config` of upstream's AASIST.conf, so that the published
weights (clovaai/aasist `AASIST.pth`) load into it. Module attribute names follow the checkpoint's
keys, which is the only thing the weights fix; everything else is this project's own.

Two behaviours of the published network are reproduced on purpose because the weights were trained
with them: the residual blocks after the first compute their batch-norm/SELU pre-activation but
feed the block input (not that activation) to the first convolution, and the two off-diagonal
blocks of the heterogeneous attention map share one weight vector.

Inference only: dropout is a no-op in eval mode and the training-time frequency mask is left out.
The heterogeneous attention map is assembled with `torch.cat` rather than slice assignment, so the
network exports to ONNX as one static graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class AasistConfig:
    """The `model_config` block of an AASIST .conf file."""

    nb_samp: int = 64600
    first_conv: int = 128
    sinc_channels: int = 70
    filts: tuple[tuple[int, int], ...] = ((1, 32), (32, 32), (32, 64), (64, 64))
    gat_dims: tuple[int, int] = (64, 32)
    pool_ratios: tuple[float, float, float, float] = (0.5, 0.7, 0.5, 0.5)
    temperatures: tuple[float, float, float, float] = (2.0, 2.0, 100.0, 100.0)

    @classmethod
    def from_dict(cls, block: dict[str, Any]) -> AasistConfig:
        filts = block["filts"]
        return cls(
            nb_samp=int(block["nb_samp"]),
            first_conv=int(block["first_conv"]),
            sinc_channels=int(filts[0]),
            filts=tuple((int(a), int(b)) for a, b in filts[1:]),
            gat_dims=(int(block["gat_dims"][0]), int(block["gat_dims"][1])),
            pool_ratios=tuple(float(r) for r in block["pool_ratios"]),  # type: ignore[arg-type]
            temperatures=tuple(float(t) for t in block["temperatures"]),  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "architecture": "AASIST",
            "nb_samp": self.nb_samp,
            "first_conv": self.first_conv,
            "filts": [self.sinc_channels, *[list(f) for f in self.filts]],
            "gat_dims": list(self.gat_dims),
            "pool_ratios": list(self.pool_ratios),
            "temperatures": list(self.temperatures),
        }


def mel_sinc_filterbank(n_filters: int, kernel_size: int, sample_rate: int) -> npt.NDArray[np.float32]:
    """Fixed band-pass FIR filters with band edges equally spaced on the mel scale (Hamming-windowed
    differences of two sinc low-passes), one row per filter. The front end is not learnt in AASIST."""
    if kernel_size % 2 == 0:
        kernel_size += 1  # symmetric filters need an odd length
    nfft = 512
    freqs = (sample_rate // 2) * np.linspace(0.0, 1.0, nfft // 2 + 1)
    mel = 2595.0 * np.log10(1.0 + freqs / 700.0)
    edges_mel = np.linspace(mel.min(), mel.max(), n_filters + 1)
    edges_hz = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    taps = np.arange(-(kernel_size - 1) / 2, (kernel_size - 1) / 2 + 1)
    window = np.hamming(kernel_size)
    bank = np.zeros((n_filters, kernel_size), dtype=np.float32)
    for i in range(n_filters):
        lo, hi = edges_hz[i], edges_hz[i + 1]
        high = (2 * hi / sample_rate) * np.sinc(2 * hi * taps / sample_rate)
        low = (2 * lo / sample_rate) * np.sinc(2 * lo * taps / sample_rate)
        bank[i] = (window * (high - low)).astype(np.float32)
    return bank


def _xavier(rows: int, cols: int) -> nn.Parameter:
    weight = nn.Parameter(torch.empty(rows, cols))
    nn.init.xavier_normal_(weight)
    return weight


def _pairwise(x: Tensor) -> Tensor:
    """(B, N, D) -> (B, N, N, D): element-wise products of every pair of nodes."""
    return x.unsqueeze(2) * x.unsqueeze(1)


def _node_batchnorm(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    shape = x.shape
    out: Tensor = bn(x.reshape(-1, shape[-1]))
    return out.reshape(shape)


class GraphAttentionLayer(nn.Module):
    """Graph attention over one node type (spectral or temporal)."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float) -> None:
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = _xavier(out_dim, 1)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        scores = torch.tanh(self.att_proj(_pairwise(x))) @ self.att_weight  # (B, N, N, 1)
        attention = F.softmax(scores / self.temperature, dim=-2).squeeze(-1)
        out = self.proj_with_att(attention @ x) + self.proj_without_att(x)
        return F.selu(_node_batchnorm(self.bn, out))


class HeteroGraphAttentionLayer(nn.Module):
    """Attention across two node types (temporal, spectral) plus a stack (master) node."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float) -> None:
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.att_weight11 = _xavier(out_dim, 1)
        self.att_weight22 = _xavier(out_dim, 1)
        self.att_weight12 = _xavier(out_dim, 1)
        self.att_weightM = _xavier(out_dim, 1)
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.temperature = temperature

    def forward(self, x1: Tensor, x2: Tensor, master: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n1 = x1.shape[1]
        x = torch.cat([self.proj_type1(x1), self.proj_type2(x2)], dim=1)

        # Stack node: attends over all nodes, then mixes with its own projection.
        m_scores = torch.tanh(self.att_projM(x * master)) @ self.att_weightM  # (B, N, 1)
        m_att = F.softmax(m_scores / self.temperature, dim=-2)
        master = self.proj_with_attM(m_att.transpose(1, 2) @ x) + self.proj_without_attM(master)

        # Node-to-node attention with one weight per (type, type) block.
        hidden = torch.tanh(self.att_proj(_pairwise(x)))  # (B, N, N, D)
        h_11, h_12 = hidden[:, :n1, :n1], hidden[:, :n1, n1:]
        h_21, h_22 = hidden[:, n1:, :n1], hidden[:, n1:, n1:]
        top = torch.cat([h_11 @ self.att_weight11, h_12 @ self.att_weight12], dim=2)
        bottom = torch.cat([h_21 @ self.att_weight12, h_22 @ self.att_weight22], dim=2)
        scores = torch.cat([top, bottom], dim=1)
        attention = F.softmax(scores / self.temperature, dim=-2).squeeze(-1)

        out = self.proj_with_att(attention @ x) + self.proj_without_att(x)
        out = F.selu(_node_batchnorm(self.bn, out))
        return out[:, :n1], out[:, n1:], master


class GraphPool(nn.Module):
    """Keep the top-k fraction of nodes by a learnt sigmoid gate (gated values)."""

    def __init__(self, ratio: float, in_dim: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Linear(in_dim, 1)

    def forward(self, h: Tensor) -> Tensor:
        gate = torch.sigmoid(self.proj(h))  # (B, N, 1)
        keep = max(int(h.shape[1] * self.ratio), 1)
        _, idx = torch.topk(gate, keep, dim=1)
        return torch.gather(h * gate, 1, idx.expand(-1, -1, h.shape[2]))


class ResidualBlock(nn.Module):
    def __init__(self, channels: tuple[int, int], first: bool) -> None:
        super().__init__()
        c_in, c_out = channels
        self.first = first
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.downsample = c_in != c_out
        if self.downsample:
            self.conv_downsample = nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1))

    def forward(self, x: Tensor) -> Tensor:
        # The published weights were trained with conv1 applied to the block input (see module doc).
        out = self.conv2(F.selu(self.bn2(self.conv1(x))))
        identity = self.conv_downsample(x) if self.downsample else x
        return F.max_pool2d(out + identity, (1, 3))


class Aasist(nn.Module):
    """Waveform (B, T) at 16 kHz -> logits (B, 2) [spoof, bona fide] and the 160-d last hidden layer."""

    def __init__(self, config: AasistConfig, sample_rate: int = 16000) -> None:
        super().__init__()
        self.config = config
        bank = mel_sinc_filterbank(config.sinc_channels, config.first_conv, sample_rate)
        self.register_buffer("sinc_filters", torch.from_numpy(bank).unsqueeze(1), persistent=False)
        self.first_bn = nn.BatchNorm2d(1)
        blocks = [config.filts[0], config.filts[1], config.filts[2], config.filts[3], config.filts[3], config.filts[3]]
        self.encoder = nn.Sequential(*[nn.Sequential(ResidualBlock(ch, first=(i == 0))) for i, ch in enumerate(blocks)])
        channels = config.filts[-1][-1]
        g0, g1 = config.gat_dims
        t = config.temperatures
        spectral_nodes = config.sinc_channels // 3  # 70 sinc bands max-pooled by 3
        self.pos_S = nn.Parameter(torch.zeros(1, spectral_nodes, channels))
        self.master1 = nn.Parameter(torch.zeros(1, 1, g0))
        self.master2 = nn.Parameter(torch.zeros(1, 1, g0))
        self.GAT_layer_S = GraphAttentionLayer(channels, g0, t[0])
        self.GAT_layer_T = GraphAttentionLayer(channels, g0, t[1])
        self.HtrgGAT_layer_ST11 = HeteroGraphAttentionLayer(g0, g1, t[2])
        self.HtrgGAT_layer_ST12 = HeteroGraphAttentionLayer(g1, g1, t[2])
        self.HtrgGAT_layer_ST21 = HeteroGraphAttentionLayer(g0, g1, t[2])
        self.HtrgGAT_layer_ST22 = HeteroGraphAttentionLayer(g1, g1, t[2])
        r = config.pool_ratios
        self.pool_S = GraphPool(r[0], g0)
        self.pool_T = GraphPool(r[1], g0)
        self.pool_hS1 = GraphPool(r[2], g1)
        self.pool_hT1 = GraphPool(r[2], g1)
        self.pool_hS2 = GraphPool(r[2], g1)
        self.pool_hT2 = GraphPool(r[2], g1)
        self.out_layer = nn.Linear(5 * g1, 2)

    def _branch(
        self,
        first: HeteroGraphAttentionLayer,
        second: HeteroGraphAttentionLayer,
        pool_s: GraphPool,
        pool_t: GraphPool,
        out_t: Tensor,
        out_s: Tensor,
        master: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        t1, s1, m1 = first(out_t, out_s, master)
        s1, t1 = pool_s(s1), pool_t(t1)
        t_aug, s_aug, m_aug = second(t1, s1, m1)
        return t1 + t_aug, s1 + s_aug, m1 + m_aug

    def encode(self, waveform: Tensor) -> Tensor:
        """Sinc filterbank and residual encoder: (B, T) -> (B, C, 23, frames). Nearly all the network's
        arithmetic (the first residual blocks at full time resolution); the fast runtime
        (`voiceid.antispoof.fast`) runs this part in bfloat16."""
        filters: Tensor = self.sinc_filters  # type: ignore[assignment]  # a registered buffer
        x = F.conv1d(waveform.unsqueeze(1), filters)  # (B, 70, T')
        x = F.max_pool2d(torch.abs(x).unsqueeze(1), (3, 3))  # (B, 1, 23, T'/3)
        x = F.selu(self.first_bn(x))
        out: Tensor = self.encoder(x)
        return out

    def forward_with_hidden(self, waveform: Tensor) -> tuple[Tensor, Tensor]:
        return self.classify(self.encode(waveform))

    def classify(self, e: Tensor) -> tuple[Tensor, Tensor]:
        """Graph attention head on the encoder output: logits (B, 2) and the 160-d hidden layer."""
        return self.classify_maxima(torch.amax(torch.abs(e), dim=3), torch.amax(torch.abs(e), dim=2))

    def classify_maxima(self, spectral: Tensor, temporal: Tensor) -> tuple[Tensor, Tensor]:
        """The head on all it sees of the encoder output: |e|'s maxima over time (B, C, 23) and over
        frequency (B, C, frames). Separate so that a head can be trained on cached maxima
        (bench/pad_finetune.py) without running the encoder again."""
        e_s = spectral.transpose(1, 2) + self.pos_S  # spectral nodes
        e_t = temporal.transpose(1, 2)  # temporal nodes
        out_s = self.pool_S(self.GAT_layer_S(e_s))
        out_t = self.pool_T(self.GAT_layer_T(e_t))
        t1, s1, m1 = self._branch(
            self.HtrgGAT_layer_ST11, self.HtrgGAT_layer_ST12, self.pool_hS1, self.pool_hT1, out_t, out_s, self.master1
        )
        t2, s2, m2 = self._branch(
            self.HtrgGAT_layer_ST21, self.HtrgGAT_layer_ST22, self.pool_hS2, self.pool_hT2, out_t, out_s, self.master2
        )
        out_t, out_s, master = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)
        hidden = torch.cat(
            [
                torch.amax(torch.abs(out_t), dim=1),
                out_t.mean(dim=1),
                torch.amax(torch.abs(out_s), dim=1),
                out_s.mean(dim=1),
                master.squeeze(1).expand(out_t.shape[0], -1),
            ],
            dim=1,
        )
        return self.out_layer(hidden), hidden

    def forward(self, waveform: Tensor) -> Tensor:
        return self.forward_with_hidden(waveform)[0]


def load_aasist(weights: Any, config: AasistConfig) -> Aasist:
    """An eval-mode AASIST with `weights` (a state dict) loaded strictly."""
    model = Aasist(config)
    model.load_state_dict(weights, strict=True)
    return model.eval()
