-- Test data for the compose e2e: an owner role, a database with a few related tables,
-- a bytea column with binary content, a view, a sequence and an index. Deterministic, so a
-- restored copy can be compared with the original by query digests.
CREATE ROLE clinic_app LOGIN PASSWORD 'not-a-real-secret' CONNECTION LIMIT 20;
CREATE ROLE clinic_readonly NOLOGIN;
CREATE DATABASE clinic OWNER clinic_app ENCODING 'UTF8' TEMPLATE template0;
\connect clinic
SET ROLE clinic_app;
CREATE TABLE patients (
  id      integer PRIMARY KEY,
  name    text NOT NULL,
  born    date NOT NULL,
  notes   text
);
CREATE TABLE studies (
  id          bigserial PRIMARY KEY,
  patient_id  integer NOT NULL REFERENCES patients(id),
  description text NOT NULL,
  taken_at    timestamptz NOT NULL,
  meta        jsonb
);
CREATE INDEX studies_patient ON studies (patient_id);
CREATE TABLE attachments (
  id        integer PRIMARY KEY,
  study_id  bigint NOT NULL REFERENCES studies(id),
  mime      text NOT NULL,
  content   bytea NOT NULL
);
CREATE VIEW patient_study_counts AS
  SELECT p.id, p.name, count(s.id) AS studies FROM patients p LEFT JOIN studies s ON s.patient_id = p.id GROUP BY p.id;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO clinic_readonly;

INSERT INTO patients
  SELECT i, 'Patient ' || i || ' Müller-Çelik', date '1940-01-01' + (i * 97) % 25000,
         CASE WHEN i % 3 = 0 THEN NULL ELSE repeat('note ' || i || E'\n', i % 7) END
  FROM generate_series(1, 200) AS i;
INSERT INTO studies (patient_id, description, taken_at, meta)
  SELECT 1 + (i * 31) % 200, 'CT thorax ' || i, timestamptz '2020-01-01 00:00:00+00' + i * interval '37 minutes',
         jsonb_build_object('modality', (ARRAY['CT','MR','US','CR'])[1 + i % 4], 'series', i % 5)
  FROM generate_series(1, 600) AS i;
-- Binary content: every byte value, in varying lengths (up to 12 KiB, so most are TOASTed).
INSERT INTO attachments
  SELECT i, 1 + (i * 7) % 600, (ARRAY['application/pdf','image/jpeg','application/dicom'])[1 + i % 3],
         decode(string_agg(lpad(to_hex((i * 7 + j * 13) % 256), 2, '0'), '' ORDER BY j), 'hex')
  FROM generate_series(1, 150) AS i, generate_series(1, 1 + (i * 271) % 12000) AS j
  GROUP BY i;
