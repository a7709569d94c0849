"""The SAE training loop: shuffled store batches -> loss_and_grad -> Adam, with the Mammo-SAE recipe's
resampling, optional input normalisation (folded into the saved weights), checkpoints that resume to the
same weights, NaN stops, metrics, and data-parallel training under torchrun.

    summary = train(TrainConfig(store=..., out=...))          # one process
    torchrun --nproc_per_node 2 -m mammo_sae.train ...        # ranks split every global batch

The loop knows no architecture by name: it asks the SAE (``sparsity_coeff``, ``uses_dead_mask``,
``resamples_dead_latents``, the optimiser-step hooks). Schedules live in schedules.py, checkpoint files
in checkpoint.py, the train / validation split in validation.py. docs/sae-training.md describes the
recipe, every knob, the files in ``out`` and the metrics.
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
from mammo_sae.core.hashing import strict_json_text
from mammo_sae.sae.arch_config import SAEConfig
from mammo_sae.sae.base import SparseAutoencoder
from mammo_sae.sae.checkpoint import (
    read_checkpoint,
    remove_partial_writes,
    restore_training_state,
    training_state,
    truncate_metrics,
    write_checkpoint,
)
from mammo_sae.sae.config import TrainConfig, config_toml
from mammo_sae.sae.errors import SAEError
from mammo_sae.sae.io import CHECKPOINT_FILE, TRAIN_CONFIG_FILE, save_sae
from mammo_sae.sae.metrics import (
    LatentActivity,
    batch_sums,
    decoder_norms,
    evaluate_sae,
    summarise_sums,
    z_counts_of,
)
from mammo_sae.sae.normalisation import normalisation_stats
from mammo_sae.sae.registry import build_sae, lookup
from mammo_sae.sae.resample import make_generator, resample_dead_latents, sample_tokens
from mammo_sae.sae.schedules import lr_at, penalty_at, resample_due, resample_window_warning
from mammo_sae.sae.validation import choose_split
from mammo_sae.store import open_store

METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
CONFIG_FILE = TRAIN_CONFIG_FILE


def make_adam(params: list[torch.nn.Parameter], config: TrainConfig) -> tuple[torch.optim.Adam, str]:
    """Adam without weight decay; the fused kernel where this torch supports it, else foreach."""
    options = {"lr": config.lr, "betas": (config.adam_beta1, config.adam_beta2), "eps": config.adam_eps}
    try:
        return torch.optim.Adam(params, fused=True, **options), "fused"
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.Adam(params, foreach=True, **options), "foreach"


def slice_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share of a global batch of ``n`` tokens (sizes differ by at most one)."""
    return rank * n // world_size, (rank + 1) * n // world_size


def plain_json(value: Any) -> Any:
    """``value`` as strict JSON gives it back: NaN and infinities become None."""
    return json.loads(strict_json_text(value, indent=None))


