"""`swavbench env [--profile cpu|gpu] [--json]`: the start-up checks, then what a run here would record.

Exit 0 when one Paddle build is installed and, unless `--profile cpu`, a visible NVIDIA GPU is usable by it;
exit 6 with the one-line reason otherwise (the same checks every command that runs paddle makes first).
Prints the project home, the Paddle build (version, git commit, CUDA, cuDNN), the NVIDIA driver, the host,
the device profile and the machine profile key that names this machine's baselines.
"""

from __future__ import annotations

import argparse
import json

from swavbench.errors import EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("env", help="check the Paddle install for this host and show what runs record")
    parser.add_argument("--profile", choices=("cpu", "gpu"), default=None,
                        help="device profile to check for (default: gpu if paddle can use one here, else cpu)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def environment(device: str | None) -> dict:
    """The checked environment: raises EnvironmentProblem (exit 6) when paddle does not fit this host."""
    from swavbench import __version__
    from swavbench.envcheck import check_environment, installed_paddle_dists
    from swavbench.machine import auto_device, build_record, machine_profile, nvidia_evidence
    from swavbench.paths import project_home, source_checkout

    check_environment(device)
    import paddle

    device = device or auto_device()
    return {
        "swavbench_version": __version__,
        "source_checkout": str(source_checkout() or "") or None,
        "home": str(project_home()),
        "paddle_dists": installed_paddle_dists(),
        **build_record(paddle),
        "cuda_build": bool(paddle.is_compiled_with_cuda()),
        "nvidia_visible": nvidia_evidence(),
        "device_profile": device,
        "machine_profile": machine_profile(threads=1, device=device),
    }


def run(args: argparse.Namespace) -> int:
    env = environment(args.profile)
    if args.json:
        print(json.dumps(env, indent=2))
        return EXIT_OK
    dists = ", ".join(f"{k} {v}" for k, v in env["paddle_dists"].items()) or "paddle (no package metadata)"
    cuda = f"CUDA {env['cuda_version']}, cuDNN {env['cudnn_version']}" if env["cuda_build"] else "CPU build"
    source = f" (source: {env['source_checkout']})" if env["source_checkout"] else ""
    lines = [
        f"swavbench {env['swavbench_version']}{source}",
        f"project home: {env['home']}",
        f"paddle: {dists}, commit {env['paddle_commit'] or '?'}, {cuda}",
        f"NVIDIA GPU: {env['nvidia_visible'] or 'none visible'}"
        + (f", driver {env['gpu_driver']}" if env["gpu_driver"] else ""),
        f"host: {env['hostname']}",
        f"device profile: {env['device_profile']}; machine profile (1 thread a rank): {env['machine_profile']}",
        "environment ok",
    ]
    print("\n".join(lines))
    return EXIT_OK
