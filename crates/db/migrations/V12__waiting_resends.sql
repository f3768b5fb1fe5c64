-- A file whose work waits in a queue is not stuck: only a lapsed lease (a worker died) counts
-- toward `max_redrives`. A file that no worker holds and that has not moved for the stale
-- time has its stage's input sent again, with a spacing that doubles with each such re-send,
-- and is never failed for waiting: `resends` counts those re-sends.
ALTER TABLE file_process ADD COLUMN resends integer NOT NULL DEFAULT 0;
