"""Fine-tuning classification heads (and optionally the backbone) on a VinDr-layout dataset.

``python -m mammo_sae.finetune`` is the command; ``FinetuneConfig`` its knobs; ``finetune`` the run.
The recipe follows Mammo-CLIP's downstream training: class-weighted BCE (positive weight =
negatives / positives), AdamW, warm-up then cosine decay, augmentation, best checkpoint on validation.
"""
