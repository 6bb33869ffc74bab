"""`python -m train fit`: resumable training with per-epoch CSV log and learning curve."""

from __future__ import annotations

import csv
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from formreader.preprocess import InputSpec, normalize_crop
from formreader.recognize.decoding import greedy_decode
from train import sources
from train.config import RunConfig
from train.data import batches
from train.metrics import Score, name_form, score

LOG_FIELDS = ["epoch", "step", "train_loss", "val_cer", "val_exact", "lr", "seconds"]


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    best_cer: float = 1e9
    seconds: float = 0.0  # training time summed over all sessions

    @classmethod
    def load(cls, path: Path) -> "RunState":
        return cls(**json.loads(path.read_text())) if path.exists() else cls()

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__))


def _compile(model, cfg: RunConfig) -> None:
    import keras

    total = cfg.fit.epochs * cfg.fit.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.fit.learning_rate / 10,
        decay_steps=max(total - cfg.fit.warmup_steps, 1),
        alpha=cfg.fit.min_learning_rate / cfg.fit.learning_rate,
        warmup_target=cfg.fit.learning_rate,
        warmup_steps=cfg.fit.warmup_steps,
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=5.0), loss=keras.losses.CTC())


def _open_model(cfg: RunConfig, out: Path):
    """Resume from out/last.keras when present, else build (optionally from init weights)."""
    import keras

    from train.model import build_crnn

    last = out / "last.keras"
    if last.exists():
        print(f"resuming from {last}")
        return keras.models.load_model(last)
    keras.utils.set_random_seed(cfg.fit.seed)
    model = build_crnn(cfg.model)
    if cfg.fit.init_weights:
        model.load_weights(sources.repo_path(cfg.fit.init_weights))
    _compile(model, cfg)
    return model


def load_val(cfg: RunConfig, root: Path) -> tuple[np.ndarray, list[str]]:
    spec = InputSpec(height=cfg.model.height, width=cfg.model.width)
    val = sources.kaggle_split(root, "val", cfg.model.alphabet, limit=cfg.fit.val_limit)
    x = np.stack([normalize_crop(im, spec) for im in val.images])[..., None]
    return x.astype(np.float32), [name_form(t) for t in val.texts]


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def evaluate_keras(model, x: np.ndarray, truths: list[str], alphabet: str) -> Score:
    probs = softmax(np.asarray(model.predict(x, batch_size=128, verbose=0)))
    preds = [name_form(greedy_decode(p, alphabet)[0]) for p in probs]
    return score(preds, truths)


def _append_log(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _train_epoch(model, batch_iter, steps: int) -> float:
    losses = []
    for x, y in itertools.islice(batch_iter, steps):
        loss = model.train_on_batch(x.astype(np.float32), y)
        losses.append(float(np.asarray(loss).mean() if not isinstance(loss, list) else loss[0]))
    return float(np.mean(losses)) if losses else float("nan")


def fit(cfg: RunConfig, root: Path, out: Path) -> RunState:
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(cfg.to_json(), encoding="utf-8")
    state = RunState.load(out / "state.json")
    model = _open_model(cfg, out)
    x_val, y_val = load_val(cfg, root)
    remaining = cfg.fit.epochs - state.epoch
    first_seed = cfg.fit.seed * 10_000_000 + state.epoch * cfg.fit.steps_per_epoch
    batch_iter = batches(cfg, root, first_seed, max(remaining, 0) * cfg.fit.steps_per_epoch)
    session_start = time.time()
    while state.epoch < cfg.fit.epochs:
        t0 = time.time()
        loss = _train_epoch(model, batch_iter, cfg.fit.steps_per_epoch)
        val = evaluate_keras(model, x_val, y_val, cfg.model.alphabet)
        state.epoch += 1
        state.seconds += time.time() - t0
        _checkpoint(model, state, out, val)
        lr = float(np.asarray(model.optimizer.learning_rate))
        row = dict(epoch=state.epoch, step=int(np.asarray(model.optimizer.iterations)), train_loss=round(loss, 4),
                   val_cer=round(val.cer, 4), val_exact=round(val.exact, 4), lr=f"{lr:.2e}", seconds=round(state.seconds, 1))
        _append_log(out / "log.csv", row)
        print(json.dumps(row), flush=True)
        if _should_pause(cfg, state, session_start):
            print("stopping here; re-run the same command to resume")
            break
    plot_curve(out / "log.csv", out / "curve.png")
    return state


def _should_pause(cfg: RunConfig, state: RunState, session_start: float) -> bool:
    out_of_time = cfg.fit.max_minutes and time.time() - session_start > cfg.fit.max_minutes * 60
    return bool(out_of_time or state.epoch == cfg.fit.stop_at_epoch)


def _checkpoint(model, state: RunState, out: Path, val: Score) -> None:
    if val.cer < state.best_cer:
        state.best_cer = val.cer
        model.save_weights(out / "best.weights.h5")
    model.save_weights(out / "last.weights.h5")
    model.save(out / "last.keras")  # weights + optimizer state: what resume needs
    state.save(out / "state.json")


def plot_curve(log: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    if not log.exists():
        return
    table = pd.read_csv(log)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(table.epoch, table.train_loss)
    a.set(xlabel="epoch", ylabel="train CTC loss", yscale="log")
    b.plot(table.epoch, table.val_cer, label="val CER")
    b.plot(table.epoch, table.val_exact, label="val exact")
    b.set(xlabel="epoch", ylim=(0, 1))
    b.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
