-- One database per service, each owned by its own login role: a service can reach only its own
-- data (CONNECT is revoked from PUBLIC). Run by the postgres image on first initialisation
-- (mounted into /docker-entrypoint-initdb.d/); it does not run again on an existing volume.
--
-- Password: psql variable `db_password` if given, else the environment variable CRM_DB_PASSWORD
-- (set by docker-compose.yml). By hand, e.g. against a managed server, as a role allowed to
-- create roles and databases:
--   psql "host=... user=admin dbname=postgres" -v db_password='...' -f init-databases.sql
-- (PostgreSQL 15+ psql: `\getenv`; on PostgreSQL 15 the owner of a database owns its public schema.)

\set ON_ERROR_STOP on
\if :{?db_password}
\else
  \getenv db_password CRM_DB_PASSWORD
\endif
\if :{?db_password}
\else
  \warn 'init-databases.sql: set CRM_DB_PASSWORD or pass -v db_password=...'
  DO $$ BEGIN RAISE EXCEPTION 'init-databases.sql: no password for the service roles'; END $$;
\endif

CREATE ROLE crm_identity     LOGIN PASSWORD :'db_password';
CREATE ROLE crm_interactions LOGIN PASSWORD :'db_password';
CREATE ROLE crm_segmentation LOGIN PASSWORD :'db_password';
CREATE ROLE crm_loyalty      LOGIN PASSWORD :'db_password';
CREATE ROLE crm_gateway      LOGIN PASSWORD :'db_password';

CREATE DATABASE crm_identity     OWNER crm_identity;
CREATE DATABASE crm_interactions OWNER crm_interactions;
CREATE DATABASE crm_segmentation OWNER crm_segmentation;
CREATE DATABASE crm_loyalty      OWNER crm_loyalty;
CREATE DATABASE crm_gateway      OWNER crm_gateway;

REVOKE CONNECT, TEMPORARY ON DATABASE crm_identity     FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE crm_interactions FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE crm_segmentation FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE crm_loyalty      FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE crm_gateway      FROM PUBLIC;
