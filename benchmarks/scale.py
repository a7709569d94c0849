"""Bounded memory and linear time at scale: extract, train and analyze at two data sizes, 4x apart.

One run builds two phantom datasets (N and 4N studies at a small image size) and a random resnet18
classifier, then runs each command as a fresh subprocess at each size, the two sizes of a command back to
back: ``extract`` (images -> store), ``train`` (store -> SAE) and ``analyze`` (images + one SAE -> bundle).
Every buffer is several times smaller than the 1x data (shards of 16 images, a 2,048-token shuffle buffer,
chunks of 32 images), so a command that held its data in memory would show it at 4x. The SAE trains
without the L1 penalty, so its codes are dense (L0 ~330 of 2,048 latents): the analysis then handles more
code entries per token than a sparse SAE would, the hard case for its memory.

Each child reports on itself: its peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``, the kernel's VmHWM),
"run MiB" (that peak minus the RSS after the command's imports), the peak of its anonymous memory (RssAnon,
sampled every 20 ms: without shared libraries and memory-mapped files) and the wall and CPU time of the
command itself (interpreter start and imports excluded). The table gives both sizes and the 4x/1x ratios
(peak RSS should stay within 15 %, time should grow ~4x), then the marginal cost per token,
(t_4x - t_1x) / (tokens_4x - tokens_1x), in which fixed costs such as loading the models cancel out.
Commands run on one torch thread by default, which keeps CPU-time ratios steady on a shared machine;
compare ratios within one run.

    python benchmarks/scale.py [--studies 75] [--factor 4] [--threads 1] [--device cpu|cuda] [--keep DIR]
    python benchmarks/scale.py --quick          # a smoke run at tiny sizes (tests/test_scale_benchmark.py)

docs/sizing.md projects disk, memory and time for the full VinDr-Mammo release from these figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHILD = "--child"  # first argument of the measuring child: scale.py --child REPORT MODULE ARGS...
COMMANDS = ("extract", "train", "analyze")
RSS_TOLERANCE = 0.15
# modules a command imports only inside main(): imported before the baseline, so "run MiB" is the run's own
LAZY_IMPORTS = {
    "mammo_sae.train": ("mammo_sae.sae.trainer",),
    "mammo_sae.analyze": ("mammo_sae.bundle.writing.run",),
}


@dataclass(frozen=True)
class Settings:
    """Everything that sizes one benchmark run."""

    studies: int  # studies of the 1x dataset (4 images each)
    factor: int  # the large dataset has factor x studies
    image_size: str  # phantom DICOM size, HxW
    frame_size: str  # model frame, HxW (resnet18: one token per 32x32 pixels)
    images_per_shard: int
    buffer_tokens: int
    chunk_images: int
    expansion: int
    batch_size: int
    epochs: int
    device: str
    threads: int  # torch / OpenMP threads of each command; 0 = torch's default (one per core)


DEFAULT = Settings(
    studies=75,
    factor=4,
    image_size="256x208",
    frame_size="256x160",
    images_per_shard=16,
    buffer_tokens=2048,
    chunk_images=32,
    expansion=4,
    batch_size=256,
    epochs=5,
    device="cpu",
    threads=1,
)
QUICK = Settings(
    studies=2,
    factor=4,
    image_size="160x128",
    frame_size="128x96",
    images_per_shard=4,
    buffer_tokens=64,
    chunk_images=4,
    expansion=2,
    batch_size=16,
    epochs=1,
    device="cpu",
    threads=1,
)


# --- the measuring child ----------------------------------------------------------------------------------


def status_kib(field: str) -> int:
    """One ``kB`` field of /proc/self/status (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakSampler:
    """Samples a /proc/self/status field in a background thread and keeps its maximum."""

    def __init__(self, field: str, every_s: float = 0.02) -> None:
        self.field, self.every_s = field, every_s
        self.peak = status_kib(field)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, status_kib(self.field))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, status_kib(self.field))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gpu_peak_bytes() -> int | None:
    """Peak GPU memory the command allocated through torch, if it used CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_allocated())


def run_child(report: str, module: str, argv: list[str]) -> int:
    """Import and run one command's ``main`` in this fresh process; write its own figures to ``report``."""
    command = importlib.import_module(module)
    for name in LAZY_IMPORTS.get(module, ()):
        importlib.import_module(name)
    after_import_kib = status_kib("VmRSS")
    wall, cpu = time.perf_counter(), cpu_seconds()
    with PeakSampler("RssAnon") as anon:
        code = command.main(argv)
    figures = {
        "returncode": code,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": cpu_seconds() - cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "peak_anon_mib": anon.peak / 1024,
        "after_import_mib": after_import_kib / 1024,
        "gpu_peak_mib": None if (gpu := gpu_peak_bytes()) is None else gpu / 2**20,
    }
    Path(report).write_text(json.dumps(figures))
    return code


