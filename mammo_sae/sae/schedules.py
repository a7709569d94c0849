"""The training schedules: learning rate (warm-up, constant, decay), sparsity-penalty warm-up and when
dead latents are resampled. Pure functions of the step or epoch, so a resumed run follows the same
schedule as one that was never interrupted.
"""

from __future__ import annotations

from mammo_sae.sae.config import TrainConfig


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


def penalty_at(step: int, coeff: float | None, warmup_steps: int) -> float | None:
    """The sparsity penalty's weight at step ``step``: a linear warm-up from 0 over ``warmup_steps``, then
    ``coeff`` (the SAE's own); None for an SAE without a penalty."""
    if coeff is None:
        return None
    if warmup_steps and step < warmup_steps:
        return coeff * (step + 1) / warmup_steps
    return coeff


def resample_due(epochs_done: int, config: TrainConfig) -> bool:
    """Whether dead latents are resampled after ``epochs_done`` epochs: every ``resample_every`` epochs,
    never after the last one (nothing would train the restarted latents)."""
    every = config.resample_every
    return bool(every) and epochs_done % every == 0 and epochs_done < config.epochs


def resample_window_warning(config: TrainConfig, steps_per_epoch: int, batch_size: int) -> str | None:
    """A warning when no latent can count as dead by the time resampling comes (the window is longer
    than the tokens between two resamplings); None when the settings fit."""
    period = config.resample_every * steps_per_epoch * batch_size
    if not config.resample_every or config.dead_window <= period:
        return None
    return (
        f"--dead-window {config.dead_window} is longer than the {period} tokens between resamplings "
        f"(--resample-every {config.resample_every} epochs): no latent can count as dead when resampling "
        "comes; lower --dead-window"
    )
