-- Refusals while a subject is locked are counted here, and recorded as one audit event per lock
-- window when it ends; rows are pruned by their last failure, so the sweep reads them by it.
ALTER TABLE auth_throttle ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
CREATE INDEX auth_throttle_by_update ON auth_throttle (updated_at);
