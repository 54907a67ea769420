#!/usr/bin/env python3
"""Deterministic file trees for bench/files.sh (and the 100,000-file memory
measurement in docs/BENCHMARKS.md). Same seed, same bytes.

  files_tree.py mixed DIR [--files 10000] [--mb 1000] [--seed 1]
      ~10,000 files of mixed sizes: most log-uniform 1 KiB-256 KiB, 0.5 % of
      them large (~11 MB each, about half the bytes). Content per file:
      ~45 % incompressible random, ~40 % text-like (random words: zstd gets
      ~2.5x), ~15 % duplicates (a whole copy of an earlier file, or for
      large files a copy with a 64 KiB edit in the middle).
  files_tree.py small DIR [--files 100000] [--size 1024] [--seed 1]
      N files of SIZE bytes, half random, half text-like, 1,000 per directory.
  files_tree.py change DIR --percent 1 --round R [--seed 1]
      Changes R-th round's 1 % of the regular files: 4 KiB (or the whole
      file when smaller) overwritten in place with new random bytes.
"""
import argparse
import math
import os
import random

WORDS = None


def words(rng):
    global WORDS
    if WORDS is None:
        r = random.Random(12345)
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        weights = [13, 9, 8, 8, 7, 7, 6, 6, 4, 4, 3, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]
        WORDS = ["".join(r.choices(letters, weights, k=r.randint(2, 10))) for _ in range(8000)]
    return WORDS


def text(rng, n):
    w = words(rng)
    out = []
    size = 0
    while size < n:
        line = " ".join(rng.choices(w, k=rng.randint(4, 16))) + "\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def content(rng, kind, n):
    return rng.randbytes(n) if kind == "random" else text(rng, n)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def mixed(a):
    rng = random.Random(a.seed)
    n_large = max(1, a.files // 200)
    n_small = a.files - n_large
    small_sizes = [int(math.exp(rng.uniform(math.log(1024), math.log(256 << 10)))) for _ in range(n_small)]
    budget = a.mb * 1_000_000 - sum(small_sizes)
    large_size = max(1 << 20, budget // n_large)
    written, small_done, large_done = [], [], []
    for i in range(a.files):
        large = i % 200 == 199 and len(large_done) < n_large
        d = f"d{i // 500:03d}/s{(i // 50) % 10}"
        path = os.path.join(a.dir, d, f"f{i:05d}.{'bin' if large else 'dat'}")
        roll = rng.random()
        if large:
            n = int(large_size * rng.uniform(0.7, 1.3))
            if roll < 0.2 and large_done:
                src = open(rng.choice(large_done), "rb").read()
                mid = len(src) // 2
                data = src[:mid] + rng.randbytes(64 << 10) + src[mid + (64 << 10):]
            else:
                data = content(rng, "random" if roll < 0.6 else "text", n)
            large_done.append(path)
        else:
            n = small_sizes[len(small_done)]
            if roll < 0.15 and small_done:
                data = open(rng.choice(small_done), "rb").read()
            else:
                data = content(rng, "random" if roll < 0.6 else "text", n)
            small_done.append(path)
        write(path, data)
        written.append(len(data))
    print(f"{len(written)} files, {sum(written) / 1e6:.0f} MB in {a.dir}")


def small(a):
    rng = random.Random(a.seed)
    for i in range(a.files):
        kind = "random" if i % 2 == 0 else "text"
        write(os.path.join(a.dir, f"d{i // 1000:03d}", f"f{i:06d}"), content(rng, kind, a.size))
    print(f"{a.files} files of {a.size} bytes in {a.dir}")


def change(a):
    files = []
    for root, dirs, names in os.walk(a.dir):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in sorted(names))
    rng = random.Random(a.seed * 1000 + a.round)
    picked = rng.sample(files, max(1, len(files) * a.percent // 100))
    for p in picked:
        size = os.path.getsize(p)
        n = min(size, 4096)
        at = rng.randrange(0, size - n + 1) if size > n else 0
        with open(p, "r+b") as f:
            f.seek(at)
            f.write(rng.randbytes(n))
    print(f"changed {len(picked)} of {len(files)} files")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["mixed", "small", "change"])
    p.add_argument("dir")
    p.add_argument("--files", type=int)
    p.add_argument("--mb", type=int, default=1000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--percent", type=int, default=1)
    p.add_argument("--round", type=int, default=1)
    a = p.parse_args()
    if a.what == "mixed":
        a.files = a.files or 10000
        mixed(a)
    elif a.what == "small":
        a.files = a.files or 100000
        small(a)
    else:
        change(a)


if __name__ == "__main__":
    main()
