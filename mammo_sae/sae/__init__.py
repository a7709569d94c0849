"""Sparse autoencoders on backbone features: architectures registered with their config classes, a fast
training step, SAELens-layout files and the import of the published Mammo-SAE file. Research use only.

sae = create_sae("relu", 2048, 16384, l1_coeff=3e-5)      # or "topk" / "batchtopk" / "matryoshka" with k=64
x_hat, z = sae(x)                                        # x [..., d_in]; z [..., d_sae]
parts = sae.loss_and_grad(x)                             # sets every .grad; parts.total, .mse, .l0, ...
sae.before_optimizer_step(); optimizer.step(); sae.after_optimizer_step()
save_sae(sae, "runs/sae-b5", {"backbone": ..., "layer": ...}); sae = load_sae("runs/sae-b5", expect_d_in=2048)
register("mine", MySAE, MyConfig)                        # a new architecture: one module and this call
sae = import_mammosae("sparse_autoencoder_final.pt", "weights/mammo-sae")

docs/sae.md gives the formulas, the registry, the file format and the import of the published file.
"""

from mammo_sae.sae.arch_config import SAEConfig
from mammo_sae.sae.base import SparseAutoencoder
from mammo_sae.sae.errors import SAEError
from mammo_sae.sae.io import CONFIG_FILE, WEIGHTS_FILE, import_mammosae, load_sae, save_sae
from mammo_sae.sae.matryoshka import MatryoshkaSAE
from mammo_sae.sae.registry import ARCHITECTURES, create_sae, register
from mammo_sae.sae.topk import BatchTopKSAE

__all__ = [
    "ARCHITECTURES",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "BatchTopKSAE",
    "MatryoshkaSAE",
    "SAEConfig",
    "SAEError",
    "SparseAutoencoder",
    "create_sae",
    "import_mammosae",
    "load_sae",
    "register",
    "save_sae",
]
