-- A file's delivered batches are counted from its 2xx calls; a batch's history by its id.
CREATE INDEX api_call_delivered_idx ON api_call (file_id, batch_id)
    WHERE http_status BETWEEN 200 AND 299;
