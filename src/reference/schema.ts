/**
 * The reference Kohakku's schema: what tests and the drill back up, destroy and recover.
 * Realistic on purpose — sequences, a partial unique index, CHECK and FOREIGN KEY
 * constraints, a trigger — so a restore that drops any of them is caught.
 */
export const CONTROLLER_SCHEMA = `
CREATE TABLE tasks_skill (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  object_key  text NOT NULL,
  created_at  timestamptz NOT NULL
);

CREATE TABLE tasks_task (
  id                  bigserial PRIMARY KEY,
  title               text NOT NULL,
  status              text NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
  container           text,
  brief_key           text NOT NULL,
  progress            smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
  agent_checked_in_at timestamptz,
  created_at          timestamptz NOT NULL,
  updated_at          timestamptz NOT NULL,
  completed_at        timestamptz,
  CONSTRAINT tasks_task_running_has_container CHECK (status <> 'running' OR container IS NOT NULL)
);
CREATE INDEX tasks_task_status_idx ON tasks_task (status);
CREATE UNIQUE INDEX tasks_task_running_container_uniq ON tasks_task (container) WHERE status = 'running';
CREATE INDEX tasks_task_checkin_idx ON tasks_task (agent_checked_in_at) WHERE status = 'running';

CREATE TABLE tasks_task_skills (
  task_id  bigint NOT NULL REFERENCES tasks_task (id) ON DELETE CASCADE,
  skill_id bigint NOT NULL REFERENCES tasks_skill (id),
  PRIMARY KEY (task_id, skill_id)
);

CREATE FUNCTION tasks_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER tasks_task_touch BEFORE UPDATE ON tasks_task
  FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION tasks_touch_updated_at();
`;

export const DISPATCHER_SCHEMA = `
CREATE TABLE dispatcher_agent (
  container  text PRIMARY KEY,
  host       text NOT NULL,
  started_at timestamptz NOT NULL
);

CREATE TABLE dispatcher_dispatch (
  id            bigserial PRIMARY KEY,
  task_id       bigint NOT NULL,
  container     text NOT NULL REFERENCES dispatcher_agent (container),
  dispatched_at timestamptz NOT NULL,
  recovery_id   text,
  CONSTRAINT dispatcher_dispatch_once_per_recovery UNIQUE (task_id, recovery_id)
);
CREATE INDEX dispatcher_dispatch_task_idx ON dispatcher_dispatch (task_id);
`;
