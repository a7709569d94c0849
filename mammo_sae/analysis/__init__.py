"""Concept analysis of an SAE over a dataset split: the evidence a radiologist or researcher reads.

- ``codes``: every token's sparse latent codes (CSR, fp16) and per-image mean latents.
- ``scores``: class-wise mean activation per concept and class, and the rankings T_k(0), T_k(1).
- ``latent_stats`` / ``patches`` / ``peaks``: frequency, activation histograms, top-activating patches,
  where each latent peaks relative to ground-truth boxes.
- ``localisation``: latent maps upsampled and thresholded into boxes; pointing game, IoU, AP.
- ``interventions``: keep / suppress / scale latents with the exact linear shortcut; keep/suppress curves;
  per-case contributions. ``splice`` is the literal version (SAE hooked into the feature map).
- ``stream``: one chunk of images through backbone + SAE; ``tables`` / ``latent_table``: the bundle's tables
  as pure functions; ``checks``: degenerate inputs (a class absent, logits at float noise, a useless SAE).

Pure computation over arrays and iterators: the run that writes a bundle is ``mammo_sae.bundle.writing``.

docs/analysis.md explains the definitions; docs/bundle.md the output folder.
"""
