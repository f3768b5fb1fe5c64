"""The pandas way of the `orders` mapping, the reference bench/transform.sh measures
`sluice transform` against: read the clean CSV, build the same nested JSON records (Paris
order dates to UTC, integer quantity, the decimal price kept as written), write JSON lines.

    python3 bench/transform_pandas.py CLEAN_CSV OUTPUT_JSONL
"""
import json
import sys

import pandas as pd


def main(src, dst):
    df = pd.read_csv(src, dtype=str, keep_default_na=False)
    at = pd.to_datetime(df["order_date"], format="mixed")
    at = at.dt.tz_localize("Europe/Paris", ambiguous="raise", nonexistent="raise")
    ordered = at.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    quantity = df["qty"].astype("int64")
    with open(dst, "w") as out:
        for order_id, when, sku, qty, price, coupon, email in zip(
            df["order_id"], ordered, df["sku"], quantity, df["unit_price_eur"],
            df["coupon"], df["customer_e_mail"],
        ):
            record = {
                "orderId": order_id,
                "orderedAt": when,
                "line": {"sku": sku, "quantity": int(qty), "unitPrice": price,
                         "coupon": coupon or None},
                "customer": {"email": email or None},
                "currency": "EUR",
            }
            out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
            out.write("\n")
    return len(df)


if __name__ == "__main__":
    print(main(sys.argv[1], sys.argv[2]), "records", file=sys.stderr)
