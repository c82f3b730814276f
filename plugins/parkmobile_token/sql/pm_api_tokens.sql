-- The table the token job writes and every ParkMobile client reads.
-- All times are UTC. Apply with: python -m parkmobile_token init-db
-- (the command substitutes a configured table name for pm_api_tokens).
CREATE TABLE IF NOT EXISTS pm_api_tokens (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    token TEXT NOT NULL,
    token_sha256 CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    token_type VARCHAR(32) NOT NULL DEFAULT 'Bearer',
    scope VARCHAR(1024) NULL,
    expires DATETIME NOT NULL COMMENT 'UTC',
    created_at DATETIME NOT NULL COMMENT 'UTC',
    PRIMARY KEY (id),
    UNIQUE KEY uq_pm_api_tokens_token_sha256 (token_sha256),
    KEY ix_pm_api_tokens_expires (expires)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