# --- the parent: inputs -----------------------------------------------------------------------------------


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def check_run(argv: list[str], what: str, threads: int = 0) -> str:
    """Run a subprocess (with ``threads`` OpenMP threads, if > 0); its stdout, or a RuntimeError quoting
    its stderr."""
    env = dict(os.environ)
    if threads > 0:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def make_phantoms(out: Path, studies: int, settings: Settings) -> Path:
    args = ["--out", str(out), "--studies", str(studies), "--size", settings.image_size, "--seed", "1"]
    check_run(python("-m", "mammo_sae.phantom", *args, "--no-progress"), "phantom")
    return out


def make_classifier(path: Path) -> Path:
    """A random resnet18 with mass and calcification heads, built in a child so this process stays small."""
    code = (
        "import sys, torch\n"
        "from mammo_sae.models import Classifier, create_backbone, save_classifier\n"
        "torch.manual_seed(0)\n"
        "model = Classifier.create(create_backbone('timm:resnet18'), {'mass': 1, 'calcification': 1})\n"
        "save_classifier(model, sys.argv[1])\n"
    )
    check_run(python("-c", code, str(path)), "building the classifier")
    return path


def folder_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


# --- the parent: one measured command ---------------------------------------------------------------------


@dataclass
class Measured:
    command: str
    size: str
    images: int
    tokens: int
    data_mib: float  # the data that grows: the store written (extract) or read (train), the bundle (analyze)
    figures: dict[str, Any]


