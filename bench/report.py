#!/usr/bin/env python3
"""Turn bench/run.sh's results.tsv and meta.env into the figures table and the target
ratios: plain text on stdout, Markdown into the given file (stdlib only).

    report.py RESULTS_TSV META_ENV OUT_MD
"""

import csv
import sys

MIB = 1024 * 1024

# (label, numerator id, denominator id, field, target, explanation)
RATIOS = [
    ("PostgreSQL wall: arca / pipeline", "pg-arca", "pg-pipe", "wall", 0.9, "≤"),
    ("PostgreSQL wall: arca / restic --stdin", "pg-arca", "pg-restic", "wall", 0.6, "≤"),
    ("PostgreSQL stored size: arca / pipeline", "pg-arca", "pg-pipe", "stored", 1.0, "≤"),
    ("File tree wall: arca / restic", "tree-arca", "tree-restic", "wall", 0.6, "≤"),
    ("PostgreSQL restore wall: arca (S3) / pg_restore -j2 (local file)", "pgr-arca", "pgr-local", "wall", 1.2, "≤"),
    # Informational (no target).
    ("PostgreSQL wall: arca / pg_dump -Fc to local file", "pg-arca", "pg-dump", "wall", None, ""),
    ("File tree wall: arca / pipeline", "tree-arca", "tree-pipe", "wall", None, ""),
    ("File tree stored size: arca / pipeline", "tree-arca", "tree-pipe", "stored", None, ""),
    ("File tree stored size: arca / restic", "tree-arca", "tree-restic", "stored", None, ""),
    ("PostgreSQL restore wall: arca / aws|age|zstd|pg_restore", "pgr-arca", "pgr-pipe", "wall", None, ""),
    ("PostgreSQL restore wall: arca / restic dump|pg_restore", "pgr-arca", "pgr-restic", "wall", None, ""),
    ("File tree restore wall: arca / aws|age|zstd|tar", "treer-arca", "treer-pipe", "wall", None, ""),
    ("File tree restore wall: arca / restic restore", "treer-arca", "treer-restic", "wall", None, ""),
]
RSS_TARGET_MIB = 64


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    out = {}
    for r in rows:
        def num(k):
            try:
                return float(r[k])
            except (TypeError, ValueError):
                return 0.0
        out[r["id"]] = {
            "id": r["id"],
            "workload": r["workload"],
            "label": r["label"],
            "ok": r["rc"] == "0",
            "wall": num("wall_s"),
            "cpu": num("user_s") + num("sys_s"),
            "user": num("user_s"),
            "sys": num("sys_s"),
            "rss": num("maxrss_kib") / 1024,
            "pgcpu": num("pg_cpu_s"),
            "gcpu": num("garage_cpu_s"),
            "other": num("other_cpu_s"),
            "stored": num("stored_bytes"),
            "input": num("input_bytes"),
        }
    return out


def meta(path):
    m = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            m[k] = v
    return m


def table(runs):
    head = ["Run", "Wall s", "CPU s (user+sys)", "Peak RSS MiB", "Server CPU s (PG / Garage)",
            "Other load CPU s", "Stored MiB", "Stored / input", "Input MiB/s"]
    body = []
    for r in runs.values():
        status = "" if r["ok"] else " **FAILED**"
        body.append([
            f"{r['workload']}: {r['label']}{status}",
            f"{r['wall']:.1f}",
            f"{r['cpu']:.1f} ({r['user']:.1f}+{r['sys']:.1f})",
            f"{r['rss']:.0f}",
            f"{r['pgcpu']:.1f} / {r['gcpu']:.1f}",
            f"{r['other']:.1f}",
            f"{r['stored'] / MIB:.0f}",
            f"{r['stored'] / r['input']:.3f}" if r["input"] else "-",
            f"{r['input'] / MIB / r['wall']:.0f}" if r["wall"] else "-",
        ])
    return head, body


