-- One row per token refresh attempt: the history behind the status command, the coverage figure and
-- the token page. It never holds a token, only its fingerprint. All times are UTC.
-- Apply with: python -m parkmobile_token init-db (it creates both tables).
CREATE TABLE IF NOT EXISTS pm_api_token_refreshes (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    attempted_at DATETIME(3) NOT NULL COMMENT 'UTC, just before the token request was sent',
    dag_id VARCHAR(250) NULL,
    run_id VARCHAR(250) NULL,
    try_number INT NULL,
    outcome VARCHAR(16) NOT NULL COMMENT 'fetched, stored or failed',
    http_status SMALLINT NULL,
    error_class VARCHAR(64) NULL,
    latency_ms INT NULL COMMENT 'the whole fetch, in-task retries and their waits included',
    lifetime_s BIGINT NULL COMMENT 'expires_in as issued; the parser accepts up to ten digits',
    expires DATETIME NULL COMMENT 'UTC',
    fingerprint CHAR(12) CHARACTER SET ascii NULL,
    stored_at DATETIME(3) NULL COMMENT 'UTC, when the token was committed to the token table',
    short_lifetime TINYINT(1) NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    KEY ix_pm_api_token_refreshes_attempted_at (attempted_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
