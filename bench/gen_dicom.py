#!/usr/bin/env python3
"""Generate a DICOM-like file tree for the Arca benchmark (stdlib only).

    gen_dicom.py OUT_DIR N_FILES TOTAL_MB [SEED]

Layout: OUT_DIR/PAT<n>/STU<n>/SER<n>/IM<n>.dcm, a few series per study and a few
dozen images per series, like an Orthanc or PACS export. Each file is a DICOM Part 10
file: a 128-byte zero preamble, "DICM", a small explicit-VR-little-endian data set
(meta group, modality, fake patient/study/series UIDs, image geometry) and a 16-bit
PixelData element. The pixels look like a CT/MR slice as far as a compressor can tell:
a dark background border (compresses to nothing), a smooth body whose high byte varies
slowly (compresses well), and 6 bits of noise per pixel in the low byte (does not
compress). zstd -3 shrinks the tree to roughly 35-40 %; no two files share content, so
de-duplication has nothing to find (as with real images).

The tree is written to OUT_DIR.tmp and renamed to OUT_DIR at the end, so an interrupted
run never leaves a half tree that looks complete.
"""

import os
import random
import shutil
import struct
import sys

# Noise mask: keep 6 random bits of the low byte.
NOISE_TABLE = bytes(b & 0x3F for b in range(256))


def element(group, elem, vr, value):
    """One explicit-VR little-endian data element, value padded to even length."""
    if isinstance(value, str):
        value = value.encode("ascii")
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def header(uids, modality, rows, cols, instance):
    """Preamble, magic and every element before PixelData."""
    study_uid, series_uid, patient = uids
    sop_uid = f"{series_uid}.{instance}"
    meta_body = (
        element(0x0002, 0x0001, b"OB", b"\0\1")
        + element(0x0002, 0x0002, b"UI", "1.2.840.10008.5.1.4.1.1.2")
        + element(0x0002, 0x0003, b"UI", sop_uid)
        + element(0x0002, 0x0010, b"UI", "1.2.840.10008.1.2.1")
        + element(0x0002, 0x0012, b"UI", "1.2.826.0.1.3680043.9.7777.1")
    )
    meta = element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta_body))) + meta_body
    body = (
        element(0x0008, 0x0016, b"UI", "1.2.840.10008.5.1.4.1.1.2")
        + element(0x0008, 0x0018, b"UI", sop_uid)
        + element(0x0008, 0x0060, b"CS", modality)
        + element(0x0010, 0x0010, b"PN", f"BENCH^PATIENT{patient}")
        + element(0x0010, 0x0020, b"LO", f"PID{patient:06d}")
        + element(0x0020, 0x000D, b"UI", study_uid)
        + element(0x0020, 0x000E, b"UI", series_uid)
        + element(0x0020, 0x0013, b"IS", str(instance))
        + element(0x0028, 0x0002, b"US", struct.pack("<H", 1))
        + element(0x0028, 0x0004, b"CS", "MONOCHROME2")
        + element(0x0028, 0x0010, b"US", struct.pack("<H", rows))
        + element(0x0028, 0x0011, b"US", struct.pack("<H", cols))
        + element(0x0028, 0x0100, b"US", struct.pack("<H", 16))
        + element(0x0028, 0x0101, b"US", struct.pack("<H", 12))
        + element(0x0028, 0x0102, b"US", struct.pack("<H", 11))
        + element(0x0028, 0x0103, b"US", struct.pack("<H", 0))
    )
    return b"\0" * 128 + b"DICM" + meta + body


def pixels(rng, rows, cols):
    """rows x cols 16-bit little-endian pixels: border, smooth body, noisy low byte."""
    n = rows * cols
    low = rng.randbytes(n).translate(NOISE_TABLE)
    # High byte: one smooth row profile (an ellipse-ish body) shifted per slice.
    base = rng.randrange(2, 12)
    profile = bytes(
        0 if abs(c - cols / 2) > cols * 0.42 else base + int(3 * (1 - ((c - cols / 2) / (cols * 0.42)) ** 2))
        for c in range(cols)
    )
    high = bytearray(profile * rows)
    out = bytearray(2 * n)
    out[0::2] = low
    out[1::2] = high
    # Air above and below the body: exactly zero, as in a real slice.
    border = int(rows * rng.uniform(0.1, 0.2)) * cols * 2
    out[:border] = bytes(border)
    out[len(out) - border:] = bytes(border)
    return bytes(out)


def plan(n_files, rng):
    """Yield (patient, study, series, instance) for n_files images."""
    made = patient = 0
    while made < n_files:
        patient += 1
        for study in range(1, rng.randint(1, 3) + 1):
            for series in range(1, rng.randint(1, 4) + 1):
                for inst in range(1, rng.randint(20, 120) + 1):
                    if made == n_files:
                        return
                    made += 1
                    yield patient, study, series, inst


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    out_dir, n_files, total_mb = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) == 5 else 20240601)
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    total = int(total_mb * 1024 * 1024)
    avg = total // n_files
    cols = 512
    written = 0
    uids = {}
    for i, (pat, stu, ser, inst) in enumerate(plan(n_files, rng)):
        # Size of this image: around the average (CT-like and MR-like slices mixed);
        # the last file takes what is left so the tree hits the requested total.
        remaining_files = n_files - i
        if remaining_files == 1:
            want = max(total - written, 4096)
        else:
            want = int(avg * rng.uniform(0.5, 1.5))
        rows = max(8, want // (2 * cols))
        key = (pat, stu, ser)
        if key not in uids:
            root = f"1.2.826.0.1.3680043.9.7777.{pat}.{stu}"
            uids[key] = (root, f"{root}.{ser}", pat)
        modality = "CT" if (pat + ser) % 3 else "MR"
        d = os.path.join(tmp, f"PAT{pat:05d}", f"STU{stu:02d}", f"SER{ser:02d}")
        os.makedirs(d, exist_ok=True)
        px = pixels(rng, rows, cols)
        data = header(uids[key], modality, rows, cols, inst) + element(0x7FE0, 0x0010, b"OW", px)
        with open(os.path.join(d, f"IM{inst:05d}.dcm"), "wb") as f:
            f.write(data)
        written += len(data)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    print(f"{n_files} files, {written / 1048576:.0f} MiB in {out_dir}")


if __name__ == "__main__":
    main()
