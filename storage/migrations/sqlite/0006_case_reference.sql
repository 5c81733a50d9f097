-- A session's case or customer reference, as the operator typed it when starting the session
-- (what compliance officers search recordings by). Optional.
ALTER TABLE sessions ADD COLUMN case_reference TEXT;
