"""Can a countermeasure trained without any attack data generalise to unseen attacks? (issue 18, item 4)

    VOICEID_DEV_DATA_DIR=../shared/data nice -n 10 python bench/pad_vocoded.py [--train-files 240]

Spoof class made from genuine speech, no attack data at all: every training file of dev, dev_cohort
and dev_8k (bona fide) is copy-synthesised through vocoders this machine can run offline,
  - `griffin_lim`: STFT magnitude -> Griffin-Lim phase reconstruction (32 iterations);
  - `mel_griffin_lim`: an 80-band mel spectrogram (a TTS acoustic model's output) -> inverse mel ->
    Griffin-Lim, the vocoder path of early neural TTS;
and, as channel augmentation, half of both classes goes through a simulated phone line (8 kHz
band-limit + G.711 µ-law round trip, random gain). The detector is small: LFCC (20 coefficients +
deltas, 20 ms frames) mean and standard deviation over a file's first 4 s -> a logistic regression (torch, L2).

Evaluation: ALL of dev_spoof, whose attack families (ASVspoof 2019 TTS/VC and adversarial filters,
CycleGAN/MaskCycleGAN voice conversion, Tortoise/NaturalSpeech zero-shot cloning) and bona fide
speakers are never seen in training: every family is held out. Reported: EER pooled and per family
(each family's spoofs against all dev_spoof bona fide), clean and G.711, beside AASIST's on the same
files (from the eval-pad cache: `python bench/pad_cache.py clean g711-ulaw` first).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from voiceid.antispoof.manifest import read_manifest
from voiceid.antispoof.metrics import pad_eer
from voiceid.audio import g711
from voiceid.audio.resample import resample
from voiceid.config import get_settings
from voiceid.evaluation.channel import through_channel
from voiceid.evaluation.pad import ATTACK_FAMILIES, CmCache, PadItem, read_pad_manifest

RATE = 16000
MAX_SECONDS = 4.0  # features of the first 4 s: enough for file-level statistics, bounded cost

_lfcc = torchaudio.transforms.LFCC(
    sample_rate=RATE, n_lfcc=20, speckwargs={"n_fft": 512, "win_length": 320, "hop_length": 160}
)
_griffin = torchaudio.transforms.GriffinLim(n_fft=512, win_length=400, hop_length=160, n_iter=16, power=1.0)
_spec = torchaudio.transforms.Spectrogram(n_fft=512, win_length=400, hop_length=160, power=1.0)
_mel_fb = torchaudio.functional.melscale_fbanks(257, 0.0, RATE / 2, 80, RATE)  # (257, 80)
_mel_inverse = torch.linalg.pinv(_mel_fb)  # (80, 257): least-squares inverse of the mel projection


def load(path: Path) -> np.ndarray:
    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = resample(wave.mean(axis=1), int(rate), RATE)
    return mono[: int(MAX_SECONDS * RATE)]


def phone_line(wave: np.ndarray, rng: random.Random) -> np.ndarray:
    """8 kHz band-limit and a G.711 µ-law round trip at a random level."""
    narrow = resample(wave * rng.uniform(0.3, 1.0), RATE, 8000)
    return resample(g711.decode(g711.encode(narrow, "ulaw"), "ulaw"), 8000, RATE)


def vocode(wave: np.ndarray, kind: str) -> np.ndarray:
    x = torch.from_numpy(wave)
    with torch.inference_mode():
        magnitude = _spec(x)
        if kind == "mel_griffin_lim":
            mel = (magnitude.T @ _mel_fb).clamp(min=0)  # (frames, 80)
            magnitude = (mel @ _mel_inverse).clamp(min=0).T
        out = _griffin(magnitude)
    y = out.numpy()[: len(wave)]
    return (y / (np.abs(y).max() + 1e-9) * np.abs(wave).max()).astype(np.float32)


def features(wave: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        c = _lfcc(torch.from_numpy(wave))  # (20, frames)
        d = torchaudio.functional.compute_deltas(c)
        both = torch.cat([c, d])
        return torch.cat([both.mean(dim=1), both.std(dim=1)]).numpy()


def decoded_over(item: PadItem, channel: str) -> np.ndarray:
    """The eval file as the service would receive it over `channel`, at 16 kHz."""
    data, _ = through_channel(item.path, channel)
    if channel == "clean":
        return load(item.path)
    narrow = g711.decode(data, "ulaw")
    return resample(narrow, 8000, RATE)[: int(MAX_SECONDS * RATE)]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 500) -> tuple[np.ndarray, ...]:
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xt = torch.from_numpy((x - mean) / std).float()
    yt = torch.from_numpy(y).float()
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, w.detach().numpy(), b.detach().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-files", type=int, default=240)
    parser.add_argument("--out", type=Path, default=Path("bench/out/pad_vocoded.json"))
    args = parser.parse_args()
    settings = get_settings()
    torch.set_num_threads(1)
    rng = random.Random(18)
    data = settings.dev_data_dir
    pool = [i for name in ("dev", "dev_cohort", "dev_8k") for i in read_pad_manifest(data / name / "manifest.csv")]
    rng.shuffle(pool)
    train = pool[: args.train_files]
    x, y = [], []
    for n, item in enumerate(train):
        wave = load(item.path)
        for label, audio in (
            (1, wave),
            (0, vocode(wave, "griffin_lim" if n % 2 else "mel_griffin_lim")),
        ):
            if rng.random() < 0.5:
                audio = phone_line(audio, rng)
            x.append(features(audio))
            y.append(label)
        if n % 50 == 0:
            print(f"train {n}/{len(train)}", flush=True)
    mean, std, w, b = fit_logistic(np.array(x), np.array(y, dtype=np.float64))

    evaluation = read_pad_manifest(data / "dev_spoof" / "manifest.csv")
    cm_manifest = read_manifest(settings.cm_model_dir)
    aasist_cache = CmCache(settings.data_dir / "cache" / "cm", cm_manifest.cache_key)
    report: dict[str, dict[str, dict[str, float | int]]] = {}
    for channel in ("clean", "g711-ulaw"):
        ours: dict[str, float] = {}
        theirs: dict[str, float] = {}
        for item in evaluation:
            try:
                wave = decoded_over(item, channel)
            except (OSError, ValueError) as exc:
                print(f"skip {item.utt_id}: {exc}")
                continue
            ours[item.utt_id] = float(((features(wave) - mean) / std) @ w + b[0])
            cached = aasist_cache.get(through_channel(item.path, channel)[0], channel)
            if cached is not None:
                theirs[item.utt_id] = cached.score
        rows: dict[str, dict[str, float | int]] = {}
        groups: dict[str, list[PadItem]] = defaultdict(list)
        for item in evaluation:
            if not item.is_bonafide:
                groups[ATTACK_FAMILIES.get(item.attack_id, item.attack_id)].append(item)
        groups["pooled"] = [i for i in evaluation if not i.is_bonafide]
        for name, spoofs in sorted(groups.items()):
            row: dict[str, float | int] = {"n_spoof": len(spoofs)}
            for label, scores in (("vocoded_lfcc_lr", ours), ("aasist", theirs)):
                bona = np.array([scores[i.utt_id] for i in evaluation if i.is_bonafide and i.utt_id in scores])
                spoof = np.array([scores[i.utt_id] for i in spoofs if i.utt_id in scores])
                if len(bona) and len(spoof):
                    row[f"eer_{label}"] = round(pad_eer(bona, spoof)[0], 4)
            rows[name] = row
        report[channel] = rows
        print(channel, json.dumps(rows), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"train_files": len(train), "report": report}, indent=2) + "\n")


if __name__ == "__main__":
    main()