def measure(module: str, argv: list[str], report: Path, s: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``module`` in a fresh measuring child; (its figures, its JSON summary)."""
    stdout = check_run(python(__file__, CHILD, str(report), module, *argv), module, s.threads)
    return json.loads(report.read_text()), json.loads(stdout[stdout.index("{") :])


def run_extract(data: Path, out: Path, classifier: Path, s: Settings, size: str) -> tuple[Measured, Path]:
    argv = ["--data", str(data), "--classifier", str(classifier), "--out", str(out), "--split", "all"]
    argv += ["--frame-size", s.frame_size, "--tokens-per-image", "1.0", "--workers", "0"]
    argv += ["--images-per-shard", str(s.images_per_shard), "--device", s.device, "--no-progress"]
    figures, summary = measure("mammo_sae.extract", argv, out.with_suffix(".json"), s)
    store = Path(summary["store"])
    row = Measured(
        "extract",
        size,
        summary["images_in_store"],
        summary["tokens_in_store"],
        folder_mib(store),
        figures,
    )
    return row, store


def run_train(store: Path, out: Path, s: Settings, size: str, images: int) -> tuple[Measured, Path]:
    argv = ["--store", str(store), "--out", str(out), "--expansion", str(s.expansion)]
    argv += ["--batch-size", str(s.batch_size), "--epochs", str(s.epochs), "--lr", "1e-3", "--l1", "0"]
    argv += ["--buffer-tokens", str(s.buffer_tokens), "--resample-every", "0", "--log-every", "10"]
    argv += ["--device", s.device, "--no-progress"]
    figures, summary = measure("mammo_sae.train", argv, out.with_suffix(".json"), s)
    return Measured("train", size, images, summary["tokens"], folder_mib(store), figures), out


def run_analyze(data: Path, classifier: Path, sae: Path, out: Path, s: Settings, size: str) -> Measured:
    argv = ["--data", str(data), "--classifier", str(classifier), "--sae", str(sae), "--out", str(out)]
    argv += ["--split", "all", "--score-split", "all", "--workers", "0"]
    argv += ["--chunk-images", str(s.chunk_images), "--device", s.device, "--no-progress"]
    figures, summary = measure("mammo_sae.analyze", argv, out.with_suffix(".json"), s)
    manifest = json.loads((out / "manifest.json").read_text())
    tokens = summary["images"] * manifest["grid"][0] * manifest["grid"][1]
    return Measured("analyze", size, summary["images"], tokens, folder_mib(out), figures)


def run_all(root: Path, classifier: Path, s: Settings) -> dict[str, dict[str, Measured]]:
    """Every command at both sizes; the two sizes of a command run back to back (same machine load)."""
    sizes = {"1x": s.studies, f"{s.factor}x": s.factor * s.studies}
    data = {size: make_phantoms(root / f"phantoms-{size}", n, s) for size, n in sizes.items()}
    runs: dict[str, dict[str, Measured]] = {size: {} for size in sizes}
    stores, saes = {}, {}
    for size in sizes:
        runs[size]["extract"], stores[size] = run_extract(
            data[size], root / f"stores-{size}", classifier, s, size
        )
    for size in sizes:
        images = runs[size]["extract"].images
        runs[size]["train"], saes[size] = run_train(stores[size], root / f"sae-{size}", s, size, images)
    for size in sizes:  # one SAE for both sizes: the same codes per token
        runs[size]["analyze"] = run_analyze(
            data[size], classifier, saes["1x"], root / f"bundle-{size}", s, size
        )
    return runs


# --- the table --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    value: Callable[[Measured], float]
    decimals: int


def run_mib(m: Measured) -> float:
    """Peak RSS above the RSS after imports: the memory the command's run added."""
    return m.figures["peak_rss_mib"] - m.figures["after_import_mib"]


COLUMNS = (
    Column("images", lambda m: m.images, 0),
    Column("tokens", lambda m: m.tokens, 0),
    Column("data MiB", lambda m: m.data_mib, 1),
    Column("peak RSS MiB", lambda m: m.figures["peak_rss_mib"], 0),
    Column("run MiB", run_mib, 0),
    Column("anon MiB", lambda m: m.figures["peak_anon_mib"], 0),
    Column("wall s", lambda m: m.figures["wall_s"], 1),
    Column("CPU s", lambda m: m.figures["cpu_s"], 1),
    Column("us/token", lambda m: 1e6 * m.figures["wall_s"] / m.tokens, 1),
)
LABEL_WIDTH = 15


def cells(values: list[float], decimals: list[int]) -> str:
    return "".join(
        f"{v:>{max(len(c.name), 8) + 2}.{d}f}" for c, v, d in zip(COLUMNS, values, decimals, strict=True)
    )


def size_row(m: Measured) -> str:
    values = [c.value(m) for c in COLUMNS]
    return f"{m.command + ' ' + m.size:<{LABEL_WIDTH}}" + cells(values, [c.decimals for c in COLUMNS])


def ratio_row(small: Measured, large: Measured) -> str:
    values = [c.value(large) / c.value(small) if c.value(small) else float("nan") for c in COLUMNS]
    return f"{small.command + ' ratio':<{LABEL_WIDTH}}" + cells(values, [3] * len(COLUMNS))


def verdict(small: Measured, large: Measured) -> str:
    """One line per command: is peak RSS flat, the time ratios, the marginal cost per token (fixed costs such
    as loading the models cancel out)."""
    f1, f4 = small.figures, large.figures
    rss = f4["peak_rss_mib"] / f1["peak_rss_mib"]
    extra_tokens = large.tokens - small.tokens
    marginal_wall = 1e6 * (f4["wall_s"] - f1["wall_s"]) / extra_tokens
    marginal_cpu = 1e6 * (f4["cpu_s"] - f1["cpu_s"]) / extra_tokens
    flat = "flat" if abs(rss - 1) <= RSS_TOLERANCE else "NOT FLAT"
    return (
        f"{small.command:<8} peak RSS x{rss:.3f} ({flat}, limit +-{RSS_TOLERANCE:.0%}); run memory "
        f"{run_mib(large) - run_mib(small):+.1f} MiB while the data grew x{large.tokens / small.tokens:.2f} "
        f"({large.data_mib - small.data_mib:+.1f} MiB); time wall x{f4['wall_s'] / f1['wall_s']:.2f}, "
        f"CPU x{f4['cpu_s'] / f1['cpu_s']:.2f}; marginal {marginal_wall:.1f} us/token wall, "
        f"{marginal_cpu:.1f} us/token CPU"
    )


def print_table(runs: dict[str, dict[str, Measured]]) -> None:
    small_label, large_label = runs
    print(
        f"{'command size':<{LABEL_WIDTH}}" + "".join(f"{c.name:>{max(len(c.name), 8) + 2}}" for c in COLUMNS)
    )
    for command in COMMANDS:
        small, large = runs[small_label][command], runs[large_label][command]
        print(size_row(small))
        print(size_row(large))
        print(ratio_row(small, large))
    print()
    for command in COMMANDS:
        print(verdict(runs[small_label][command], runs[large_label][command]))
    for by_command in runs.values():
        for m in by_command.values():
            if m.figures.get("gpu_peak_mib") is not None:
                print(f"GPU peak {m.command} {m.size}: {m.figures['gpu_peak_mib']:.0f} MiB")


# --- main -------------------------------------------------------------------------------------------------


@contextmanager
def workspace(keep: str | None) -> Iterator[Path]:
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    with tempfile.TemporaryDirectory(prefix="mammo-sae-scale-") as tmp:
        yield Path(tmp)


def parse_args(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, help=f"studies of the 1x dataset (default {DEFAULT.studies})")
    parser.add_argument("--factor", type=int, help=f"size of the large run (default {DEFAULT.factor})")
    parser.add_argument("--epochs", type=int, help=f"SAE training epochs (default {DEFAULT.epochs})")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="where the models run (default cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per command (default 1: steady ratios on a shared machine; 0 = one per core)",
    )
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep its files (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of the script")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    overrides = {
        name: value
        for name in ("studies", "factor", "epochs", "device", "threads")
        if (value := getattr(args, name)) is not None
    }
    settings = dataclasses.replace(base, **overrides)
    if settings.studies < 1 or settings.factor < 2:
        parser.error("--studies must be >= 1 and --factor >= 2")
    return settings, args


def main(argv: list[str] | None = None) -> dict[str, dict[str, Measured]]:
    settings, args = parse_args(argv)
    started = time.perf_counter()
    print(
        f"mammo-sae scale benchmark: {settings.studies} and {settings.factor * settings.studies} studies "
        f"(4 images each) at {settings.image_size}, frame {settings.frame_size}, resnet18, {settings.device}, "
        f"{os.cpu_count()} CPUs, {settings.threads or 'default'} torch thread(s)\n"
        f"buffers: extract {settings.images_per_shard} images per shard, train {settings.buffer_tokens} tokens "
        f"(batch {settings.batch_size}, SAE x{settings.expansion}, {settings.epochs} epochs), analyze "
        f"{settings.chunk_images} images per chunk",
        flush=True,
    )
    with workspace(args.keep) as root:
        classifier = make_classifier(root / "classifier.safetensors")
        runs = run_all(root, classifier, settings)
        print_table(runs)
    print(f"total benchmark time {time.perf_counter() - started:.0f} s")
    return runs


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD]:
        sys.exit(run_child(sys.argv[2], sys.argv[3], sys.argv[4:]))
    main()
