"""`formreader scan --engine ray`: the same scan on Ray Data, on this machine or a cluster.

    files ─▶ PrepareFiles   CPU actor pool: prepare_file (ingest, align, segment), one file a call
          ─▶ Recognize      actor pool, one GPU each when the cluster has GPUs: finish_pages on
                            batches of pages from many files, models loaded once per actor
          ─▶ driver         puts records back in (file, page) order, writes the output once

Pages and records travel as pickled PreparedPage/PageRecord bytes, so rows keep the exact types
and values of the local engine. Ray restarts a dead actor and retries its task; the driver keeps
the first copy of each (file, page), so the output has every page exactly once.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from formreader.align import Aligner
from formreader.config import Config
from formreader.engines.uris import fetch, is_uri
from formreader.errors import ConfigError, first_line
from formreader.pipeline import PipelineSettings, PreparedPage, finish_pages, prepare_file, save_crops
from formreader.recognize.ensemble import load_reader
from formreader.recognize.predictor import RecognizerSettings
from formreader.records import PageRecord
from formreader.template import Template

log = logging.getLogger("formreader.ray")
CPUS_PER_RECOGNIZER = 5
Loader = Callable[[Path | None, RecognizerSettings], object]  # (model, settings) -> recognizer for finish_pages


def _assigned(resource: str) -> float:
    import ray

    return float(ray.get_runtime_context().get_assigned_resources().get(resource, 0.0))


def prepare_any(path: str, template: Template, settings: PipelineSettings, aligner: Aligner) -> list[PreparedPage]:
    """prepare_file for a local path or a URI; any failure becomes an error page, never a failed job."""
    try:
        if not is_uri(path):
            return prepare_file(Path(path), template, settings, aligner)
        with tempfile.TemporaryDirectory(prefix="formreader-") as tmp:
            try:
                local = fetch(path, Path(tmp))
            except Exception as exc:
                return [PreparedPage(PageRecord(file=path, page=1, error=f"cannot fetch ({first_line(exc)})"))]
            pages = prepare_file(local, template, settings, aligner)
        for page in pages:
            page.record.file = path  # the row names the input, not the temporary copy
        return pages
    except Exception as exc:  # a bug on one file must not cost a cluster run its other files
        log.exception("%s: unexpected error", path)
        return [PreparedPage(PageRecord(file=str(path), page=1, error=f"unexpected error ({first_line(exc)})"))]


class PrepareFiles:
    """CPU actor: the template's features are built once; one input file in, its pages out."""

    def __init__(self, template_ref: list, settings: PipelineSettings):
        import cv2
        import ray

        cv2.setNumThreads(max(1, int(_assigned("CPU"))))  # the CPUs Ray gave this actor, no more
        # The template comes by reference: the driver holds it for the whole run, so a restarted
        # actor finds it again (large constructor arguments could be lost).
        self.template, self.settings = ray.get(template_ref[0]), settings
        self.aligner = Aligner(self.template, settings.aligner)

    def __call__(self, row: dict) -> list[dict]:
        pages = prepare_any(row["path"], self.template, self.settings, self.aligner)
        for page in pages:
            page.record.file = row["file"]  # the input as the user named it, as the local engine writes it
        return [
            {"file_idx": row["file_idx"], "page_i": i, "n_pages": len(pages), "prepared": pickle.dumps(p, protocol=5)}
            for i, p in enumerate(pages)
        ]


class Recognize:
    """Recognizer actor: models loaded once, by the loader the local scan uses, then batches of
    pages from many files; intra-op threads = the CPUs Ray gave it."""

    def __init__(self, cfg: Config, crops_dir: Path | None, loader: Loader = load_reader):
        device = cfg.device if _assigned("GPU") > 0 else "cpu"
        settings = replace(cfg.recognizer(), device=device, threads=max(1, int(_assigned("CPU"))))
        self.predictor = loader(cfg.model, settings)
        self.settings = cfg.pipeline()
        self.crops_dir = crops_dir

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pages = [pickle.loads(b) for b in batch["prepared"]]
        records = finish_pages(pages, self.predictor, self.settings)
        if self.crops_dir is not None:  # must be a shared folder on a cluster
            save_crops(pages, self.crops_dir)
        out = np.empty(len(records), dtype=object)
        out[:] = [pickle.dumps(r, protocol=5) for r in records]
        return {"file_idx": batch["file_idx"], "page_i": batch["page_i"], "n_pages": batch["n_pages"], "record": out}


