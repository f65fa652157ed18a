#!/usr/bin/env python3
"""The compression study's tables and verdicts, from what `scripts/compression-study.sh` left.

Reads the report (`OUT/report.json`, written by `exporter report`), each student's training log
(`RUN/<name>/train_log.jsonl`) and, where present, the CPU seconds a sampler recorded per
training (`RUN/cpu-seconds.tsv`: unix time, pid, config, CPU seconds). Writes `OUT/study.md`
(tables: every row with its ratios to the teacher and its training; KD vs --no-kd at equal
updates; the issue's targets with the gap where missed) and `OUT/study.json` (the same numbers).

    python3 scripts/study-summary.py --run runs/study --out docs/compression-study-cpu
"""

import argparse
import json
import os
import re

TARGET_KEEP, TARGET_SPEED, TARGET_SIZE = 95.0, 3.0, 3.0
TARGET_KD_GAIN, TARGET_BIGRU_KEEP = 1.0, 80.0


def throughput(model, batch):
    for row in model["throughput"]:
        if row["batch"] == batch:
            return row["tokens_per_second"]
    raise SystemExit(f"{model['name']}: no throughput at batch {batch} in report.json")


def training(run, name, cpu):
    """Updates, dev BLEU per evaluation, wall and CPU minutes of a student's training."""
    # A trimmed or int8 row is the model it was made from, trained once.
    base = re.sub(r"(-trimmed)?(-int8)?$", "", name)
    log = os.path.join(run, base, "train_log.jsonl")
    if not os.path.exists(log):
        return None
    lines = [json.loads(line) for line in open(log)]
    evals = [(line["update"], line["dev_bleu"]) for line in lines if line.get("dev_bleu") is not None]
    cpu_s = None
    for config, seconds in cpu.items():
        if os.path.basename(config).startswith(base + ".") or os.path.basename(config).startswith(base + "-"):
            cpu_s = max(cpu_s or 0, seconds)
    return {
        "from": base,
        "updates": lines[-1]["update"],
        "wall_minutes": lines[-1]["elapsed_s"] / 60,
        "cpu_minutes": None if cpu_s is None else cpu_s / 60,
        "dev_bleu": evals,
    }


