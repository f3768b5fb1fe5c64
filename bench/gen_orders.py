#!/usr/bin/env python3
"""Writes a realistic marketplace-orders CSV of about SIZE bytes to PATH.

Like the exports users drop: UTF-8 with a BOM, CRLF, every field quoted, mostly ASCII with
some accented names, commas and doubled quotes inside fields, a few multi-line notes, and a
sprinkling of hostile cells (formulas, <script>, NUL) -- about 1 row in 500.

usage: gen_orders.py PATH SIZE   (SIZE like 100M, 1G, 250000)
"""
import random
import sys

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text):
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


FIRST = ["anna", "ben", "chloé", "dmitri", "eve", "françois", "gina", "hugo", "inès", "jo",
         "kai", "léa", "mohammed", "nuno", "olga", "pål", "quentin", "rosa", "søren", "zoë"]
SKUS = ["SKU-RED-M", "SKU-BLU-L", "SKU-GRN-S", "SKU-BLK-XL", "SKU-WHT-M", "SKU-YLW-XS"]
NOTES = ["", "", "", "", "gift wrap", "leave at door, side gate", 'said "ring twice"',
         "deliver after 6pm", "fragile\nhandle with care", "Straße 12, 3. OG"]
HOSTILE = ["=HYPERLINK(\"http://evil.example\")", "+cmd|' /C calc'!A0", "@SUM(A1:A9)",
           "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "javascript:alert(1)",
           "nul\x00byte", "-2+3"]


def quote(field):
    return '"' + field.replace('"', '""') + '"'


def block(rng, start, rows):
    out = []
    for i in range(start, start + rows):
        note = rng.choice(NOTES)
        coupon = ""
        if rng.random() < 0.002:
            note = rng.choice(HOSTILE)
        if rng.random() < 0.001:
            coupon = rng.choice(HOSTILE)
        name = rng.choice(FIRST)
        fields = [
            f"A-{i:09d}",
            f"2026-11-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
            rng.choice(SKUS),
            str(rng.randint(1, 5)),
            f"{rng.randint(100, 9999) / 100:.2f}",
            coupon,
            f"{name}.{i % 997}@example.com",
            f"{name.capitalize()} {rng.choice(['Smith', 'García', 'Müller', 'O’Brien', 'Ng'])}",
            note,
        ]
        out.append(",".join(quote(f) for f in fields))
    return "\r\n".join(out) + "\r\n"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, size = sys.argv[1], parse_size(sys.argv[2])
    rng = random.Random(42)
    header = "Order ID,Order Date,SKU,Quantity,Unit Price,Coupon,Customer Email,Customer Name,Notes"
    written = 0
    with open(path, "wb") as f:
        data = ("\ufeff" + header + "\r\n").encode()
        f.write(data)
        written += len(data)
        row = 0
        while written < size:
            data = block(rng, row, 5000).encode()
            f.write(data)
            written += len(data)
            row += 5000
    print(f"{path}: {written} bytes, {row} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
