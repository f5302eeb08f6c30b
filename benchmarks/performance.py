"""Per-volume wall time per stage, time inside forward passes and peak memory, one fresh process each.

    .venv/bin/python -m benchmarks.performance --image IMG --modality CT --prompt "liver tumor" \
        --label "128^3 CT" --size ct128 --json OUT.json [--profile mini|maisi] [--inpainting direct] \
        [--save-maps all]

The volume goes through the bundle's own evaluator (``scripts.inference.segment_cases``: read, segment,
write the NIfTI outputs: the mask, plus the maps of ``--save-maps``, as the bundle's ``save_maps``),
so "end to end" is what a bundle user waits for per case once the model is loaded. Peak memory is
the process's peak RSS (``ru_maxrss``), which includes the interpreter,
torch and the loaded networks; on CUDA, ``torch.cuda.max_memory_allocated`` as well.
:func:`measure` runs this in a subprocess so every volume starts from a fresh peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from .bundle_eval import ROOT, _offline_env

sys.path.insert(0, str(ROOT / "bundle"))

__all__ = ["measure", "resized_volume"]


def resized_volume(source: Path, shape: tuple[int, int, int], output: Path) -> Path:
    """``source`` resampled to ``shape`` over the same field of view, written as NIfTI (cached)."""
    if output.is_file():
        return output
    import nibabel as nib
    import numpy as np
    import torch
    from monai.transforms import Resize
    from nibabel.spatialimages import SpatialImage

    image = cast(SpatialImage, nib.load(str(source)))
    data = torch.as_tensor(np.asarray(image.dataobj, dtype=np.float32))[None]
    resized = Resize(spatial_size=shape, mode="trilinear")(data)[0].numpy().astype(np.float32)
    affine = image.affine.copy()
    affine[:3, :3] = affine[:3, :3] * (np.array(image.shape[:3]) / np.array(shape))[None, :]
    output.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(resized, affine), str(output))
    return output


def measure(
    image: Path,
    *,
    modality: str,
    prompt: str,
    label: str,
    size: str,
    work_dir: Path,
    profile: str = "mini",
    inpainting: str = "latent",
    device: str = "cpu",
    patch: int | None = None,
    save_maps: str = "none",
    reuse_weights: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run :func:`_measure_here` in a fresh interpreter and return its measurement.

    ``reuse_weights``: return an earlier measurement of the same volume and settings made with
    these weights (name -> sha256) instead of measuring again.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    name = f"{size}_{profile}_{inpainting}" + (f"_patch{patch}" if patch else "") + ("" if save_maps == "none" else f"_maps-{save_maps.replace(',', '-')}")
    result = work_dir / f"{name}.json"
    if reuse_weights and result.is_file():
        earlier = json.loads(result.read_text())
        provenance = " ".join(earlier.get("weights", {}).values())
        if earlier.get("image") == str(image) and earlier.get("save_maps") == save_maps and all(digest in provenance for digest in reuse_weights.values()):
            print(f"[performance] reusing {result}", flush=True)
            return earlier
    command = [
        sys.executable,
        "-m",
        "benchmarks.performance",
        "--image",
        str(image),
        "--modality",
        modality,
        "--prompt",
        prompt,
        "--label",
        label,
        "--size",
        size,
        "--json",
        str(result),
        "--profile",
        profile,
        "--inpainting",
        inpainting,
        "--device",
        device,
        *(["--patch-size", str(patch)] if patch else []),
        "--save-maps",
        save_maps,
    ]
    print(f"[performance] {label}, {profile}, {inpainting}, maps written: {save_maps}" + (f", {patch}^3 patches" if patch else ""), flush=True)
    with open(work_dir / f"{name}.log", "w", encoding="utf-8") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_offline_env(), check=True)
    return json.loads(result.read_text())


def _rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:  # psutil is optional: the peak (ru_maxrss) is enough for the targets
        return None
    return psutil.Process().memory_info().rss / 2**20


def _measure_here(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from monai.transforms import LoadImage

    from benchmarks.forward_timer import ForwardTimer, pipeline_networks
    from scripts.cases import Case
    from scripts.foundation import get_profile
    from scripts.inference import DiffuGTSInferer, pipeline_maps, segment_cases
    from scripts.pipeline import PipelineConfig, build_pipeline
    from scripts.preprocessing import Modality, VolumeGeometry, as_volume

    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    models = ROOT / "bundle" / "models" / args.profile
    start = time.perf_counter()
    # maisi: no official weights here; random networks time the same as trained ones.
    profile = get_profile(args.profile)
    pipeline = build_pipeline(
        profile,
        weights_dir=models if models.is_dir() else None,
        device=device,
        config=PipelineConfig(
            inpainting=args.inpainting,
            progress=False,
            patch_size=(args.patch_size,) * 3 if args.patch_size else None,
            maps=pipeline_maps(args.save_maps),
        ),
    )
    startup = time.perf_counter() - start
    rss_after_build = _rss_mb()
    timer = ForwardTimer(pipeline_networks(pipeline), synchronize=on_cuda)
    # One prompt: one AOVA pass per sliding-window patch, one decoder pass per inpainted patch.
    patches: list[int] = []
    decodes: list[int] = []
    pipeline.heads.aova.register_forward_hook(lambda *_: patches.append(1))
    pipeline.vae.decoder.register_forward_hook(lambda *_: decodes.append(1))
    segment_seconds: list[float] = []
    segment_cpu_seconds: list[float] = []
    segment = pipeline.segment

    def timed_segment(*a, **k):
        begin, begin_cpu = time.perf_counter(), time.process_time()
        output = segment(*a, **k)
        if on_cuda:
            torch.cuda.synchronize()
        segment_seconds.append(time.perf_counter() - begin)
        segment_cpu_seconds.append(time.process_time() - begin_cpu)
        return output

    # The evaluator calls it per case; only the wall time is added. (The ignore: a method replaced on this instance only.)
    pipeline.segment = timed_segment  # type: ignore[method-assign]
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    modality = Modality.parse(args.modality)
    case = Case(Path(args.image).name.split(".")[0], Path(args.image), (args.prompt,), modality)
    with tempfile.TemporaryDirectory() as outputs:
        report = segment_cases(DiffuGTSInferer.of(pipeline), [case], outputs, save_maps=args.save_maps)[0]
    timer.detach()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20 if on_cuda else None
    # The working grid as the pipeline builds it (after the peak is read: this allocates).
    volume = as_volume(LoadImage(image_only=True)(args.image))
    grid = list(VolumeGeometry(working_spacing=pipeline.working_spacing(modality), divisor=profile.divisor)(volume).shape[1:])
    stages = dict(report["stage_seconds"])
    assert pipeline.config.patch_size is not None  # the validated config fills it in
    return {
        "label": args.label,
        "size": args.size,
        "image": args.image,
        "profile": args.profile,
        "device": str(device),
        "inpainting": args.inpainting,
        "save_maps": args.save_maps,
        "num_steps": pipeline.config.num_steps,
        "patch_size": list(pipeline.config.patch_size),
        "shape": list(volume.shape[1:]),
        "spacing_mm": [float(s) for s in volume.pixdim.tolist()],
        "working_shape": grid,
        "patches": len(patches),
        "inpainted_patches": len(decodes),
        "tumor_volume_ml": report["prompts"][0]["tumor_volume_ml"],
        "startup_seconds": startup,
        "end_to_end_seconds": stages.pop("total"),
        "segment_seconds": segment_seconds[0],
        # CPU seconds of all threads: on a shared machine, wall time alone mixes in the other jobs.
        "segment_cpu_seconds": segment_cpu_seconds[0],
        "load_average_1min": os.getloadavg()[0],
        "stage_seconds": stages,
        "forward_seconds": dict(timer.seconds),
        "peak_rss_mb": peak_rss_mb,
        "rss_after_build_mb": rss_after_build,
        "cuda_max_memory_mb": cuda_peak_mb,
        "weights": pipeline.weights,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--modality", default="CT")
    parser.add_argument("--prompt", default="liver tumor")
    parser.add_argument("--label", default="volume")
    parser.add_argument("--size", default="volume", help="a short key: ct128, mr512, ct256")
    parser.add_argument("--profile", default="mini")
    parser.add_argument("--inpainting", default="latent", choices=["latent", "direct"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--patch-size", type=int, default=None, help="cubic sliding-window patch (default: the profile's)")
    parser.add_argument("--save-maps", default="none", help="maps written besides the mask: none, all, or names (the bundle's save_maps)")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    measurement = _measure_here(args)
    args.json.write_text(json.dumps(measurement, indent=2))
    print(json.dumps(measurement, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