def ratios(runs):
    out = []
    for label, a, b, field, target, op in RATIOS:
        ra, rb = runs.get(a), runs.get(b)
        if not ra or not rb or not rb[field] or not (ra["ok"] and rb["ok"]):
            out.append([label, "-", f"{op} {target}" if target else "-", "not measured"])
            continue
        v = ra[field] / rb[field]
        verdict = "-" if target is None else ("met" if v <= target else "NOT met")
        out.append([label, f"{v:.2f}", f"{op} {target}" if target else "-", verdict])
    for verb in ("backup", "restore"):
        arca = [r for r in runs.values() if r["label"].startswith(f"arca {verb}") and r["ok"]]
        if arca:
            peak = max(r["rss"] for r in arca)
            which = ", ".join(f"{r['workload']} {r['rss']:.0f}" for r in arca)
            out.append([f"arca {verb} peak RSS, MiB ({which})", f"{peak:.0f}", f"≤ {RSS_TARGET_MIB}",
                        "met" if peak <= RSS_TARGET_MIB else "NOT met"])
    return ["Ratio", "Value", "Target", "Verdict"], out


def text_table(head, body):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def md_table(head, body):
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    rows += ["| " + " | ".join(str(c).replace("|", "\\|") for c in b) + " |" for b in body]
    return "\n".join(rows)


NOTES = [
    "Wall, CPU and peak RSS come from GNU time (`/usr/bin/time -f '%e %U %S %M'`). CPU counts the "
    "measured process and every child it waited for (arca's pg_dump, each stage of a pipeline).",
    "Peak RSS of a pipeline (`bash -c 'a | b | c'`) and of arca (which runs pg_dump) is that of the "
    "**largest single process**, not the sum: that is what getrusage(RUSAGE_CHILDREN) reports.",
    "Server CPU is what the PostgreSQL server (postmaster plus reaped backends) and the Garage S3 server "
    "used during the run, from /proc/<pid>/stat; it shares the same cores as the measured tools. "
    "Other load is the machine's busy CPU time (/proc/stat) minus the tool and both servers: "
    "anything else running at the same time (it should be near 0).",
    "Stored size: the total of `aws s3 ls --recursive --summarize` over the run's prefix (arca: "
    "artifact + manifest.json; restic: the whole repository, including its config, keys, index "
    "and snapshot), the local file for pg_dump -Fc. Input: arca's manifest `plainSize` "
    "(pg_dump -Fc -Z0 output for PostgreSQL; the tar stream for the tree).",
    "Each run writes to a fresh prefix (restic: a fresh repository, `init` not timed); "
    "all prefixes are deleted at the end.",
    "Restores go into a fresh database or folder from the snapshots the backup runs made; each is "
    "checked against the source (rows of the two big tables, number of files) and marked FAILED "
    "when it differs. The pg_restore baseline reads an uncompressed `pg_dump -Fc -Z0` file on local "
    "disk (dumped untimed); the streamed restores (pipeline, restic dump) cannot use parallel jobs.",
]


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    runs = load(sys.argv[1])
    m = meta(sys.argv[2])
    th, tb = table(runs)
    rh, rb = ratios(runs)
    mins, secs = divmod(int(m.get("duration", "0")), 60)
    print()
    print(text_table(th, tb))
    print()
    print(text_table(rh, rb))
    print()
    print("Peak RSS of a pipeline is its largest single process (getrusage), not the sum.")
    print(f"Run took {mins} min {secs} s (workload generation included when it happened).")
    info = [
        ("Date", m.get("date")),
        ("Machine", m.get("machine")),
        ("arca", m.get("arca")),
        ("pg_dump", f"{m.get('pg_dump')} (server: {m.get('server')})"),
        ("zstd", m.get("zstd")),
        ("age", m.get("age")),
        ("restic", m.get("restic")),
        ("aws", m.get("aws")),
        ("S3", m.get("s3")),
        ("Database", m.get("database")),
        ("File tree", m.get("tree")),
        ("Conditions", m.get("caches")),
        ("Run time", f"{mins} min {secs} s (until this report, workload generation included if it happened)"),
    ]
    md = ["# Arca backup and restore benchmark", ""]
    md += [f"- **{k}**: {v}" for k, v in info]
    md += ["", "## Figures", "", md_table(th, tb), "", "## Targets", "", md_table(rh, rb), "", "## Notes", ""]
    md += [f"- {n}" for n in NOTES]
    cores = int(m.get("cores", "1") or 1)
    busy = [r for r in runs.values() if r["wall"] and r["other"] > 0.1 * r["wall"] * cores]
    if busy:
        warn = ("WARNING: other load used more than 10 % of the machine during "
                + ", ".join(f"{r['id']} ({r['other']:.1f} s)" for r in busy)
                + "; those figures are disturbed, re-run on an idle machine.")
        print(warn)
        md += ["", f"**{warn}**"]
    with open(sys.argv[3], "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"written: {sys.argv[3]}")


if __name__ == "__main__":
    main()