@dataclass(frozen=True)
class Plan:
    """How the cluster's resources are split between the two actor pools."""

    preparers: int
    recognizers: int
    gpus_per_recognizer: float
    pages_per_batch: int
    blocks: int

    @classmethod
    def for_cluster(cls, resources: dict[str, float], cfg: Config, n_files: int, n_fields: int) -> Plan:
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        if cfg.device == "cuda" and not gpus:
            raise ConfigError("--device cuda: the Ray cluster has no GPU")
        use_gpu = gpus > 0 and cfg.device != "cpu"
        # Recognition is 13-19% of a page's CPU time (README, "Past one machine"): one recognizer
        # per 5 CPUs keeps up with the other 4. On a GPU the CRNN is cheap but crop normalization
        # and decoding still run on the actor's one CPU, so a GPU is shared by as many actors.
        recognizers = max(1, round(cpus / CPUS_PER_RECOGNIZER))
        per_gpu = math.ceil(recognizers / gpus) if use_gpu else 0
        return cls(
            preparers=max(1, cpus - (gpus * per_gpu if use_gpu else recognizers)),
            recognizers=gpus * per_gpu if use_gpu else recognizers,
            gpus_per_recognizer=1.0 / per_gpu if use_gpu else 0.0,
            pages_per_batch=max(1, cfg.batch_size // max(n_fields, 1)),
            # Small blocks balance the load and bound what a retry redoes; not one per file past
            # a few thousand, where per-block bookkeeping would load the driver.
            blocks=max(1, min(n_files, max(4 * cpus, math.ceil(n_files / 8)))),
        )


def connect(cfg: Config) -> bool:
    """Join the Ray cluster at --ray-address / $RAY_ADDRESS, else start a local Ray; True if we started it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'formreader[ray]'") from None
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            # "local": a new Ray for this run, even where `ray start` left a cluster on this machine.
            ray.init(address="local", num_cpus=cfg.workers + 1, **quiet)  # --workers preparers + a recognizer
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot {'connect to Ray at ' + address if address else 'start a local Ray'}: {first_line(exc)}") from exc
    return True


class RayScanner:
    """Same interface as pipeline.Scanner: records in input order; `on_file` as each file completes."""

    def __init__(self, template: Template, cfg: Config, crops_dir: Path | None = None, loader: Loader = load_reader):
        self.template = template
        self.cfg = cfg
        self.loader = loader  # a module-level function: actors import it by name
        self.crops_dir = Path(crops_dir).resolve() if crops_dir else None
        self.duplicates = 0  # pages delivered twice by a retry and dropped

    def scan(
        self,
        files: Iterable[Path | str],
        on_file: Callable[[Path | str, list[PageRecord]], None] | None = None,
        on_open: Callable[[Path | str, int], None] | None = None,
        on_page: Callable[[PageRecord], None] | None = None,
    ) -> Iterator[PageRecord]:
        """Records in input (file, page) order. As rows arrive (in any order): `on_open(path, pages)`
        at a file's first page, `on_page(record)` per page, `on_file(path, records)` once it is complete."""
        files = list(files)
        started = connect(self.cfg)  # first: a clear error when Ray is not installed
        import ray

        try:
            plan = Plan.for_cluster(ray.cluster_resources(), self.cfg, len(files), len(self.template.layout.field_names))
            log.info("ray plan: %s", plan)
            self._template_ref = ray.put(self.template)
            yield from self._in_order(files, self._dataset(files, plan).iter_rows(), on_file, on_open, on_page)
        finally:
            self._template_ref = None
            if started:
                ray.shutdown()

    def _dataset(self, files: list[Path | str], plan: Plan):
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # scan draws its own
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # execution plans; ray-data.log keeps them
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
        # Workers read absolute paths: they may run in another directory (or machine, with a shared mount).
        items = [
            {"file_idx": i, "file": str(f), "path": f if is_uri(f) else str(Path(f).resolve())} for i, f in enumerate(files)
        ]
        ds = ray.data.from_items(items, override_num_blocks=plan.blocks)
        ds = ds.flat_map(
            PrepareFiles,
            fn_constructor_args=([self._template_ref], self.cfg.pipeline()),
            compute=ray.data.ActorPoolStrategy(size=plan.preparers),
            num_cpus=1,
        )
        return ds.map_batches(
            Recognize,
            fn_constructor_args=(self.cfg, self.crops_dir, self.loader),
            compute=ray.data.ActorPoolStrategy(size=plan.recognizers),
            batch_size=plan.pages_per_batch,
            batch_format="numpy",
            num_cpus=1,
            num_gpus=plan.gpus_per_recognizer,
        )

    def _in_order(self, files: list, rows: Iterable[dict], on_file, on_open=None, on_page=None) -> Iterator[PageRecord]:
        """Rows arrive in any order; yield each file's records once all its pages are in, in file order."""
        pending: dict[int, dict[int, PageRecord]] = {}
        complete: dict[int, list[PageRecord]] = {}
        next_file = 0
        for row in rows:
            i, k, n = int(row["file_idx"]), int(row["page_i"]), int(row["n_pages"])
            if i < next_file or i in complete or k in pending.get(i, {}):
                self.duplicates += 1
                log.warning("%s page %d delivered twice (a retried task); kept the first copy", files[i], k + 1)
                continue
            if i not in pending and on_open is not None:
                on_open(files[i], n)
            pages = pending.setdefault(i, {})
            pages[k] = pickle.loads(row["record"])
            if on_page is not None:
                on_page(pages[k])
            if len(pages) == n:
                complete[i] = [pages[j] for j in range(n)]
                del pending[i]
                while next_file in complete:  # on_file in input order, as the local Scanner calls it
                    records = complete.pop(next_file)
                    if on_file is not None:
                        on_file(files[next_file], records)
                    yield from records
                    next_file += 1
        if next_file != len(files):
            raise RuntimeError(f"ray engine lost files from {files[next_file]} on (a bug: please report)")
