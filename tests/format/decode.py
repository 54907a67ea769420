#!/usr/bin/env python3
"""An independent decoder for lifeboat's storage format v1, written from
docs/FORMAT.md alone (it shares no code with lifeboat).

usage: decode.py KEYFILE DEST_DIR BACKUP_ID OUT_DIR
Checks the manifest MAC, then decodes every object into OUT_DIR/<part>.
"""
import base64, gzip, hashlib, hmac, json, os, sys, zlib
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
import zstandard


def load_keys(path):
    keys = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tag, kid, b64 = line.split()
        assert tag == "LIFEBOAT-KEY-1"
        keys[kid] = base64.b64decode(b64)
    return keys


def unwrap(master, wrapped, aad):
    assert len(wrapped) == 60
    return AESGCM(master).decrypt(wrapped[:12], wrapped[12:], aad)


def check_manifest(raw, backup_id, keys):
    suffix = 75
    assert raw.endswith(b'"}\n') and raw[-suffix:].startswith(b',"mac":"'), "mac is not last"
    body, mac_hex = raw[:-suffix], raw[-suffix + 8:-3].decode()
    m = json.loads(raw)
    assert m["format"] == 1 and m["backup_id"] == backup_id
    mac_key = unwrap(keys[m["key_id"]], base64.b64decode(m["mac_key"]),
                     b"lifeboat manifest mac key v1\x00" + backup_id.encode())
    want = hmac.new(mac_key, body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(want, mac_hex), "manifest MAC mismatch"
    return m


def decode_object(data, name, keys):
    assert data[:8] == b"LIFEBOAT" and data[8] == 1
    compression, s = data[9], data[10]
    prefix = data[11:18]
    n = data[18]
    kid = data[19:19 + n].decode()
    m = int.from_bytes(data[19 + n:21 + n], "big")
    obj_name = data[21 + n:21 + n + m].decode()
    assert obj_name == name, f"object claims to be {obj_name}"
    hdr_end = 21 + n + m
    dk = unwrap(keys[kid], data[hdr_end:hdr_end + 60], data[:hdr_end])
    body, seg = data[hdr_end + 60:], (1 << s) + 16
    aead, out, i, pos = AESGCM(dk), bytearray(), 0, 0
    while True:
        last = len(body) - pos <= seg
        chunk = body[pos:pos + seg] if not last else body[pos:]
        assert len(chunk) >= 16
        nonce = prefix + i.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        out += aead.decrypt(nonce, chunk, b"")
        if last:
            break
        pos, i = pos + seg, i + 1
    if compression == 1:
        return zstandard.ZstdDecompressor().decompressobj().decompress(bytes(out))
    if compression == 2:
        return gzip.decompress(bytes(out))
    return bytes(out)


def main():
    keyfile, dest, backup_id, out_dir = sys.argv[1:5]
    keys = load_keys(keyfile)
    raw = open(os.path.join(dest, "backups", backup_id, "manifest.json"), "rb").read()
    m = check_manifest(raw, backup_id, keys)
    os.makedirs(out_dir, exist_ok=True)
    for o in m["objects"]:
        data = open(os.path.join(dest, o["key"]), "rb").read()
        assert len(data) == o["size"] and hashlib.sha256(data).hexdigest() == o["sha256"]
        plain = decode_object(data, o["key"], keys)
        assert len(plain) == o["plain_size"], (len(plain), o["plain_size"])
        part = os.path.basename(o["key"])[: -len(".lbk")]
        open(os.path.join(out_dir, part), "wb").write(plain)
        print(f"{o['key']}: {len(plain)} bytes")


if __name__ == "__main__":
    main()
