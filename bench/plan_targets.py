"""The reference laptop's targets as `/plan` answers them: every seed model at its default size on the `8gb-laptop`
preset with 32 GB of RAM, and the light ones with 16 GB. Prints the table docs/memory.md shows (tests check the
document holds this script's output); `--write` puts it there.

    python bench/plan_targets.py [--write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.catalog import Catalog  # noqa: E402
from pipelines.memory.job_plan import JobPlan, plan_job  # noqa: E402
from presets import load_presets  # noqa: E402

GB = 10**9
PRESET = "8gb-laptop"
TARGETS_32GB = (
    "flux1-dev", "flux1-schnell", "sd35-large", "hidream-i1-full", "cogview4-6b", "wan21-t2v-14b", "wan21-i2v-14b-480p",
    "wan21-vace-14b", "skyreels-v2-df-14b-540p", "hunyuanvideo-t2v", "framepack-i2v-hy", "ltx-video-0.9.7-distilled",
    "omnigen-v1", "ace-step-15-xl-turbo", "openaudio-s1-mini",
)
TARGETS_16GB = (
    "flux1-dev", "flux1-schnell", "sd35-medium", "sd35-large", "wan21-t2v-1.3b", "ltx-video-0.9.6-distilled", "omnigen-v1",
    "ace-step-15-xl-turbo", "openaudio-s1-mini",
)
BEGIN, END = "<!-- plan-targets:begin -->", "<!-- plan-targets:end -->"
DOC = ROOT / "docs" / "memory.md"


def target_plans() -> list[tuple[int, JobPlan]]:
    catalog, preset = Catalog(), load_presets()[PRESET]
    return [(ram, plan_job(catalog.spec(model), preset, ram * GB)) for ram, models in ((32, TARGETS_32GB), (16, TARGETS_16GB))
            for model in models]


def _big_parts(plan: JobPlan) -> str:
    big = [c for c in plan.components if c.ram_gb + c.gpu_gb + c.disk_gb_per_job >= 1]
    return "; ".join(f"{c.name}: {c.tier.split(',')[0]}, {c.storage}" for c in big)


def markdown() -> str:
    rows = [
        "| RAM | model | size | fits | peak RAM GB | peak VRAM GiB | streamed GB / step | disk GB / job | big parts: tier, storage |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for ram, plan in target_plans():
        size = "×".join(str(n) for n in (plan.width, plan.height, plan.frames) if n) or "default"
        fits = "yes" if plan.fits else "RAM yes, GPU no" if plan.ram_fits else "no"
        rows.append(f"| {ram} GB | {plan.model} | {size} | {fits} | {plan.peak_ram_gb:.1f} | {plan.peak_vram_gb:.2f} | "
                    f"{plan.streamed_gb_per_step:.1f} | {plan.disk_gb_per_job:.1f} | {_big_parts(plan)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the table in docs/memory.md")
    table = markdown()
    if parser.parse_args().write:
        text = DOC.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        DOC.write_text(text[:start] + "\n" + table + "\n" + text[end:])
    print(table)


if __name__ == "__main__":
    main()
