"""The SAE training loop: shuffled store batches -> loss_and_grad -> Adam, with the Mammo-SAE recipe's
resampling, optional input normalisation (folded into the saved weights), checkpoints that resume to the
same weights, NaN stops, metrics, and data-parallel training under torchrun.

    summary = train(TrainConfig(store=..., out=...))          # one process
    torchrun --nproc_per_node 2 -m mammo_sae.train ...        # ranks split every global batch

docs/sae-training.md describes the recipe, every knob, the files in ``out`` and the metrics.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from mammo_sae import __version__
from mammo_sae.core.atomic import atomic_write_text
from mammo_sae.core.distributed import DistContext, barrier, device_for
from mammo_sae.core.errors import TrainError
from mammo_sae.core.weightfiles import load_checked, save_checked
from mammo_sae.sae import create_sae, save_sae
from mammo_sae.sae.config import RESUMABLE_CHANGES, TrainConfig, config_toml, flag
from mammo_sae.sae.io import CHECKPOINT_FILE, TRAIN_CONFIG_FILE
from mammo_sae.sae.metrics import (
    LatentActivity,
    batch_sums,
    decoder_norms,
    evaluate_sae,
    summarise_sums,
    z_counts_of,
)
from mammo_sae.sae.resample import make_generator, resample_dead_latents, sample_tokens
from mammo_sae.store import StoreError, StoreReader, open_store, streaming_stats

METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
CONFIG_FILE = TRAIN_CONFIG_FILE
CHECKPOINT_FORMAT = "mammo-sae-train-checkpoint"
CHECKPOINT_VERSION = 1


# --- schedules ------------------------------------------------------------------------------------------


def lr_at(step: int, config: TrainConfig, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, constant, optional linear decay
    to 0 over the final ``decay_fraction`` of ``total_steps``."""
    factor = 1.0
    if config.warmup_steps and step < config.warmup_steps:
        factor = (step + 1) / config.warmup_steps
    decay_steps = round(config.decay_fraction * total_steps)
    if decay_steps and step >= total_steps - decay_steps:
        factor = min(factor, max(total_steps - step, 0) / decay_steps)
    return config.lr * factor


def l1_at(step: int, config: TrainConfig) -> float:
    """L1 coefficient of step ``step``: linear warm-up from 0 over ``l1_warmup_steps``, then ``l1``."""
    if config.l1_warmup_steps and step < config.l1_warmup_steps:
        return config.l1 * (step + 1) / config.l1_warmup_steps
    return config.l1


# --- pieces -----------------------------------------------------------------------------------------------


def make_adam(params: list[torch.nn.Parameter], config: TrainConfig) -> tuple[torch.optim.Adam, str]:
    """Adam without weight decay; the fused kernel where this torch supports it, else foreach."""
    options = {"lr": config.lr, "betas": (config.adam_beta1, config.adam_beta2), "eps": config.adam_eps}
    try:
        return torch.optim.Adam(params, fused=True, **options), "fused"
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, foreach=True, **options), "foreach"


def normalisation_stats(reader: StoreReader, shards: list[int], batch_size: int) -> dict[str, Any]:
    """Mean of the training tokens and the scale that gives the centred tokens a mean norm of sqrt(d):
    ``scale = sqrt(d) / E||x - mean||`` (two sequential passes over ``shards``)."""
    stats = streaming_stats(reader, batch_size=batch_size, shards=shards)
    total, count = 0.0, 0
    for batch in reader.iter_batches(batch_size, shards=shards, dtype=np.float64):
        total += float(np.linalg.norm(batch - stats.mean, axis=1).sum())
        count += len(batch)
    mean_norm_centred = total / count
    if not mean_norm_centred > 0 or not math.isfinite(mean_norm_centred):
        raise TrainError(
            f"the training tokens of {reader.path} have a mean centred norm of {mean_norm_centred}: "
            "--normalize center-scale needs tokens that are finite and not all equal"
        )
    return {
        "kind": "center-scale",
        "mean": torch.from_numpy(stats.mean),
        "scale": math.sqrt(reader.d) / mean_norm_centred,
        "mean_norm_centred": mean_norm_centred,
        "mean_norm_raw": stats.mean_norm,
        "n_tokens": stats.n,
    }


