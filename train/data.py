"""Training-sample stream: draws each sample from a source by the configured mix weights,
augments the raw crop, normalizes it with the runtime's `normalize_crop`, and batches.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from formreader.preprocess import InputSpec, normalize_crop
from train import sources
from train.augment import augment
from train.config import RunConfig
from train.synth import Synthesizer
from train.text import encode

Sample = tuple[np.ndarray, str]


@dataclass
class SampleStream:
    draws: dict[str, Callable[[np.random.Generator], Sample]]
    weights: dict[str, float]
    spec: InputSpec
    alphabet: str
    max_label_len: int

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        names = list(self.weights)
        p = np.array([self.weights[n] for n in names])
        name = names[int(rng.choice(len(names), p=p / p.sum()))]
        image, text = self.draws[name](rng)
        return normalize_crop(image, self.spec), text

    def batch(self, seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for _ in range(size):
            x, text = self.sample(rng)
            xs.append(x)
            ys.append(encode(text, self.alphabet, self.max_label_len))
        # float16 halves the bytes piped from worker processes; the trainer casts back.
        return np.stack(xs)[..., None].astype(np.float16), np.stack(ys)


def _augmented(images: sources.ImageSet, strength: float, bilevel: float) -> Callable[[np.random.Generator], Sample]:
    def draw(rng: np.random.Generator) -> Sample:
        image, text = images.sample(rng)
        return augment(image, rng, strength, bilevel), text
    return draw


def build_stream(cfg: RunConfig, root: Path) -> SampleStream:
    """Load every source with a positive mix weight."""
    alphabet, mix = cfg.model.alphabet, {k: v for k, v in cfg.data.mix.items() if v > 0}
    bw = cfg.data.bilevel_fraction
    draws: dict[str, Callable[[np.random.Generator], Sample]] = {}
    if "kaggle" in mix:
        draws["kaggle"] = _augmented(sources.kaggle_split(root, "train", alphabet), 1.0, bw)
    if "pseudo" in mix and cfg.data.pseudo_labels:
        table = sources.repo_path(cfg.data.pseudo_labels)
        draws["pseudo"] = _augmented(sources.pseudo_labelled(root, table, alphabet), 1.0, bw)
    if "corrections" in mix and cfg.data.corrections:
        draws["corrections"] = _augmented(sources.labelled_files(sources.repo_path(cfg.data.corrections), alphabet), 1.0, bw)
    if "dhsd" in mix:
        draws["dhsd"] = _augmented(sources.dhsd_words(root, alphabet), 0.7, bw)
    if "htr_lines" in mix:
        draws["htr_lines"] = _augmented(sources.htr_lines(root, alphabet), 0.5, bw)
    if {"synth_name", "synth_date", "mnist_date"} & set(mix):
        x, y = sources.load_mnist(root)
        keep = len(x) - cfg.data.mnist_reserved  # the reserved tail is for date evaluation
        synth = Synthesizer(sources.font_paths(root), sources.names_list(root), x[:keep], y[:keep])
        blank = cfg.data.blank_fraction
        draws["synth_name"] = lambda r: _aug(synth.name_crop(r, blank=r.random() < blank), r, bw)
        draws["synth_date"] = lambda r: _aug(synth.font_date_crop(r), r, bw)
        draws["mnist_date"] = lambda r: _aug(synth.mnist_date_crop(r), r, bw)
    weights = {k: v for k, v in mix.items() if k in draws}
    spec = InputSpec(height=cfg.model.height, width=cfg.model.width)
    return SampleStream(draws, weights, spec, alphabet, cfg.data.max_label_len)


def _aug(sample: Sample, rng: np.random.Generator, bilevel: float) -> Sample:
    return augment(sample[0], rng, 1.0, bilevel), sample[1]


# Worker processes each build their own stream once (sources are too big to pickle per task).
_WORKER_STREAM: SampleStream | None = None


def _init_worker(cfg: RunConfig, root: Path) -> None:
    global _WORKER_STREAM
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    _WORKER_STREAM = build_stream(cfg, root)


def _worker_batch(args: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    assert _WORKER_STREAM is not None
    return _WORKER_STREAM.batch(*args)


def batches(cfg: RunConfig, root: Path, first_seed: int, count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`count` batches seeded first_seed, first_seed+1, ... (deterministic per seed)."""
    jobs = [(first_seed + i, cfg.fit.batch_size) for i in range(count)]
    if cfg.fit.workers <= 0:
        stream = build_stream(cfg, root)
        yield from (stream.batch(*job) for job in jobs)
        return
    # spawn, not fork: the trainer process may already run JAX/TF threads, which fork can deadlock.
    ctx = mp.get_context("spawn")
    window = 4 * cfg.fit.workers  # bounded prefetch: never run far ahead of the trainer
    with ctx.Pool(cfg.fit.workers, initializer=_init_worker, initargs=(cfg, root)) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.apply_async(_worker_batch, (job,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
