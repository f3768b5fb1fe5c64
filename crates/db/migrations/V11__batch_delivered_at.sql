-- A batch's first 2xx is marked on its claim, so the call that delivers it can count it on
-- the file in the same statement (one round trip per batch) instead of recounting the file's
-- 2xx calls after every batch.
ALTER TABLE batch_claim ADD COLUMN delivered_at timestamptz;

UPDATE batch_claim b SET delivered_at = d.at
FROM (SELECT batch_id, min(at) AS at FROM api_call
      WHERE http_status BETWEEN 200 AND 299 GROUP BY batch_id) d
WHERE b.batch_id = d.batch_id;

-- Counts from here on are increments: start them from the truth.
UPDATE file_process f SET batches_delivered = d.n
FROM (SELECT file_id, count(DISTINCT batch_id)::integer AS n FROM api_call
      WHERE http_status BETWEEN 200 AND 299 GROUP BY file_id) d
WHERE f.id = d.file_id AND f.batches_delivered IS DISTINCT FROM d.n;
