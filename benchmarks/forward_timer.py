"""Wall time spent inside the networks' forward passes, by forward pre/post hooks.

The pipeline taps the VAE encoder block by block (``scripts.features``) and decodes through
``decode_stage_2_outputs``, so the VAE's own ``forward`` never runs: the hooks go on the modules
that are called (each encoder block, ``quant_conv_mu``, ``post_quant_conv``, the decoder), the
diffusion UNet and the two heads. Only the outermost hooked call is timed, so a hooked module
called inside another is never counted twice.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping

import torch

__all__ = ["ForwardTimer", "pipeline_networks"]


def pipeline_networks(pipeline) -> dict[str, list[torch.nn.Module]]:
    """The forward-called modules of a ``DiffuGTSPipeline``, grouped by network."""
    vae = pipeline.vae
    return {
        "VAE encoder": [*vae.encoder.blocks, vae.quant_conv_mu],
        "VAE decoder": [vae.post_quant_conv, vae.decoder],
        "diffusion UNet": [pipeline.unet],
        "AOVA head": [pipeline.heads.aova],
        "refiner": [pipeline.heads.refiner],
    }


class ForwardTimer:
    """Accumulates seconds per network group while attached; ``detach()`` removes the hooks.

    Args:
        groups: name -> modules whose forward passes count for that name.
        synchronize: wait for CUDA before reading the clock (asynchronous kernels).
    """

    def __init__(self, groups: Mapping[str, Iterable[torch.nn.Module]], synchronize: bool = False) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.synchronize = synchronize
        self._depth = 0
        self._start = 0.0
        self._handles = []
        for name, modules in groups.items():
            for module in modules:
                self._handles.append(module.register_forward_pre_hook(self._enter))
                self._handles.append(module.register_forward_hook(self._exit_for(name)))

    def _now(self) -> float:
        if self.synchronize:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _enter(self, module, args) -> None:
        if self._depth == 0:
            self._start = self._now()
        self._depth += 1

    def _exit_for(self, name: str):
        def exit_hook(module, args, output) -> None:
            self._depth -= 1
            if self._depth == 0:
                self.seconds[name] += self._now() - self._start

        return exit_hook

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
