"""Writes an orders workbook of about SIZE bytes (XlsxWriter, constant memory): PATH SIZE."""
import datetime
import random
import sys

import xlsxwriter

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
size = sys.argv[2].upper()
target = int(float(size[:-1]) * UNITS[size[-1]]) if size[-1] in UNITS else int(size)
rng = random.Random(29)
book = xlsxwriter.Workbook(sys.argv[1], {"constant_memory": True})
sheet = book.add_worksheet("Orders")
stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm"})
sheet.write_row(0, 0, ["Order ID", "Order Date", "SKU", "Qty", "Unit Price (EUR)", "Coupon",
                       "Customer E-mail", "Notes"])
start = datetime.datetime(2026, 1, 1)
skus = ["SKU-RED-M", "SKU-BLU-L", "SKU-GRN-S", "SKU-BLK-XL", "SKU-WHT-M"]
notes = ["", "", "gift wrap", "leave at door, side gate", 'said "ring twice"', "Straße 12"]
# About 27 bytes of workbook per row once zipped: written in blocks, measured at the end.
rows = max(1, target // 27)
for r in range(1, rows + 1):
    sheet.write_string(r, 0, f"A-{r:08d}")
    sheet.write_datetime(r, 1, start + datetime.timedelta(minutes=r), stamp)
    sheet.write_string(r, 2, rng.choice(skus))
    sheet.write_number(r, 3, rng.randint(1, 9))
    sheet.write_number(r, 4, round(rng.uniform(1, 200), 2))
    if r % 7 == 0:
        sheet.write_string(r, 5, "WINTER")
    sheet.write_string(r, 6, f"user{r % 9973}@example.com")
    note = rng.choice(notes)
    if note:
        sheet.write_string(r, 7, note)
book.close()
