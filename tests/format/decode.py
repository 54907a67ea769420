#!/usr/bin/env python3
"""An independent decoder for lifeboat's storage format v1, written from
docs/FORMAT.md alone (it shares no code with lifeboat).

usage: decode.py KEYFILE DEST_DIR BACKUP_ID OUT_DIR
Checks the manifest MAC, then decodes every object into OUT_DIR/<part>.
Exits non-zero, naming the problem, on anything the document does not allow.
"""
import base64, hashlib, hmac, json, os, re, sys, zlib
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
import zstandard

KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
B64_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")  # 32 bytes, canonical
MAC_HEX = re.compile(rb"[0-9a-f]{64}")


class FormatError(Exception):
    pass


def need(ok, problem):
    if not ok:
        raise FormatError(problem)


def load_keys(path):
    """§2: lines end with LF (CR LF too); fields and padding are spaces and tabs."""
    keys = {}
    text = open(path, "rb").read().decode("utf-8")
    for n, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r").strip(" \t")
        if not line or line.startswith("#"):
            continue
        fields = [f for f in re.split(r"[ \t]+", line) if f]
        need(len(fields) == 3 and fields[0] == "LIFEBOAT-KEY-1", f"key file line {n}: not a key line")
        _, kid, b64 = fields
        need(KEY_ID.fullmatch(kid), f"key file line {n}: bad key id")
        need(B64_KEY.fullmatch(b64), f"key file line {n}: not base64 of 32 bytes")
        need(kid not in keys, f"key file: key id {kid!r} twice")
        keys[kid] = base64.b64decode(b64, validate=True)
    need(keys, "key file holds no key")
    return keys


def unwrap(keys, kid, wrapped, aad):
    need(kid in keys, f"key id {kid!r} is not in the key file")
    need(len(wrapped) == 60, "wrapped key is not 60 bytes")
    return AESGCM(keys[kid]).decrypt(wrapped[:12], wrapped[12:], aad)


def check_manifest(raw, backup_id, keys):
    suffix = 75
    need(raw.endswith(b'"}\n') and raw[-suffix:].startswith(b',"mac":"'), "mac is not last")
    body, mac_hex = raw[:-suffix], raw[-suffix + 8:-3]
    need(MAC_HEX.fullmatch(mac_hex), "mac is not 64 lowercase hex digits")
    m = json.loads(raw)
    need(type(m.get("format")) is int and m["format"] == 1, f"manifest format {m.get('format')!r} is not 1")
    need(m.get("backup_id") == backup_id, "backup_id is not the directory's")
    mac_key = unwrap(keys, m["key_id"], base64.b64decode(m["mac_key"], validate=True),
                     b"lifeboat manifest mac key v1\x00" + backup_id.encode())
    want = hmac.new(mac_key, body, hashlib.sha256).hexdigest().encode()
    need(hmac.compare_digest(want, mac_hex), "manifest MAC mismatch")
    return m


def decompress(compression, data):
    if compression == 0:
        return data
    if compression == 1:  # one or more complete zstd frames
        out = bytearray()
        while data:
            d = zstandard.ZstdDecompressor().decompressobj()
            out += d.decompress(data)
            need(d.eof, "zstd stream ends inside a frame")
            data = d.unused_data
        return bytes(out)
    # gzip: one or more complete members (a cut member raises)
    out = bytearray()
    while data:
        d = zlib.decompressobj(wbits=31)
        out += d.decompress(data) + d.flush()
        need(d.eof, "gzip stream ends inside a member")
        data = d.unused_data
    return bytes(out)


def decode_object(data, name, keys):
    need(len(data) >= 19 and data[:8] == b"LIFEBOAT", "bad magic")
    need(data[8] == 1, f"object format version {data[8]} is not 1")
    compression, s = data[9], data[10]
    need(compression in (0, 1, 2), f"unknown compression id {compression}")
    need(12 <= s <= 24, f"segment size 2^{s} out of range")
    prefix = data[11:18]
    n = data[18]
    need(len(data) >= 21 + n, "object ends inside its header")
    kid = data[19:19 + n].decode("ascii", errors="replace")
    need(KEY_ID.fullmatch(kid), "bad key id in header")
    m = int.from_bytes(data[19 + n:21 + n], "big")
    hdr_end = 21 + n + m
    need(len(data) >= hdr_end + 60, "object ends inside its header")
    obj_name = data[21 + n:hdr_end].decode()
    need(obj_name == name, f"object claims to be {obj_name}")
    dk = unwrap(keys, kid, data[hdr_end:hdr_end + 60], data[:hdr_end])
    body, seg = data[hdr_end + 60:], (1 << s) + 16
    aead, out, i, pos = AESGCM(dk), bytearray(), 0, 0
    while True:
        last = len(body) - pos <= seg
        chunk = body[pos:pos + seg] if not last else body[pos:]
        need(len(chunk) >= 16, "object is truncated")
        need(not (last and i > 0 and len(chunk) == 16), "empty final segment after others")
        nonce = prefix + i.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        out += aead.decrypt(nonce, chunk, b"")
        if last:
            break
        pos, i = pos + seg, i + 1
    return decompress(compression, bytes(out))


def main():
    keyfile, dest, backup_id, out_dir = sys.argv[1:5]
    keys = load_keys(keyfile)
    path = os.path.join(dest, "backups", backup_id, "manifest.json")
    need(os.path.getsize(path) <= 16 << 20, "manifest is larger than 16 MiB")
    raw = open(path, "rb").read()
    m = check_manifest(raw, backup_id, keys)
    os.makedirs(out_dir, exist_ok=True)
    for o in m["objects"]:
        data = open(os.path.join(dest, o["key"]), "rb").read()
        need(len(data) == o["size"] and hashlib.sha256(data).hexdigest() == o["sha256"],
             f"{o['key']}: size or SHA-256 differs from the manifest")
        plain = decode_object(data, o["key"], keys)
        need(len(plain) == o["plain_size"], f"{o['key']}: {len(plain)} bytes, not {o['plain_size']}")
        part = os.path.basename(o["key"])[: -len(".lbk")]
        open(os.path.join(out_dir, part), "wb").write(plain)
        print(f"{o['key']}: {len(plain)} bytes")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a refusal: name it, exit 1
        sys.exit(f"decode.py: {type(e).__name__}: {e}")