def slice_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share of a global batch of ``n`` tokens (sizes differ by at most one)."""
    return rank * n // world_size, (rank + 1) * n // world_size


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the metrics lines up to ``last_step`` (a resumed run rewrites the steps after its checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if int(record.get("step", 0)) <= last_step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- the trainer ------------------------------------------------------------------------------------------


class Trainer:
    """One training run (``fit()``); every rank of a torchrun job builds the same Trainer."""

    def __init__(self, config: TrainConfig, context: DistContext | None = None) -> None:
        self.config = config.validate()
        self.context = context or DistContext()
        self.device = device_for(self.context, config.device)
        self.out = Path(config.out)
        self.is_main = self.context.is_main
        self.reader = open_store(config.store)
        self.d = self.reader.d
        self.d_sae = self.d * config.expansion
        self._check_request()
        self.train_shards, self.val_shards = self._split()

        checkpoint = self._read_checkpoint() if config.resume else None
        if checkpoint is None:
            self._refuse_existing_run()
        self.norm = (
            checkpoint["normalisation"]
            if checkpoint is not None
            else normalisation_stats(self.reader, self.train_shards, config.batch_size)
            if config.normalize == "center-scale"
            else None
        )
        if self.norm is not None:
            self._norm_mean = self.norm["mean"].to(self.device, torch.float32)
            self._norm_scale = float(self.norm["scale"])

        torch.manual_seed(config.seed)
        self.sae = create_sae(
            config.arch,
            self.d,
            self.d_sae,
            k=config.k,
            aux_k=config.aux_k,
            aux_coeff=config.aux_coeff,
            l1_coeff=config.l1,
            seed=config.seed,
        ).to(self.device)
        self.sae.train()
        self.params = [self.sae.W_enc, self.sae.b_enc, self.sae.W_dec, self.sae.b_dec]
        self.optimizer, self.adam_kind = make_adam(self.params, config)
        self.stream = self.reader.stream(
            config.batch_size,
            shuffle=True,
            seed=config.seed,
            buffer_tokens=config.buffer_tokens,
            drop_last=True,
            shards=self.train_shards,
            dtype=None if self.device.type == "cuda" else np.float32,  # fp16 -> fp32 on the GPU
            as_torch=True,
        )
        self.steps_per_epoch = len(self.stream)
        if self.steps_per_epoch == 0:
            raise TrainError(
                f"the training shards hold {self.stream.n_tokens} tokens, fewer than one batch of "
                f"{config.batch_size}; lower --batch-size"
            )
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.activity = LatentActivity(self.d_sae, config.dead_window, self.device)
        period = config.resample_every * self.steps_per_epoch * config.batch_size
        if config.arch == "relu" and config.resample_every and config.dead_window > period and self.is_main:
            print(
                f"warning: --dead-window {config.dead_window} is longer than the {period} tokens between "
                f"resamplings (--resample-every {config.resample_every} epochs): no latent can count as dead "
                "when resampling comes; lower --dead-window",
                file=sys.stderr,
            )
        self.step = 0
        self.tokens = 0
        self.resamples: list[dict[str, Any]] = []
        self.last_checkpoint_step: int | None = None
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            self._init_b_dec()

    # --- setup ------------------------------------------------------------------------------------------

    def _check_request(self) -> None:
        config = self.config
        if config.arch in ("topk", "batchtopk") and config.k > self.d_sae:
            raise TrainError(
                f"--k {config.k} is larger than the number of latents d x expansion = {self.d_sae}"
            )
        if config.batch_size < self.context.world_size:
            raise TrainError(
                f"--batch-size {config.batch_size} is the global batch and must be at least the number of "
                f"processes ({self.context.world_size})"
            )
        if not self.reader.n_tokens:
            raise TrainError(f"activation store {self.reader.path} holds no tokens")

    def _split(self) -> tuple[list[int], list[int]]:
        fraction = self.config.validation_fraction
        if fraction == 0:
            return list(range(self.reader.n_shards)), []
        try:
            return self.reader.split_tokens(fraction, seed=self.config.seed)
        except StoreError as error:
            raise TrainError(
                f"{error}; or pass --validation-fraction 0 to train on every token (eval.json then reports "
                "the training tokens)"
            ) from None

    def _refuse_existing_run(self) -> None:
        taken = [name for name in (CHECKPOINT_FILE, METRICS_FILE, EVAL_FILE) if (self.out / name).exists()]
        if taken and not self.config.resume:
            raise TrainError(
                f"{self.out} already holds a training run ({', '.join(taken)}); pass --resume to continue it, "
                "or choose another --out"
            )

    def _init_b_dec(self) -> None:
        method = self.config.b_dec_init
        if method == "zeros":
            return
        sample = sample_tokens(
            self.reader, self.train_shards, self.config.resample_inputs, [self.config.seed, 3]
        )
        x = self._prepare(torch.from_numpy(sample))
        self.sae.init_b_dec(x, method=method.replace("-", "_"))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Raw store features -> the SAE's training space (float32 on the device, normalised if asked)."""
        x = x.to(self.device, non_blocking=True).float()
        if self.norm is not None:
            x = (x - self._norm_mean) * self._norm_scale
        return x

    # --- checkpoints ------------------------------------------------------------------------------------

    def _read_checkpoint(self) -> dict[str, Any] | None:
        path = self.out / CHECKPOINT_FILE
        if not path.is_file():
            if self.is_main and (self.out / METRICS_FILE).exists():
                truncate_metrics(self.out / METRICS_FILE, 0)
            return None
        state = load_checked(path, repair=self._checkpoint_repair(path), error=TrainError)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise TrainError(f"{path} is not a mammo-sae training checkpoint")
        if state.get("version") != CHECKPOINT_VERSION:
            raise TrainError(
                f"{path} has checkpoint version {state.get('version')}; this trainer reads {CHECKPOINT_VERSION}"
            )
        if state["store_id"] != self.reader.store_id or state["d"] != self.d:
            raise TrainError(
                f"{path} was trained on store {state['store_id']} (d={state['d']}), but --store {self.reader.path} "
                f"is store {self.reader.store_id} (d={self.d}); resume with the original store or choose another --out"
            )
        saved, now = state["config"], self.config.to_dict()
        different = {key for key in now if key not in RESUMABLE_CHANGES and saved.get(key) != now[key]}
        if different:
            detail = ", ".join(
                f"{flag(key)}: saved {saved.get(key)!r}, now {now[key]!r}" for key in sorted(different)
            )
            raise TrainError(
                f"--resume with other settings than the checkpoint in {self.out} ({detail}); rerun with the saved "
                f"settings ({CONFIG_FILE} holds them) or choose another --out"
            )
        if state["split"] != {"train": self.train_shards, "validation": self.val_shards}:
            raise TrainError(
                f"{path} used another train/validation split of the store; resume with the original settings"
            )
        return state

    def _checkpoint_repair(self, path: Path) -> str:
        return (
            f"delete it (rm -f {path}) and run python -m mammo_sae.train --config {self.out / CONFIG_FILE} "
            "--resume (training restarts from step 0)"
        )

    def _restore(self, state: dict[str, Any]) -> None:
        self.sae.load_state_dict(state["sae"])
        self.optimizer.load_state_dict(state["optimizer"])
        try:
            self.stream.load_state_dict(state["stream"])
        except StoreError as error:
            raise TrainError(f"the checkpoint's stream position does not fit this store: {error}") from None
        self.activity.load_state_dict(state["activity"])
        self.step, self.tokens = int(state["step"]), int(state["tokens"])
        self.resamples = list(state["resamples"])
        self.last_checkpoint_step = self.step
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        if self.is_main:
            truncate_metrics(self.out / METRICS_FILE, self.step)

    def save_checkpoint(self) -> None:
        """Write checkpoint.pt atomically (rank 0); the previous one stays until the new one is complete."""
        self._check_weights("before writing a checkpoint")
        if self.is_main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "version": CHECKPOINT_VERSION,
                "package_version": __version__,
                "config": self.config.to_dict(),
                "store_id": self.reader.store_id,
                "d": self.d,
                "d_sae": self.d_sae,
                "split": {"train": self.train_shards, "validation": self.val_shards},
                "step": self.step,
                "tokens": self.tokens,
                "epoch": self.stream.epoch,
                "stream": self.stream.state_dict(),
                "sae": {key: value.detach().cpu() for key, value in self.sae.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "activity": self.activity.state_dict(),
                "normalisation": self.norm,
                "resamples": self.resamples,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                },
                "world_size": self.context.world_size,
            }
            save_checked(state, self.out / CHECKPOINT_FILE)
        self.last_checkpoint_step = self.step

    # --- one step -------------------------------------------------------------------------------------

    def train_step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a global batch (this rank uses its slice); returns the summed statistics
        of the whole global batch (see metrics.batch_sums). ``loss_and_grad`` overwrites every .grad."""
        config, world = self.config, self.context.world_size
        lo, hi = slice_bounds(len(batch), self.context.rank, world)
        x = self._prepare(batch[lo:hi])
        lr = lr_at(self.step, config, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if config.arch == "relu":
            parts = self.sae.loss_and_grad(x, l1_coeff=l1_at(self.step, config))
        else:
            parts = self.sae.loss_and_grad(x, dead_mask=self.activity.dead_mask())
        sums = batch_sums(x, parts)
        if self.context.active:
            share = (hi - lo) / len(batch)  # each rank's gradient is a mean over its slice
            for param in self.params:
                param.grad.mul_(share)
                dist.all_reduce(param.grad)
            dist.all_reduce(sums)
        n = len(batch)
        loss = float(sums[1]) / n
        if not math.isfinite(loss):
            self._diverged(f"the loss is {loss}", batch)
        self.sae.before_optimizer_step()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        self.optimizer.step()
        self.sae.after_optimizer_step()
        self.activity.update(z_counts_of(sums, self.d), n)
        self.step += 1
        self.tokens += n
        return sums

    def _check_weights(self, when: str) -> None:
        bad = [name for name, value in self.sae.state_dict().items() if not torch.isfinite(value).all()]
        if bad:
            self._diverged(f"the weights {', '.join(bad)} hold NaN or inf ({when})", None)

    def _diverged(self, what: str, batch: torch.Tensor | None) -> None:
        kept = (
            f"the last good checkpoint ({self.out / CHECKPOINT_FILE}, step {self.last_checkpoint_step}) is kept"
            if self.last_checkpoint_step is not None
            else "no checkpoint had been written yet"
        )
        if batch is not None and not torch.isfinite(batch).all():
            raise TrainError(
                f"training stopped at step {self.step + 1} (epoch {self.stream.epoch}): {what} because the batch "
                f"read from {self.reader.path} holds NaN or inf features; repair or re-extract the store ({kept})"
            )
        raise TrainError(
            f"training diverged at step {self.step + 1} (epoch {self.stream.epoch}): {what}. Try a lower --lr "
            f"(now {self.config.lr}), --grad-clip 1.0, or --normalize center-scale; {kept} (continue with --resume "
            "and the same settings, or start again in another --out)"
        )

    # --- resampling -------------------------------------------------------------------------------------

    def resample(self) -> dict[str, Any]:
        """Resample the latents that are dead now (relu); identical on every rank, broadcast from rank 0."""
        round_number = len(self.resamples)
        dead = torch.nonzero(self.activity.dead_mask()).flatten()
        sample = sample_tokens(
            self.reader, self.train_shards, self.config.resample_inputs, [self.config.seed, 5, round_number]
        )
        report = resample_dead_latents(
            self.sae,
            self.optimizer,
            dead,
            self._prepare(torch.from_numpy(sample)),
            generator=make_generator(self.config.seed, round_number),
            batch_size=self.config.batch_size,
        )
        if self.context.active:
            with torch.no_grad():
                for param in self.params:
                    dist.broadcast(param.data, src=0)
        self.activity.revive(dead)
        report.update({"step": self.step, "epoch": self.stream.epoch})
        self.resamples.append(report)
        return report

    # --- logging ----------------------------------------------------------------------------------------

    def metrics_record(self, sums: torch.Tensor, seconds: float, tokens: int) -> dict[str, Any]:
        summary = summarise_sums(sums, self.d)
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": self.stream.epoch + self.stream.batch / self.steps_per_epoch,
            "tokens": self.tokens,
            "lr": lr_at(self.step - 1, self.config, self.total_steps),
            "l1_coeff": l1_at(self.step - 1, self.config) if self.config.arch == "relu" else None,
            **summary,
            "dead_fraction": self.activity.dead_fraction(),
            "dense_fraction": self.activity.dense_fraction(self.config.dense_threshold),
            **decoder_norms(self.sae.W_dec),
            "tokens_per_s": tokens / seconds if seconds > 0 else None,
        }
        return {
            key: _json_number(value) if isinstance(value, float) else value for key, value in record.items()
        }

    def _append_metrics(self, record: dict[str, Any]) -> None:
        if self.is_main:
            with open(self.out / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    # --- the run ----------------------------------------------------------------------------------------

    def _finished(self) -> bool:
        return self.stream.epoch >= self.config.epochs or self.step >= self.total_steps

    def fit(self) -> dict[str, Any]:
        """Train to the configured epochs / steps, then evaluate and save; returns the JSON summary."""
        config = self.config
        started = time.perf_counter()
        start_step, start_tokens = self.step, self.tokens
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for leftover in self.out.glob(f".{CHECKPOINT_FILE}.*.tmp"):  # a write cut by a kill
                leftover.unlink(missing_ok=True)
            atomic_write_text(self.out / CONFIG_FILE, config_toml(config))
        barrier(self.context)
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            unit="step",
            disable=not (config.progress and self.is_main),
            desc="train sae",
            dynamic_ncols=True,
        )
        window_time, window_tokens = time.perf_counter(), self.tokens
        with bar:
            while not self._finished():
                completed = True
                for batch in self.stream:
                    sums = self.train_step(batch)
                    bar.update(1)
                    if self.step % config.log_every == 0 or self.step == self.total_steps:
                        now = time.perf_counter()
                        self._check_weights(f"after step {self.step}")
                        record = self.metrics_record(sums, now - window_time, self.tokens - window_tokens)
                        window_time, window_tokens = now, self.tokens
                        self._append_metrics(record)
                        bar.set_postfix(
                            loss=f"{record['loss']:.4g}",
                            L0=f"{record['l0']:.1f}",
                            tok_s=f"{record['tokens_per_s'] or 0:.3g}",
                        )
                    if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                        self.save_checkpoint()
                    if self.step >= self.total_steps and self.stream.batch < self.steps_per_epoch:
                        completed = False  # stopped mid-epoch (--max-steps)
                        break
                if completed:
                    self._end_of_epoch()
        if self.last_checkpoint_step != self.step:
            self.save_checkpoint()
        result = self.finish()
        seconds = time.perf_counter() - started
        result.update(
            {
                "seconds": round(seconds, 3),
                "tokens_this_run": self.tokens - start_tokens,
                "steps_this_run": self.step - start_step,
                "tokens_per_second": round((self.tokens - start_tokens) / seconds, 1)
                if seconds > 0
                else None,
            }
        )
        return result

    def _end_of_epoch(self) -> None:
        epoch = self.stream.epoch  # epochs completed
        every = self.config.resample_every
        if self.config.arch == "relu" and every and epoch % every == 0 and epoch < self.config.epochs:
            report = self.resample()
            if self.is_main and self.config.progress:
                tqdm.write(f"epoch {epoch}: resampled {report['resampled']} dead latents")
        self.save_checkpoint()

    def export_sae(self) -> Any:
        """A copy of the SAE that takes raw store features (the normalisation folded into its weights)."""
        sae = copy.deepcopy(self.sae).eval()
        if self.norm is not None:
            sae.fold_normalisation(self._norm_mean, self._norm_scale)
        return sae

    def evaluate(self, sae: Any) -> dict[str, Any]:
        """Metrics of the exported (raw-space) SAE over every validation token (training tokens if none)."""
        shards = self.val_shards or self.train_shards
        batches = self.reader.iter_batches(self.config.batch_size, shards=shards, as_torch=True)
        result = evaluate_sae(sae, batches, device=self.device, dense_threshold=self.config.dense_threshold)
        result["on"] = "validation" if self.val_shards else "training (no validation shards)"
        result["shards"] = shards
        return result

    def finish(self) -> dict[str, Any]:
        """Evaluate and save (rank 0); every rank returns the summary."""
        self._check_weights("at the end of training")
        summary: dict[str, Any] = {}
        if self.is_main:
            sae = self.export_sae()
            evaluation = self.evaluate(sae)
            evaluation = {k: _json_number(v) if isinstance(v, float) else v for k, v in evaluation.items()}
            metadata = self.metadata(evaluation)
            save_sae(sae, self.out, metadata)
            atomic_write_text(self.out / EVAL_FILE, json.dumps(evaluation, indent=1) + "\n")
            summary = {
                "out": str(self.out),
                "store": str(self.reader.path),
                "store_id": self.reader.store_id,
                "arch": self.config.arch,
                "d_in": self.d,
                "d_sae": self.d_sae,
                "steps": self.step,
                "epochs": self.stream.epoch,
                "tokens": self.tokens,
                "resamples": len(self.resamples),
                "optimizer": f"adam ({self.adam_kind})",
                "processes": self.context.world_size,
                "eval": evaluation,
            }
        barrier(self.context)
        return summary

    def metadata(self, evaluation: dict[str, Any]) -> dict[str, Any]:
        identity = self.reader.identity
        norm = None
        if self.norm is not None:
            norm = {k: v for k, v in self.norm.items() if k != "mean"} | {"folded_into_weights": True}
        return {
            "backbone": identity.get("backbone"),
            "layer": identity.get("layer"),
            "store_id": self.reader.store_id,
            "store_identity": identity,
            "train_config": self.config.to_dict(),
            "normalisation": norm,
            "training": {
                "steps": self.step,
                "epochs": self.stream.epoch,
                "tokens": self.tokens,
                "resamples": [{k: v for k, v in r.items()} for r in self.resamples],
                "processes": self.context.world_size,
                "package_version": __version__,
            },
            "eval": evaluation,
        }


def train(config: TrainConfig, context: DistContext | None = None) -> dict[str, Any]:
    """Run (or resume) a training run and return its JSON summary (empty on ranks other than 0)."""
    return Trainer(config, context).fit()