class Trainer:
    """One training run (``fit()``); every rank of a torchrun job builds the same Trainer."""

    def __init__(self, config: TrainConfig, context: DistContext | None = None) -> None:
        self.config = config.validate()
        self.context = context or DistContext()
        self.device = device_for(self.context, config.device)
        self.out = Path(config.out)
        self.is_main = self.context.is_main
        self.warnings: list[str] = []
        self.reader = open_store(config.store)
        self.d = self.reader.d
        self.d_sae = self.d * config.expansion
        self.sae_cfg = self._check_request()
        self.split = choose_split(self.reader, config.validation_fraction, config.seed)
        if self.split.warning:
            self._warn(self.split.warning)
        self.batch_size = self._batch_size()

        checkpoint = self._read_checkpoint() if config.resume else None
        if checkpoint is None:
            self._replace_previous_run()
        self.norm = (
            checkpoint["normalisation"]
            if checkpoint is not None
            else normalisation_stats(
                self.reader, self.split.train_shards, self.batch_size, self.split.train_tokens
            )
            if config.normalize == "center-scale"
            else None
        )
        if self.norm is not None:
            self._norm_mean = self.norm["mean"].to(self.device, torch.float32)
            self._norm_scale = float(self.norm["scale"])

        torch.manual_seed(config.seed)
        self.sae: SparseAutoencoder = build_sae(config.arch, self.sae_cfg).to(self.device)
        self.sae.train()
        self.params = list(self.sae.parameters())
        self.optimizer, self.adam_kind = make_adam(self.params, config)
        self.stream = self.reader.stream(
            self.batch_size,
            shuffle=True,
            seed=config.seed,
            buffer_tokens=config.buffer_tokens,
            drop_last=True,
            shards=self.split.train_shards,
            tokens=self.split.train_tokens,
            dtype=None if self.device.type == "cuda" else np.float32,  # fp16 -> fp32 on the GPU
            as_torch=True,
        )
        self.steps_per_epoch = len(self.stream)
        assert self.steps_per_epoch >= 1, (self.stream.n_tokens, self.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.activity = LatentActivity(self.d_sae, config.dead_window, self.device)
        if self.sae.resamples_dead_latents:
            warning = resample_window_warning(config, self.steps_per_epoch, self.batch_size)
            if warning:
                self._warn(warning)
        self.step = 0
        self.tokens = 0
        self.resamples: list[dict[str, Any]] = []
        self.last_checkpoint_step: int | None = None
        if checkpoint is not None:
            self._restore(checkpoint)
        else:
            self._init_b_dec()

    # --- setup ------------------------------------------------------------------------------------------

    def _warn(self, text: str) -> None:
        """Record a warning for eval.json and the SAE's metadata, and say it on stderr (rank 0)."""
        self.warnings.append(text)
        if self.is_main:
            print(f"warning: {text}", file=sys.stderr)

    def _check_request(self) -> SAEConfig:
        """The SAE config the knobs ask for; TrainError for settings that can not work."""
        config = self.config
        try:
            sae_cfg = lookup(config.arch).cfg_cls.from_knobs(self.d, self.d_sae, config.to_dict())
        except SAEError as error:
            raise TrainError(
                f"--arch {config.arch} with these settings: {error} (d_sae = d x --expansion = "
                f"{self.d} x {config.expansion}); change the settings named"
            ) from None
        if config.batch_size < self.context.world_size:
            raise TrainError(
                f"--batch-size {config.batch_size} is the global batch and must be at least the number of "
                f"processes ({self.context.world_size})"
            )
        if not self.reader.n_tokens:
            raise TrainError(f"activation store {self.reader.path} holds no tokens")
        return sae_cfg

    def _batch_size(self) -> int:
        """The global batch: ``--batch-size``, or every training token when there are fewer (one step per
        epoch, with a warning: a store of a few images still trains)."""
        split, config = self.split, self.config
        if split.train_tokens is not None:
            n_train = len(split.train_tokens)
        else:
            n_train = int(sum(int(self.reader.shard_token_counts[k]) for k in split.train_shards))
        if n_train >= config.batch_size:
            return config.batch_size
        if n_train < self.context.world_size:
            raise TrainError(
                f"the training tokens of {self.reader.path} ({n_train}) are fewer than the processes "
                f"({self.context.world_size}); extract more images"
            )
        self._warn(
            f"the {n_train} training tokens are fewer than one batch of --batch-size {config.batch_size}: "
            f"each step uses all {n_train} (one step per epoch); extract more images for the recipe's batch"
        )
        return n_train

    def _replace_previous_run(self) -> None:
        """--no-resume starts from scratch: the run in --out (checkpoint, metrics, evaluation) is replaced."""
        if self.config.resume or not self.is_main:
            return
        for name in (CHECKPOINT_FILE, METRICS_FILE, EVAL_FILE):
            (self.out / name).unlink(missing_ok=True)

    def _init_b_dec(self) -> None:
        method = self.config.b_dec_init
        if method == "zeros":
            return
        sample_nd = sample_tokens(
            self.reader,
            self.split.train_shards,
            self.config.resample_inputs,
            [self.config.seed, 3],
            tokens=self.split.train_tokens,
        )
        self.sae.init_b_dec(self._prepare(torch.from_numpy(sample_nd)), method=method.replace("-", "_"))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Raw store features [B, d] -> the SAE's training space (float32 on the device, normalised if asked)."""
        assert x.dim() == 2 and x.shape[1] == self.d, tuple(x.shape)
        x_bd = x.to(self.device, non_blocking=True).float()
        if self.norm is not None:
            x_bd = (x_bd - self._norm_mean) * self._norm_scale
        return x_bd

    # --- checkpoints ------------------------------------------------------------------------------------

    def _read_checkpoint(self) -> dict[str, Any] | None:
        state = read_checkpoint(
            self.out,
            store_id=self.reader.store_id,
            store_path=self.reader.path,
            d=self.d,
            config=self.config.to_dict(),
            split=self.split.checkpoint_record(),
        )
        if state is None and self.is_main and (self.out / METRICS_FILE).exists():
            truncate_metrics(self.out / METRICS_FILE, 0)
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        restore_training_state(self, state)
        self.last_checkpoint_step = self.step
        if self.is_main:
            truncate_metrics(self.out / METRICS_FILE, self.step)

    def save_checkpoint(self) -> None:
        """Write checkpoint.pt atomically (rank 0); the previous one stays until the new one is complete."""
        self._check_weights("before writing a checkpoint")
        if self.is_main:
            write_checkpoint(self.out, training_state(self))
        self.last_checkpoint_step = self.step

    # --- one step -------------------------------------------------------------------------------------

    def train_step(self, batch: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a global batch [B, d] (this rank uses its slice); returns the summed
        statistics of the whole global batch (see metrics.batch_sums). ``loss_and_grad`` overwrites every
        .grad."""
        config, world = self.config, self.context.world_size
        lo, hi = slice_bounds(len(batch), self.context.rank, world)
        x_bd = self._prepare(batch[lo:hi])
        lr = lr_at(self.step, config, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        parts = self.sae.loss_and_grad(
            x_bd,
            dead_mask=self.activity.dead_mask() if self.sae.uses_dead_mask else None,
            sparsity_coeff=penalty_at(self.step, self.sae.sparsity_coeff, config.l1_warmup_steps),
        )
        sums = batch_sums(x_bd, parts)
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
        """Resample the latents that are dead now; identical on every rank, broadcast from rank 0."""
        round_number = len(self.resamples)
        dead = torch.nonzero(self.activity.dead_mask()).flatten()
        sample_nd = sample_tokens(
            self.reader,
            self.split.train_shards,
            self.config.resample_inputs,
            [self.config.seed, 5, round_number],
            tokens=self.split.train_tokens,
        )
        report = resample_dead_latents(
            self.sae,
            self.optimizer,
            dead,
            self._prepare(torch.from_numpy(sample_nd)),
            generator=make_generator(self.config.seed, round_number),
            batch_size=self.batch_size,
        )
        if self.context.active:
            with torch.no_grad():
                for param in self.params:
                    dist.broadcast(param.data, src=0)
        self.activity.revive(dead)
        report.update({"step": self.step, "epoch": self.stream.epoch})
        self.resamples.append(plain_json(report))
        return report

    # --- logging ----------------------------------------------------------------------------------------

    def metrics_record(self, sums: torch.Tensor, seconds: float, tokens: int) -> dict[str, Any]:
        summary = summarise_sums(sums, self.d)
        return {
            "step": self.step,
            "epoch": self.stream.epoch + self.stream.batch / self.steps_per_epoch,
            "tokens": self.tokens,
            "lr": lr_at(self.step - 1, self.config, self.total_steps),
            "l1_coeff": penalty_at(self.step - 1, self.sae.sparsity_coeff, self.config.l1_warmup_steps),
            **summary,
            "dead_fraction": self.activity.dead_fraction(),
            "dense_fraction": self.activity.dense_fraction(self.config.dense_threshold),
            **decoder_norms(self.sae.W_dec),
            "tokens_per_s": tokens / seconds if seconds > 0 else None,
        }

    def _append_metrics(self, record: dict[str, Any]) -> None:
        if self.is_main:
            with open(self.out / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(strict_json_text(record, indent=None) + "\n")

    # --- the run ----------------------------------------------------------------------------------------

    def finished(self) -> bool:
        return self.stream.epoch >= self.config.epochs or self.step >= self.total_steps

    def fit(self) -> dict[str, Any]:
        """Train to the configured epochs / steps, then evaluate and save; returns the JSON summary."""
        self.begin()
        with self.progress_bar("train sae") as bar:
            while not self.finished():
                completed = True
                for batch in self.stream:
                    self.after_step(self.train_step(batch), bar)
                    if self.stopped_mid_epoch():
                        completed = False
                        break
                if completed:
                    self.end_of_epoch()
        return self.complete()

    # --- the steps of fit (a sweep drives several trainers through them on the same batches) ------------

    def begin(self) -> None:
        """Start (or resume) the run: the output folder, its config file, the clocks."""
        self._started = time.perf_counter()
        self._start_step, self._start_tokens = self.step, self.tokens
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_partial_writes(self.out)
            atomic_write_text(self.out / CONFIG_FILE, config_toml(self.config))
        barrier(self.context)
        self._window_time, self._window_tokens = time.perf_counter(), self.tokens

    def progress_bar(self, desc: str) -> tqdm:
        return tqdm(
            total=self.total_steps,
            initial=self.step,
            unit="step",
            disable=not (self.config.progress and self.is_main),
            desc=desc,
            dynamic_ncols=True,
        )

    def after_step(self, sums: torch.Tensor, bar: tqdm | None) -> None:
        """What follows an optimiser step: the progress bar, the metrics line, the checkpoint."""
        config = self.config
        if bar is not None:
            bar.update(1)
        if self.step % config.log_every == 0 or self.step == self.total_steps:
            now = time.perf_counter()
            self._check_weights(f"after step {self.step}")
            record = plain_json(
                self.metrics_record(sums, now - self._window_time, self.tokens - self._window_tokens)
            )
            self._window_time, self._window_tokens = now, self.tokens
            self._append_metrics(record)
            if bar is not None:
                bar.set_postfix(
                    loss=f"{record['loss']:.4g}", L0=f"{record['l0']:.1f}",
                    tok_s=f"{record['tokens_per_s'] or 0:.3g}",
                )  # fmt: skip
        if config.checkpoint_every and self.step % config.checkpoint_every == 0:
            self.save_checkpoint()

    def stopped_mid_epoch(self) -> bool:
        """Whether the last step was the run's last (--max-steps) before its epoch ended."""
        return self.step >= self.total_steps and self.stream.batch < self.steps_per_epoch

    def complete(self) -> dict[str, Any]:
        """The last checkpoint, the evaluation and the saved SAE; the summary with this run's timings."""
        if self.last_checkpoint_step != self.step:
            self.save_checkpoint()
        result = self.finish()
        seconds = time.perf_counter() - self._started
        result.update(
            {
                "seconds": round(seconds, 3),
                "tokens_this_run": self.tokens - self._start_tokens,
                "steps_this_run": self.step - self._start_step,
                "tokens_per_second": round((self.tokens - self._start_tokens) / seconds, 1)
                if seconds > 0
                else None,
            }
        )
        return result

    def end_of_epoch(self) -> None:
        epoch = self.stream.epoch  # epochs completed
        if self.sae.resamples_dead_latents and resample_due(epoch, self.config):
            report = self.resample()
            if self.is_main and self.config.progress:
                tqdm.write(f"epoch {epoch}: resampled {report['resampled']} dead latents")
        self.save_checkpoint()

    def export_sae(self) -> SparseAutoencoder:
        """A copy of the SAE that takes raw store features (the normalisation folded into its weights)."""
        sae = copy.deepcopy(self.sae).eval()
        if self.norm is not None:
            sae.fold_normalisation(self._norm_mean, self._norm_scale)
        return sae

    def evaluate(self, sae: SparseAutoencoder) -> dict[str, Any]:
        """Metrics of the exported (raw-space) SAE over every validation token (the training tokens when
        the split holds none out), with the split and every warning of the run."""
        split = self.split
        held_out = split.kind != "none"
        shards = split.val_shards if held_out else split.train_shards
        tokens = split.val_tokens if held_out else split.train_tokens
        batches = self.reader.iter_batches(self.batch_size, shards=shards, tokens=tokens, as_torch=True)
        result = evaluate_sae(sae, batches, device=self.device, dense_threshold=self.config.dense_threshold)
        result["on"] = "validation" if held_out else "training"
        result["shards"] = shards
        result["validation"] = split.eval_record(self.reader)
        result["warnings"] = list(self.warnings)
        return plain_json(result)

    def finish(self) -> dict[str, Any]:
        """Evaluate and save (rank 0); every rank returns the summary."""
        self._check_weights("at the end of training")
        summary: dict[str, Any] = {}
        if self.is_main:
            sae = self.export_sae()
            evaluation = self.evaluate(sae)
            save_sae(sae, self.out, self.metadata(evaluation))
            atomic_write_text(self.out / EVAL_FILE, strict_json_text(evaluation, indent=1) + "\n")
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
        return plain_json(
            {
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
                    "batch_size": self.batch_size,
                    "resamples": self.resamples,
                    "processes": self.context.world_size,
                    "package_version": __version__,
                },
                "eval": evaluation,
            }
        )


def train(config: TrainConfig, context: DistContext | None = None) -> dict[str, Any]:
    """Run (or resume) a training run and return its JSON summary (empty on ranks other than 0)."""
    return Trainer(config, context).fit()
