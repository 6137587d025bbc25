#!/usr/bin/env python3
"""Write a large unsigned SimpleStreams tree for memory and speed figures (scripts/mem-products.sh).

usage: gen_big_products.py OUT_DIR ITEMS [INHERITED_BYTES]
OUT_DIR/streams/v1/index.json and OUT_DIR/streams/v1/big.json: ITEMS items, 10 per version,
100 versions per product, each item ~115 bytes of JSON (path, ftype, sha256, size), so 1M items
make a ~134 MB document. INHERITED_BYTES > 0 adds a product-level field of that many bytes that
every item inherits (the amplification case of issue 8 item 4).
With ONE_CONTENT=1 in the environment every item names the same 1,000,000-byte content (written
at the first item's path), so a real sync downloads one file and records ITEMS items.
"""
import json, os, sys

out, items = sys.argv[1], int(sys.argv[2])
inherited = int(sys.argv[3]) if len(sys.argv) > 3 else 0
one = os.environ.get("ONE_CONTENT") == "1"
if one:
    import hashlib
    blob = b"\0" * 1000000
    os.makedirs(os.path.join(out, "p000000/v0000"), exist_ok=True)
    with open(os.path.join(out, "p000000/v0000/i0.img"), "wb") as b:
        b.write(blob)
    one_sha = int(hashlib.sha256(blob).hexdigest(), 16)
os.makedirs(os.path.join(out, "streams/v1"), exist_ok=True)
per_version, per_product = 10, 100
path = os.path.join(out, "streams/v1/big.json")
with open(path, "w") as f:
    f.write('{"format":"products:1.0","content_id":"com.example:big","datatype":"image-downloads",'
            '"updated":"Sun, 29 Nov 2026 00:00:00 +0000","products":{')
    n, p = 0, 0
    while n < items:
        if p:
            f.write(",")
        f.write('"com.example:big:p%06d":{"arch":"amd64","release":"r%d","os":"ubuntu",' % (p, p % 7))
        if inherited:
            f.write('"blob":%s,' % json.dumps("x" * inherited))
        f.write('"versions":{')
        for v in range(per_product):
            if n >= items:
                break
            if v:
                f.write(",")
            f.write('"2016%04d":{"items":{' % v)
            for i in range(per_version):
                if n >= items:
                    break
                if i:
                    f.write(",")
                f.write('"i%d":{"ftype":"f%d","path":"p%06d/v%04d/i%d.img","sha256":"%064x","size":%d}'
                        % (i, i, p, v, i, one_sha if one else n * 2654435761 % (1 << 256),
                           1000000 if one else 1000 + n))
                n += 1
            f.write("}}")
        f.write("}}")
        p += 1
    f.write("}}\n")
index = {"format": "index:1.0", "updated": "Sun, 29 Nov 2026 00:00:00 +0000", "index": {
    "com.example:big": {"format": "products:1.0", "datatype": "image-downloads",
                        "path": "streams/v1/big.json", "products": []}}}
with open(os.path.join(out, "streams/v1/index.json"), "w") as f:
    json.dump(index, f)
print(path, os.path.getsize(path))
