-- API health per endpoint: each call keeps where it went (scheme, host, port and path; never a
-- query string or credentials, which may carry secrets), and the hourly roll-up is per dataset
-- and endpoint. Calls made before this have none ('' in the roll-up).
ALTER TABLE api_call ADD COLUMN endpoint text;
ALTER TABLE api_call_hour ADD COLUMN endpoint text NOT NULL DEFAULT '';
ALTER TABLE api_call_hour DROP CONSTRAINT api_call_hour_pkey;
ALTER TABLE api_call_hour ADD PRIMARY KEY (hour, dataset, endpoint, bucket);

CREATE OR REPLACE FUNCTION sluice_rollup_api_calls() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    from_at timestamptz;
    to_at   timestamptz := date_trunc('hour', now() - interval '5 minutes');
    rows    integer;
BEGIN
    -- One roller at a time; another caller finds the row locked and leaves.
    PERFORM 1 FROM api_call_rollup FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT COALESCE(until, (SELECT date_trunc('hour', min(at)) FROM api_call))
        INTO from_at FROM api_call_rollup;
    IF from_at IS NULL OR to_at <= from_at THEN
        RETURN 0;
    END IF;
    INSERT INTO api_call_hour (dataset, endpoint, hour, bucket, calls, ok)
    SELECT COALESCE(dataset, ''), COALESCE(endpoint, ''), date_trunc('hour', at),
           sluice_latency_bucket(latency_ms),
           count(*), count(*) FILTER (WHERE http_status BETWEEN 200 AND 299)
    FROM api_call WHERE at >= from_at AND at < to_at AND NOT simulated
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (hour, dataset, endpoint, bucket) DO UPDATE
        SET calls = api_call_hour.calls + EXCLUDED.calls, ok = api_call_hour.ok + EXCLUDED.ok;
    GET DIAGNOSTICS rows = ROW_COUNT;
    UPDATE api_call_rollup SET until = to_at;
    RETURN rows;
END
$$;

-- A view gains columns only at its end.
CREATE OR REPLACE VIEW dashboard_api_call_hour AS
SELECT dataset, hour, bucket, calls, ok, endpoint FROM api_call_hour;

CREATE OR REPLACE VIEW dashboard_api_call AS
SELECT id, file_id, dataset, batch_id, attempt, at, http_status, latency_ms,
       response_excerpt, error, COALESCE(http_status BETWEEN 200 AND 299, false) AS ok,
       simulated, endpoint
FROM api_call;

-- API health over a window stays an index-only scan by time.
DROP INDEX api_call_at_idx;
CREATE INDEX api_call_at_idx ON api_call (at)
    INCLUDE (dataset, endpoint, http_status, latency_ms, simulated);
