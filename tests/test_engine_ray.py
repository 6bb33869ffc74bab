"""`formreader scan --engine ray`: same rows as the local engine, bad files, killed workers, URIs, Parquet.

One local Ray (num_cpus=2) serves the session; each scan builds its own actor pools on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import pandas as pd
import pytest
from typer.testing import CliRunner

from formreader.cli import app
from formreader.config import Config
from formreader.engines import discover_inputs
from formreader.errors import ConfigError, InputError
from formreader.template import Template
from tests.forms import Scan, fill, scan, write_mixed_files
from tests.ray_faults import CRASH_PREPARE, CRASH_RECOGNIZE, MARKERS_ENV

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
VALUES = {"NOM": "DUPONT", "PRENOM": "MARIE", "DATE": "12/03/2011"}


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> Path:
    """Good forms in every format (multi-page PDF and TIFF), two killer files and bad files."""
    root = tmp_path_factory.mktemp("ray-inbox")
    page = fill(Template.load(), VALUES)
    for i, name in enumerate(["a.png", CRASH_PREPARE, CRASH_RECOGNIZE, "d.png"]):
        cv2.imwrite(str(root / name), scan(page, Scan(angle=i - 2, noise=4), seed=i))
    cv2.imwrite(str(root / "b.jpg"), scan(page, Scan(angle=-3, scale=0.95)), [cv2.IMWRITE_JPEG_QUALITY, 60])
    write_mixed_files(root, page)
    return root


@pytest.fixture(scope="module")
def local_rows(forms: Path, tiny_model: Path, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("local") / "local.csv"
    result = runner.invoke(app, ["scan", str(forms), "--out", str(out), "--model", str(tiny_model)])
    assert result.exit_code == 1, result.output
    return out.read_text()


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory):
    """A local Ray with 2 CPUs whose workers import this checkout and carry the crash hook."""
    ray = pytest.importorskip("ray")
    markers = tmp_path_factory.mktemp("ray-faults")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), MARKERS_ENV: str(markers)}
    saved = {k: os.environ.get(k) for k in [*env, "RAY_ADDRESS"]}
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.update(env)  # a local Ray's processes inherit the driver's environment
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "tests.ray_faults.install"})
    try:
        yield markers
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ray_scan(inputs: list[str], out: Path, model: Path, *extra: str):
    return runner.invoke(app, ["scan", *inputs, "--out", str(out), "--model", str(model), "--engine", "ray", *extra])


def test_ray_rows_are_the_local_rows_through_killed_workers(local_ray: Path, forms: Path, local_rows: str, tiny_model: Path, tmp_path: Path):
    out = tmp_path / "ray.csv"
    result = ray_scan([str(forms)], out, tiny_model)
    assert result.exit_code == 1, result.output  # the bad files fail, as locally
    # A preparing and a recognizing worker each died mid-run; Ray restarted them and retried.
    assert (local_ray / "prepare").is_file() and (local_ray / "recognize").is_file()
    assert out.read_text() == local_rows  # same rows, values, (file, page) order: every page exactly once
    df = pd.read_csv(out, keep_default_na=False)
    assert len(df) == len(set(zip(df.file, df.page))) == 12
    errors = dict(zip(df.file.map(lambda f: Path(f).name), df.error))
    assert "empty file" in errors["zero.pdf"] and "not an image" in errors["garbage.png"] and errors["other.png"]
    assert errors[CRASH_PREPARE] == errors[CRASH_RECOGNIZE] == ""
    assert "failed pages" in result.output and "pages/s" in result.output


def test_ray_reads_uris_and_writes_parquet(local_ray: Path, forms: Path, local_rows: str, tiny_model: Path, tmp_path: Path):
    out = tmp_path / "ray.parquet"
    result = ray_scan([forms.resolve().as_uri()], out, tiny_model, "--crops", str(tmp_path / "crops"))
    assert result.exit_code == 1, result.output
    got = pd.read_parquet(out)
    want = pd.read_csv(pd.io.common.StringIO(local_rows), keep_default_na=False)
    assert list(got.file) == [Path(f).resolve().as_uri() for f in want.file]  # rows name the URI they came from
    assert got.drop(columns="file").astype(str).equals(want.drop(columns="file").astype(str))
    assert len(list((tmp_path / "crops").glob("*.png"))) == 9 * 4  # 9 good pages x 4 fields


def test_uris_are_listed_through_pyarrow_filesystems(forms: Path):
    pytest.importorskip("pyarrow")
    uri = forms.resolve().as_uri()
    found = discover_inputs([uri + "/sub", uri + "/a.png", str(forms / "b.jpg")], "ray")
    assert found == [uri + "/sub/c.tif", uri + "/sub/two.pdf", uri + "/a.png", forms / "b.jpg"]
    with pytest.raises(InputError, match="--engine ray"):
        discover_inputs([uri], "local")
    with pytest.raises(InputError, match="nosuchscheme://x"):
        discover_inputs(["nosuchscheme://x/y.png"], "ray")


def test_plan_uses_gpus_when_the_cluster_has_them():
    pytest.importorskip("ray")
    from formreader.engines.ray_engine import Plan

    gpu = Plan.for_cluster({"CPU": 32.0, "GPU": 2.0}, Config(), n_files=1000, n_fields=4)
    # 32 CPUs want 5 recognizers: 3 per GPU, a third of a GPU each (fractional GPUs tile the GPU).
    assert (gpu.recognizers, gpu.gpus_per_recognizer, gpu.preparers, gpu.pages_per_batch) == (6, 1 / 3, 26, max(1, Config().batch_size // 4))
    assert Plan.for_cluster({"CPU": 4.0, "GPU": 1.0}, Config(), 10, 4).gpus_per_recognizer == 1.0
    cpu = Plan.for_cluster({"CPU": 2.0}, Config(), n_files=3, n_fields=4)
    assert (cpu.recognizers, cpu.gpus_per_recognizer, cpu.preparers, cpu.blocks) == (1, 0.0, 1, 3)
    assert Plan.for_cluster({"CPU": 32.0, "GPU": 2.0}, Config(device="cpu"), 10, 4).gpus_per_recognizer == 0.0
    with pytest.raises(ConfigError, match="no GPU"):
        Plan.for_cluster({"CPU": 8.0}, Config(device="cuda"), 10, 4)


def test_unknown_engine_is_a_usage_error(forms: Path, tmp_path: Path):
    result = runner.invoke(app, ["scan", str(forms), "--out", str(tmp_path / "r.csv"), "--engine", "spark"])
    assert result.exit_code == 2 and "unknown engine 'spark'" in result.output


def test_ray_engine_without_ray_installed_says_how_to_get_it(forms: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    result = runner.invoke(app, ["scan", str(forms / "a.png"), "--out", str(tmp_path / "r.csv"), "--engine", "ray"])
    assert result.exit_code == 2 and "formreader[ray]" in result.output and not (tmp_path / "r.csv").exists()


def test_default_scan_does_not_import_ray(forms: Path, tiny_model: Path, tmp_path: Path):
    code = (
        "import sys\n"
        "from formreader.cli import app\n"
        f"try: app(['scan', {str(forms / 'a.png')!r}, '--out', {str(tmp_path / 'r.csv')!r}, '--model', {str(tiny_model)!r}])\n"
        "except SystemExit as e: print('exit', e.code)\n"
        "print('ray loaded:', sorted(m for m in sys.modules if m == 'ray' or m.startswith(('ray.', 'formreader.engines.ray'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, timeout=120)
    assert "exit 0" in proc.stdout, proc.stdout + proc.stderr
    assert "ray loaded: []" in proc.stdout


def test_driver_puts_rows_in_file_page_order_and_keeps_one_copy_of_each():
    """Rows come back in any order, and a retried task may deliver some twice: the driver's job."""
    pytest.importorskip("ray")
    import pickle

    from formreader.engines.ray_engine import RayScanner
    from formreader.records import PageRecord

    def row(i: int, k: int, n: int) -> dict:
        return {"file_idx": i, "page_i": k, "n_pages": n, "record": pickle.dumps(PageRecord(file=f"f{i}", page=k + 1))}

    arrivals = [row(2, 0, 1), row(1, 1, 2), row(0, 0, 1), row(1, 1, 2), row(0, 0, 1), row(1, 0, 2), row(2, 0, 1)]
    opened, done, paged = [], [], []
    engine = RayScanner(Template.load(), Config())
    out = list(engine._in_order(["f0", "f1", "f2"], arrivals, lambda f, recs: done.append(f),
                                lambda f, n: opened.append((f, n)), lambda r: paged.append((r.file, r.page))))
    assert [(r.file, r.page) for r in out] == [("f0", 1), ("f1", 1), ("f1", 2), ("f2", 1)]
    assert engine.duplicates == 3 and done == ["f0", "f1", "f2"] and len(paged) == 4  # on_file in input order (scan relies on it)
    assert opened == [("f2", 1), ("f1", 2), ("f0", 1)]