def cpu_seconds(run):
    path = os.path.join(run, "cpu-seconds.tsv")
    seconds = {}
    if os.path.exists(path):
        for line in open(path):
            _, _, config, cpu = line.rstrip("\n").split("\t")
            seconds[config] = max(seconds.get(config, 0), int(cpu))
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="the study's run folder (RUN)")
    parser.add_argument("--out", required=True, help="the report folder (OUT): report.json in, study.md out")
    args = parser.parse_args()
    report = json.load(open(os.path.join(args.out, "report.json")))
    models = {m["name"]: m for m in report["models"]}
    teacher = models[report["teacher"]]
    cpu = cpu_seconds(args.run)

    rows = []
    for m in report["models"]:
        row = {
            "name": m["name"],
            "precision": m["precision"],
            "parameters": m["parameters"],
            "mib": m["bytes"] / 2**20,
            "bleu": m["bleu"],
            "chrf": m["chrf"],
            "tps1": throughput(m, 1),
            "tps32": throughput(m, 32),
        }
        row["kept"] = 100 * m["bleu"] / teacher["bleu"]
        row["speed1"] = row["tps1"] / throughput(teacher, 1)
        row["speed32"] = row["tps32"] / throughput(teacher, 32)
        row["smaller"] = teacher["bytes"] / m["bytes"]
        row["training"] = None if m is teacher else training(args.run, m["name"], cpu)
        rows.append(row)

    out = []
    sentences = teacher["sentences"]
    out.append(f"Test split `{report['test']}`: {sentences} sentences, greedy; ONNX Runtime, "
               f"{report['threads']} thread(s) on {report['cores']} cores. BLEU `{teacher['bleu_signature']}`, "
               f"chrF `{teacher['chrf_signature']}`.\n")
    out.append("| model | precision | parameters | MiB | BLEU | chrF | tok/s @1 | tok/s @32 | BLEU kept % "
               "| speed-up @1 | speed-up @32 | × smaller | updates | CPU min | dev BLEU per evaluation |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        t = r["training"]
        if t is None:
            updates = cpu_min = curve = "—"
        else:
            updates = f"{t['updates']:,}"
            cpu_min = "—" if t["cpu_minutes"] is None else f"{t['cpu_minutes']:.0f}"
            curve = " → ".join(f"{b:.1f}" for _, b in t["dev_bleu"])
            if t["from"] != r["name"]:
                curve = f"(= {t['from']})"
        out.append(f"| {r['name']} | {r['precision']} | {r['parameters']:,} | {r['mib']:.1f} | {r['bleu']:.2f} "
                   f"| {r['chrf']:.2f} | {r['tps1']:,.0f} | {r['tps32']:,.0f} | {r['kept']:.1f} | {r['speed1']:.2f} "
                   f"| {r['speed32']:.2f} | {r['smaller']:.2f} | {updates} | {cpu_min} | {curve} |")

    # KD vs --no-kd at equal updates, per shape.
    out.append("\n**Word-level and sequence-level KD vs the same student with `--no-kd`** (same pruned "
               f"start, same updates; target: KD ≥ {TARGET_KD_GAIN:.0f} BLEU above its twin):\n")
    out.append("| student | BLEU | twin (--no-kd) | Δ BLEU | target met |")
    out.append("| --- | ---: | ---: | ---: | --- |")
    verdicts = {"kd_gain": []}
    by_name = {r["name"]: r for r in rows}
    for r in rows:
        shape = re.match(r"student-(\d+-\d+)-(kd|cache|seqkd)$", r["name"])
        if not shape or f"student-{shape.group(1)}-nokd" not in by_name:
            continue
        twin = by_name[f"student-{shape.group(1)}-nokd"]
        gain = r["bleu"] - twin["bleu"]
        met = gain >= TARGET_KD_GAIN
        verdicts["kd_gain"].append({"student": r["name"], "gain": gain, "met": met})
        out.append(f"| {r['name']} | {r['bleu']:.2f} | {twin['bleu']:.2f} | {gain:+.2f} | "
                   f"{'yes' if met else f'no (short by {TARGET_KD_GAIN - gain:.2f})'} |")

    # The best student: ≥ 3× faster at batch 32 and ≥ 3× smaller, the most BLEU kept.
    students = [r for r in rows if r["name"] != teacher["name"] and not r["name"].startswith("student-bigru")]
    fast_small = [r for r in students if r["speed32"] >= TARGET_SPEED and r["smaller"] >= TARGET_SIZE]
    best_kept = max(students, key=lambda r: r["kept"])
    out.append(f"\n**Targets** (read off this report):\n")
    if fast_small:
        best = max(fast_small, key=lambda r: r["kept"])
        met = best["kept"] >= TARGET_KEEP
        gap = "" if met else f" — missed by {TARGET_KEEP - best['kept']:.1f} points"
        out.append(f"- Best student at ≥ {TARGET_SPEED:.0f}× batch-32 speed and ≥ {TARGET_SIZE:.0f}× smaller: "
                   f"`{best['name']}`, {best['kept']:.1f}% of the teacher's BLEU ({best['speed32']:.2f}×, "
                   f"{best['smaller']:.2f}× smaller); target {TARGET_KEEP:.0f}%{gap}.")
        verdicts["best"] = {"student": best["name"], "kept": best["kept"], "met": met}
    else:
        fastest = max(students, key=lambda r: min(r["speed32"] / TARGET_SPEED, r["smaller"] / TARGET_SIZE))
        out.append(f"- No student is both ≥ {TARGET_SPEED:.0f}× faster at batch 32 and ≥ {TARGET_SIZE:.0f}× "
                   f"smaller; the closest, `{fastest['name']}`, is {fastest['speed32']:.2f}× and "
                   f"{fastest['smaller']:.2f}× smaller, keeping {fastest['kept']:.1f}%.")
        verdicts["best"] = {"student": None, "met": False}
    out.append(f"- Most BLEU kept by any student: `{best_kept['name']}`, {best_kept['kept']:.1f}% "
               f"({best_kept['speed32']:.2f}× at batch 32, {best_kept['smaller']:.2f}× smaller).")
    met = sum(v["met"] for v in verdicts["kd_gain"])
    out.append(f"- KD beats its `--no-kd` twin by ≥ {TARGET_KD_GAIN:.0f} BLEU: {met} of "
               f"{len(verdicts['kd_gain'])} students.")
    for r in rows:
        if r["name"].startswith("student-bigru"):
            ok = r["kept"] >= TARGET_BIGRU_KEEP
            gap = "" if ok else f" — missed by {TARGET_BIGRU_KEEP - r['kept']:.1f} points"
            out.append(f"- BiGRU keeps {r['kept']:.1f}% of the teacher's BLEU (target {TARGET_BIGRU_KEEP:.0f}%{gap}).")
            verdicts["bigru"] = {"kept": r["kept"], "met": ok}

    with open(os.path.join(args.out, "study.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    with open(os.path.join(args.out, "study.json"), "w") as f:
        json.dump({"rows": rows, "verdicts": verdicts}, f, indent=1)
    print("\n".join(out))


if __name__ == "__main__":
    main()
