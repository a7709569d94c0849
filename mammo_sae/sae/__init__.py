"""Sparse autoencoders on backbone features: architectures behind one interface, a fast training step,
SAELens-layout files and the import of the published Mammo-SAE file. Research use only.

sae = create_sae("relu", 2048, 16384, l1_coeff=3e-5)      # or "topk" / "batchtopk" with k=64
x_hat, z = sae(x)                                        # x [..., d_in]; z [..., d_sae]
parts = sae.loss_and_grad(x)                             # sets every .grad; parts.total, .mse, .l0, ...
sae.before_optimizer_step(); optimizer.step(); sae.after_optimizer_step()
save_sae(sae, "runs/sae-b5", {"backbone": ..., "layer": ...}); sae = load_sae("runs/sae-b5", expect_d_in=2048)
sae = import_mammosae("sparse_autoencoder_final.pt", "weights/mammo-sae")

docs/sae.md gives the formulas, the file format and the import of the published file.
"""

from mammo_sae.sae.base import (
    ARCHITECTURES,
    KERNELS,
    LossParts,
    SAEError,
    SparseAutoencoder,
    create_sae,
    register_architecture,
)
from mammo_sae.sae.io import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_mammosae_state,
    import_mammosae,
    load_sae,
    sae_from_mammosae_state,
    saelens_config,
    save_sae,
)
from mammo_sae.sae.relu import ReLUSAE
from mammo_sae.sae.topk import BatchTopKSAE, TopKSAE

__all__ = [
    "ARCHITECTURES",
    "CONFIG_FILE",
    "KERNELS",
    "WEIGHTS_FILE",
    "BatchTopKSAE",
    "LossParts",
    "ReLUSAE",
    "SAEError",
    "SparseAutoencoder",
    "TopKSAE",
    "check_mammosae_state",
    "create_sae",
    "import_mammosae",
    "load_sae",
    "register_architecture",
    "sae_from_mammosae_state",
    "saelens_config",
    "save_sae",
]
