-- The allowed status moves, the same table as sluice_core::status::TRANSITIONS (a test keeps
-- them equal), guarded here so that no code path, Sluice's or a hand-written UPDATE, can move a
-- file backward, skip a step, leave a final status, or overwrite a final status's error.
CREATE TABLE status_transition (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO status_transition (from_status, to_status) VALUES
    ('received', 'sanitizing'), ('received', 'rejected'), ('received', 'failed'),
    ('sanitizing', 'sanitized'), ('sanitizing', 'rejected'), ('sanitizing', 'failed'),
    ('sanitized', 'transforming'), ('sanitized', 'failed'),
    ('transforming', 'transformed'), ('transforming', 'failed'),
    ('transformed', 'delivering'), ('transformed', 'delivered'), ('transformed', 'failed'),
    ('delivering', 'delivered'), ('delivering', 'failed');

CREATE FUNCTION file_process_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'received' THEN
            RAISE EXCEPTION 'file %: a file starts as received, not %', NEW.id, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT EXISTS (
        SELECT 1 FROM status_transition
        WHERE from_status = OLD.status AND to_status = NEW.status
    ) THEN
        RAISE EXCEPTION 'file %: status may not move from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status IN ('delivered', 'rejected', 'failed')
       AND (NEW.error IS DISTINCT FROM OLD.error
            OR NEW.failed_stage IS DISTINCT FROM OLD.failed_stage) THEN
        RAISE EXCEPTION 'file %: the error of its final status (%) is kept', OLD.id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER file_process_guard BEFORE INSERT OR UPDATE ON file_process
    FOR EACH ROW EXECUTE FUNCTION file_process_guard();
