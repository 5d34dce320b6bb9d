"""Video and image autoencoders."""

from sana_stream.vae.dc_ae import DCAE, DCAEConfig
from sana_stream.vae.wan import CausalState, WanVAE, WanVAEConfig
