//! Profile: each tenant's behavioural history in an embedded SQLite database.
//!
//! * WAL journal, `synchronous=NORMAL`: a committed transaction survives `kill -9` of the
//!   daemon (it is in the WAL, which the OS holds), and readers never block the writer.
//! * Versioned schema (`PRAGMA user_version`) under our own `application_id`, so that a
//!   foreign or corrupt file is refused with an error naming it, never overwritten. Starting
//!   afresh takes an explicit `--reset-db`, which moves the old file aside.
//! * Raw samples at the control interval for `raw_retention`, 5-minute aggregates for
//!   `history_retention`: the file's size stays bounded.
//!
//! Writes happen on the writer thread ([`writer`]), in batches, off the control loop.

mod lock;
pub mod writer;

use crate::collect::{Observation, TenantStats, total};
use crate::leadtime::Rise;
use crate::model::STEP_S;
use crate::model::{PerResource, Resource};
use crate::plan::{Allocation, Applied, DomainSettings, Plan, Reason, Setting};
pub use lock::ProfileLock;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `PRAGMA application_id` of a prescient profile ("PRES").
pub const APPLICATION_ID: i32 = 0x5052_4553;

/// Migrations, applied in order; `user_version` = how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id             INTEGER PRIMARY KEY,
    uuid           TEXT NOT NULL UNIQUE,
    name           TEXT NOT NULL,
    class          TEXT NOT NULL,
    policy_json    TEXT NOT NULL,
    vcpus          INTEGER NOT NULL,
    max_memory_kib INTEGER NOT NULL,
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL
);
CREATE TABLE samples (
    tenant_id            INTEGER NOT NULL REFERENCES tenants(id),
    ts_ms                INTEGER NOT NULL,
    cpu_cores            REAL,
    cpu_delay_ratio      REAL,
    mem_used_kib         REAL,
    balloon_current_kib  REAL,
    mem_unused_kib       REAL,
    mem_usable_kib       REAL,
    mem_rss_kib          REAL,
    swap_in_kib_per_s    REAL,
    swap_out_kib_per_s   REAL,
    major_faults_per_s   REAL,
    disk_rd_bytes_per_s  REAL,
    disk_wr_bytes_per_s  REAL,
    disk_rd_iops         REAL,
    disk_wr_iops         REAL,
    net_rx_bytes_per_s   REAL,
    net_tx_bytes_per_s   REAL,
    net_rx_pkts_per_s    REAL,
    net_tx_pkts_per_s    REAL,
    net_drops_per_s      REAL,
    PRIMARY KEY (tenant_id, ts_ms)
) WITHOUT ROWID;
CREATE TABLE history (
    tenant_id    INTEGER NOT NULL REFERENCES tenants(id),
    bucket_ms    INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    cpu_mean     REAL, cpu_max  REAL,
    mem_mean     REAL, mem_max  REAL,
    disk_mean    REAL, disk_max REAL,
    net_mean     REAL, net_max  REAL,
    delay_mean   REAL,
    PRIMARY KEY (tenant_id, bucket_ms)
) WITHOUT ROWID;
CREATE TABLE state (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE forecasters (
    tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id),
    saved_ms  INTEGER NOT NULL,
    format    INTEGER NOT NULL,
    state     BLOB NOT NULL
);
"#,
    r#"
CREATE TABLE allocations (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    ts_ms     INTEGER NOT NULL,
    cpu_cores REAL NOT NULL,
    mem_kib   REAL NOT NULL,
    disk_bytes_per_s REAL NOT NULL,
    net_bytes_per_s  REAL NOT NULL,
    policy    TEXT NOT NULL,
    applied   INTEGER NOT NULL,
    -- Per resource: the forecast used, the constraint that bound, λ, the sensitivity
    -- (NULL for a policy that does not tell).
    reasons_json TEXT,
    PRIMARY KEY (tenant_id, ts_ms)
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE actuations (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    ts_ms     INTEGER NOT NULL,
    resource  TEXT NOT NULL,
    -- The amount wanted and the one in force before, in the pipeline's units.
    wanted    REAL NOT NULL,
    previous  REAL,
    -- The settings tried, as JSON.
    settings_json TEXT NOT NULL,
    accepted  INTEGER NOT NULL,
    -- For a refusal: the hypervisor's error code and message.
    code      INTEGER,
    message   TEXT
);
CREATE INDEX actuations_by_time ON actuations (ts_ms);
CREATE INDEX actuations_by_tenant ON actuations (tenant_id, ts_ms);
-- The settings a domain had when prescient first saw it (what the daemon hands back on
-- exit when asked to); never overwritten.
CREATE TABLE taken_over (
    tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id),
    ts_ms     INTEGER NOT NULL,
    settings_json TEXT NOT NULL
);
"#,
    r#"
-- What operators set through the control socket and what must survive a restart: each
-- kind (override, intent_note) is rewritten whole when it changes.
CREATE TABLE operator_state (
    kind      TEXT NOT NULL,
    key       TEXT NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"#,
    r#"
-- Each rise in a tenant's usage once its outcome is known (see src/leadtime.rs): when the
-- sample interval that first showed it started, the usage it rose to, what was in force
-- then (NULL: unlimited), whether that covered it (ahead), a later amount did (late, with
-- the seconds until then) or it ended still capped (not_covered), and when that was known.
CREATE TABLE rises (
    tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    resource  TEXT NOT NULL,
    start_ms  INTEGER NOT NULL,
    level     REAL NOT NULL,
    in_force  REAL,
    outcome   TEXT NOT NULL CHECK (outcome IN ('ahead','late','not_covered')),
    late_s    REAL,
    end_ms    INTEGER
);
CREATE INDEX rises_by_start ON rises (start_ms);
"#,
];

/// One change tried on a domain, as the profile keeps it: accepted, or refused (a denial)
/// with the hypervisor's code and message.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Actuation {
    pub uuid: Arc<str>,
    pub resource: Resource,
    pub wanted: f64,
    pub previous: Option<f64>,
    pub settings: Vec<Setting>,
    pub accepted: bool,
    pub code: Option<i32>,
    pub message: Option<String>,
}

impl Actuation {
    /// The records of what a backend made of `plan`: one per change it accepted or refused.
    pub fn of(plan: &Plan, applied: &Applied) -> Vec<Actuation> {
        let mut out = Vec::new();
        for d in &plan.domains {
            for c in &d.changes {
                let record = |accepted, code, message| Actuation {
                    uuid: d.id.uuid.clone(),
                    resource: c.resource,
                    wanted: c.amount,
                    previous: c.previous,
                    settings: c.settings.clone(),
                    accepted,
                    code,
                    message,
                };
                let denials: Vec<_> = applied
                    .denials
                    .iter()
                    .filter(|x| x.tenant.uuid == d.id.uuid && x.resource == c.resource)
                    .collect();
                if let Some(x) = denials.first() {
                    let message = denials
                        .iter()
                        .map(|x| x.message.as_str())
                        .collect::<Vec<_>>();
                    out.push(record(false, x.code, Some(message.join("; "))));
                } else if applied
                    .accepted
                    .iter()
                    .any(|(u, r, _)| *u == d.id.uuid && *r == c.resource)
                {
                    out.push(record(true, None, None));
                }
            }
        }
        out
    }
}

/// The latest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

type Column = (&'static str, fn(&TenantStats) -> Option<f64>);

/// The per-sample columns after (tenant_id, ts_ms), with how each is read off the stats.
const SAMPLE_COLUMNS: &[Column] = &[
    ("cpu_cores", |t| t.usage.cpu),
    ("cpu_delay_ratio", |t| t.cpu.delay_ratio),
    ("mem_used_kib", |t| t.usage.mem),
    ("balloon_current_kib", |t| {
        t.mem.balloon_current_kib.map(|v| v as f64)
    }),
    ("mem_unused_kib", |t| t.mem.unused_kib.map(|v| v as f64)),
    ("mem_usable_kib", |t| t.mem.usable_kib.map(|v| v as f64)),
    ("mem_rss_kib", |t| t.mem.rss_kib.map(|v| v as f64)),
    ("swap_in_kib_per_s", |t| t.mem.swap_in_kib_per_s),
    ("swap_out_kib_per_s", |t| t.mem.swap_out_kib_per_s),
    ("major_faults_per_s", |t| t.mem.major_faults_per_s),
    ("disk_rd_bytes_per_s", |t| {
        total(t.disks.iter().map(|d| d.rd_bytes_per_s))
    }),
    ("disk_wr_bytes_per_s", |t| {
        total(t.disks.iter().map(|d| d.wr_bytes_per_s))
    }),
    ("disk_rd_iops", |t| total(t.disks.iter().map(|d| d.rd_iops))),
    ("disk_wr_iops", |t| total(t.disks.iter().map(|d| d.wr_iops))),
    ("net_rx_bytes_per_s", |t| {
        total(t.nics.iter().map(|n| n.rx_bytes_per_s))
    }),
    ("net_tx_bytes_per_s", |t| {
        total(t.nics.iter().map(|n| n.tx_bytes_per_s))
    }),
    ("net_rx_pkts_per_s", |t| {
        total(t.nics.iter().map(|n| n.rx_pkts_per_s))
    }),
    ("net_tx_pkts_per_s", |t| {
        total(t.nics.iter().map(|n| n.tx_pkts_per_s))
    }),
    ("net_drops_per_s", |t| {
        total(
            t.nics
                .iter()
                .flat_map(|n| [n.rx_drops_per_s, n.tx_drops_per_s]),
        )
    }),
];

/// Errors of the profile database, each naming the file and giving the advice that fits
/// that case alone. Only [`ProfileError::Foreign`] and [`ProfileError::Corrupt`] are cases
/// that `--reset-db` may move aside: every other one leaves the file as it is.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(
        "{path} is not a prescient profile database ({why}); refusing to touch it. Point \
         [profile] path elsewhere, or pass --reset-db to move it aside and start a new one"
    )]
    Foreign { path: PathBuf, why: String },
    #[error(
        "{path} is corrupt ({why}); refusing to write to it. Keep it for inspection and pass \
         --reset-db to move it aside and start a new one"
    )]
    Corrupt { path: PathBuf, why: String },
    #[error(
        "{path} has schema version {found}, newer than this prescient knows ({known}); \
         upgrade prescient or use another file"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "cannot open {path}: {source}. The daemon's user must be able to read and write it; \
         the file was not changed"
    )]
    CannotOpen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} cannot be written ({why}): every sample would be lost. Make it writable by the \
         daemon's user; the file was not changed"
    )]
    ReadOnly { path: PathBuf, why: String },
    #[error(
        "cannot create {what} in {dir} ({source}): the daemon's user must be able to create \
         files in that directory (SQLite keeps its write-ahead log beside the database). \
         {path} was not changed"
    )]
    DirNotWritable {
        path: PathBuf,
        dir: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "the directory {dir} of the profile database {path} does not exist; create it, or \
         point --db / [profile] path elsewhere"
    )]
    NoDir { path: PathBuf, dir: PathBuf },
    #[error(
        "{path} is in use by another prescient daemon ({holder}); stop it first, or give \
         this one another --db / [profile] path"
    )]
    InUse { path: PathBuf, holder: String },
    #[error("cannot move {path} aside to {to}: {source}")]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the directory of {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl ProfileError {
    /// Why a file that `--reset-db` may move aside is unusable (None for every other case).
    fn unusable_because(&self) -> Option<String> {
        match self {
            ProfileError::Foreign { why, .. } => Some(format!("not a prescient profile ({why})")),
            ProfileError::Corrupt { why, .. } => Some(format!("corrupt ({why})")),
            _ => None,
        }
    }
}

/// Retention settings.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub raw_ms: i64,
    pub history_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw_ms: 48 * 3600 * 1000,
            history_ms: 90 * 24 * 3600 * 1000,
        }
    }
}

/// An open, validated profile database, locked against a second writer while it is open.
pub struct ProfileDb {
    conn: Connection,
    path: PathBuf,
    /// Held from [`ProfileDb::open`] until the database is closed.
    lock: Option<ProfileLock>,
}

/// Sizes of the stored history, for status output and tests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Counts {
    pub tenants: i64,
    pub samples: i64,
    pub history: i64,
}

impl ProfileDb {
    /// Open (creating the file if absent; its directory must exist) and migrate. A file that
    /// cannot be read or written, or whose directory does not let SQLite keep its
    /// write-ahead log, is refused before anything is written. With `reset`, an existing file
    /// that is not a prescient profile or is corrupt is renamed to `<file>.bad-<unix
    /// seconds>` first (never deleted); a valid profile is never moved.
    pub fn open(path: &Path, reset: bool) -> Result<ProfileDb, ProfileError> {
        // Before anything touches the file (--reset-db included): another daemon may own it.
        let early = ProfileLock::try_existing(path)?;
        let mut db = Self::open_unlocked(path, reset)?;
        db.lock = Some(match early {
            Some(lock) if lock.is_on(path) => lock,
            // A new file, or a new one in place of a file moved aside.
            _ => ProfileLock::try_existing(path)?.ok_or_else(|| ProfileError::CannotOpen {
                path: path.to_path_buf(),
                source: std::io::Error::other("the database vanished as it was opened"),
            })?,
        });
        Ok(db)
    }

    fn open_unlocked(path: &Path, reset: bool) -> Result<ProfileDb, ProfileError> {
        match Self::open_checked(path) {
            Err(e) if reset && e.unusable_because().is_some() => {
                let why = e.unusable_because().unwrap_or_default();
                let to = move_aside(path)?;
                tracing::warn!(
                    "{} was {why}: moved it to {} (--reset-db); starting a new profile",
                    path.display(),
                    to.display()
                );
                Self::open_checked(path)
            }
            other => other,
        }
    }

    fn open_checked(path: &Path) -> Result<ProfileDb, ProfileError> {
        let sql = |source| ProfileError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        check_access(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        // Only SQLite's own verdict of damage makes a file corrupt; anything else (a lock, an
        // I/O error) is reported as it is, with no advice to move a good file aside.
        let read = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                ProfileError::Corrupt {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                }
            }
            _ => sql(e),
        };
        // Reading the schema is the first thing that touches the pages.
        let app_id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(read)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(read)?;
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(read)?;
        if app_id != APPLICATION_ID && !(app_id == 0 && objects == 0) {
            return Err(ProfileError::Foreign {
                path: path.to_path_buf(),
                why: format!(
                    "application_id {app_id:#x} with {objects} schema objects, expected {APPLICATION_ID:#x}"
                ),
            });
        }
        if version > SCHEMA_VERSION {
            return Err(ProfileError::TooNew {
                path: path.to_path_buf(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(read)?;
        if check != "ok" {
            return Err(ProfileError::Corrupt {
                path: path.to_path_buf(),
                why: check,
            });
        }
        // Say now, not once per sample, that nothing could be stored.
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(sql)? {
            return Err(ProfileError::ReadOnly {
                path: path.to_path_buf(),
                why: "SQLite could open it only for reading".into(),
            });
        }
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        )
        .map_err(sql)?;
        let mut db = ProfileDb {
            conn,
            path: path.to_path_buf(),
            lock: None,
        };
        db.migrate(version)?;
        Ok(db)
    }

    fn sql(&self, source: rusqlite::Error) -> ProfileError {
        ProfileError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&mut self, from: i64) -> Result<(), ProfileError> {
        for (i, m) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            let to = i as i64 + 1;
            let tx = self.conn.transaction().map_err(|e| ProfileError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
            tx.execute_batch(m)
                .and_then(|_| {
                    tx.execute_batch(&format!(
                        "PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={to};"
                    ))
                })
                .and_then(|_| tx.commit())
                .map_err(|e| ProfileError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
            tracing::info!(path = %self.path.display(), "profile schema migrated to v{to}");
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create the directory of `path` (with its parents) if it is missing: for the default
    /// location, which a package may not have made yet. A path the operator chose is used
    /// as given: its missing directory is an error ([`ProfileError::NoDir`]), not a guess.
    pub fn create_dir_of(path: &Path) -> Result<(), ProfileError> {
        match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => {
                std::fs::create_dir_all(dir).map_err(|source| ProfileError::CreateDir {
                    path: path.to_path_buf(),
                    source,
                })?;
                tracing::info!(dir = %dir.display(), "created the profile's directory");
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Store one or more observations in a single transaction.
    pub fn write(&mut self, batch: &[Observation]) -> Result<usize, ProfileError> {
        let sql = sql_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let mut written = 0;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO tenants (uuid, name, class, policy_json, vcpus, max_memory_kib,
                                          first_seen_ms, last_seen_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                     ON CONFLICT(uuid) DO UPDATE SET name=?2, class=?3, policy_json=?4, vcpus=?5,
                         max_memory_kib=?6, last_seen_ms=max(last_seen_ms, ?7)
                     RETURNING id",
                )
                .map_err(sql)?;
            let cols: Vec<&str> = SAMPLE_COLUMNS.iter().map(|(n, _)| *n).collect();
            let marks = vec!["?"; cols.len() + 2].join(",");
            let mut insert = tx
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO samples (tenant_id, ts_ms, {}) VALUES ({marks})",
                    cols.join(",")
                ))
                .map_err(sql)?;
            for obs in batch {
                for t in &obs.tenants {
                    let policy = serde_json::to_string(&t.policy).unwrap_or_default();
                    let id: i64 = upsert
                        .query_row(
                            params![
                                t.id.uuid,
                                t.id.name,
                                t.policy.class.name(),
                                policy,
                                t.vcpus,
                                t.max_memory_kib as i64,
                                obs.at_unix_ms
                            ],
                            |r| r.get(0),
                        )
                        .map_err(sql)?;
                    let mut values: Vec<rusqlite::types::Value> =
                        Vec::with_capacity(cols.len() + 2);
                    values.push(id.into());
                    values.push(obs.at_unix_ms.into());
                    for (_, read) in SAMPLE_COLUMNS {
                        values.push(match read(t).filter(|v| v.is_finite()) {
                            Some(v) => v.into(),
                            None => rusqlite::types::Value::Null,
                        });
                    }
                    insert
                        .execute(rusqlite::params_from_iter(values))
                        .map_err(sql)?;
                    written += 1;
                }
            }
        }
        tx.commit().map_err(sql)?;
        Ok(written)
    }

    /// Roll completed raw samples up into 5-minute history and drop what is past retention.
    /// `now_ms` is the time of the newest sample.
    pub fn maintain(&mut self, now_ms: i64, retention: Retention) -> Result<(), ProfileError> {
        let sql = sql_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let done: i64 = tx
            .query_row(
                "SELECT value FROM state WHERE key='rolled_up_to_ms'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql)?
            .unwrap_or(0);
        let upto = now_ms.div_euclid(STEP_S * 1000) * STEP_S * 1000; // only completed buckets
        if upto > done {
            tx.execute(
                "INSERT OR REPLACE INTO history
                 SELECT tenant_id, (ts_ms / ?3) * ?3, count(*),
                        avg(cpu_cores), max(cpu_cores), avg(mem_used_kib), max(mem_used_kib),
                        avg(disk_rd_bytes_per_s + disk_wr_bytes_per_s),
                        max(disk_rd_bytes_per_s + disk_wr_bytes_per_s),
                        avg(net_rx_bytes_per_s + net_tx_bytes_per_s),
                        max(net_rx_bytes_per_s + net_tx_bytes_per_s),
                        avg(cpu_delay_ratio)
                 FROM samples WHERE ts_ms >= ?1 AND ts_ms < ?2 GROUP BY 1, 2",
                params![done, upto, STEP_S * 1000],
            )
            .map_err(sql)?;
            tx.execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES ('rolled_up_to_ms', ?1)",
                params![upto],
            )
            .map_err(sql)?;
        }
        // Raw samples are only dropped once rolled up.
        let raw_cut = (now_ms - retention.raw_ms).min(upto);
        tx.execute("DELETE FROM samples WHERE ts_ms < ?1", params![raw_cut])
            .map_err(sql)?;
        for table in ["allocations", "actuations"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE ts_ms < ?1"),
                params![now_ms - retention.raw_ms],
            )
            .map_err(sql)?;
        }
        tx.execute(
            "DELETE FROM history WHERE bucket_ms < ?1",
            params![now_ms - retention.history_ms],
        )
        .map_err(sql)?;
        tx.execute(
            "DELETE FROM rises WHERE start_ms < ?1",
            params![now_ms - retention.history_ms],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(())
    }

    /// Store encoded forecaster states (`format`: their encoding's version), replacing
    /// older ones; tenants not in the database yet are skipped.
    pub fn save_forecasters(
        &mut self,
        at_ms: i64,
        format: i64,
        states: &[(Arc<str>, Vec<u8>)],
    ) -> Result<usize, ProfileError> {
        let sql = sql_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let mut saved = 0;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO forecasters (tenant_id, saved_ms, format, state)
                     SELECT id, ?2, ?3, ?4 FROM tenants WHERE uuid = ?1",
                )
                .map_err(sql)?;
            for (uuid, state) in states {
                saved += put
                    .execute(params![&**uuid, at_ms, format, state])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(saved)
    }

    /// Store what `policy` decided at `at_ms` for each tenant (already in the profile), and
    /// whether it was applied to the domains.
    pub fn save_allocation(
        &mut self,
        at_ms: i64,
        policy: &str,
        allocation: &Allocation,
        applied: bool,
    ) -> Result<usize, ProfileError> {
        let sql = sql_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let mut saved = 0;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO allocations (tenant_id, ts_ms, cpu_cores, mem_kib,
                         disk_bytes_per_s, net_bytes_per_s, policy, applied, reasons_json)
                     SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM tenants WHERE uuid = ?1",
                )
                .map_err(sql)?;
            for t in &allocation.tenants {
                let a = &t.amounts;
                let reasons = t
                    .reasons
                    .as_ref()
                    .and_then(|r| serde_json::to_string(r).ok());
                saved += put
                    .execute(params![
                        &*t.uuid, at_ms, a.cpu, a.mem, a.disk, a.net, policy, applied, reasons
                    ])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(saved)
    }

    /// Store the changes tried at `at_ms` (tenants not in the profile yet are skipped).
    pub fn save_actuations(
        &mut self,
        at_ms: i64,
        records: &[Actuation],
    ) -> Result<usize, ProfileError> {
        let sql = sql_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let mut saved = 0;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO actuations (tenant_id, ts_ms, resource, wanted, previous,
                         settings_json, accepted, code, message)
                     SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM tenants WHERE uuid = ?1",
                )
                .map_err(sql)?;
            for a in records {
                let settings = serde_json::to_string(&a.settings).unwrap_or_else(|_| "[]".into());
                saved += put
                    .execute(params![
                        &*a.uuid,
                        at_ms,
                        a.resource.name(),
                        a.wanted,
                        a.previous,
                        settings,
                        a.accepted,
                        a.code,
                        a.message
                    ])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(saved)
    }

    /// Store classified rises (tenants not in the profile yet are skipped).
    pub fn save_rises(&mut self, rises: &[Rise]) -> Result<usize, ProfileError> {
        let sql = sql_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let mut saved = 0;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO rises (tenant_id, resource, start_ms, level, in_force, outcome,
                         late_s, end_ms)
                     SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM tenants WHERE uuid = ?1",
                )
                .map_err(sql)?;
            for r in rises {
                saved += put
                    .execute(params![
                        &*r.uuid,
                        r.resource.name(),
                        r.start_ms,
                        r.level,
                        r.in_force.filter(|f| f.is_finite()),
                        r.outcome.name(),
                        r.late_s,
                        r.end_ms
                    ])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(saved)
    }

    /// The rises that started at or after `since_ms`, oldest first. Rows this build cannot
    /// read (an unknown resource or outcome) are skipped.
    pub fn load_rises(&self, since_ms: i64) -> Result<Vec<Rise>, ProfileError> {
        let mut q = self
            .conn
            .prepare(
                "SELECT t.uuid, r.resource, r.start_ms, r.level, r.in_force, r.outcome, r.late_s,
                        coalesce(r.end_ms, r.start_ms)
                 FROM rises r JOIN tenants t ON t.id = r.tenant_id
                 WHERE r.start_ms >= ?1 ORDER BY r.start_ms, r.rowid",
            )
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map(params![since_ms], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<f64>>(6)?,
                    r.get::<_, i64>(7)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (uuid, resource, start_ms, level, in_force, outcome, late_s, end_ms) =
                row.map_err(|e| self.sql(e))?;
            let Some(resource) = Resource::ALL.into_iter().find(|r| r.name() == resource) else {
                continue;
            };
            let Ok(outcome) = outcome.parse() else {
                continue;
            };
            out.push(Rise {
                uuid: uuid.into(),
                resource,
                start_ms,
                level,
                in_force,
                outcome,
                late_s,
                end_ms,
            });
        }
        Ok(out)
    }

    /// Keep what each domain had when first seen; a tenant already kept is left as it is.
    pub fn save_taken_over(
        &mut self,
        at_ms: i64,
        domains: &[DomainSettings],
    ) -> Result<usize, ProfileError> {
        let sql = sql_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let mut saved = 0;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO taken_over (tenant_id, ts_ms, settings_json)
                     SELECT id, ?2, ?3 FROM tenants WHERE uuid = ?1",
                )
                .map_err(sql)?;
            for (uuid, settings) in domains {
                let json = serde_json::to_string(settings).unwrap_or_else(|_| "[]".into());
                saved += put.execute(params![&**uuid, at_ms, json]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(saved)
    }

    /// Replace every row of `kind` in the operator's state with `rows` (key, JSON).
    pub fn save_operator_state(
        &mut self,
        kind: &str,
        rows: &[(String, String)],
    ) -> Result<(), ProfileError> {
        let sql = sql_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        tx.execute("DELETE FROM operator_state WHERE kind = ?1", params![kind])
            .map_err(&sql)?;
        {
            let mut put = tx
                .prepare_cached("INSERT INTO operator_state (kind, key, json) VALUES (?1, ?2, ?3)")
                .map_err(&sql)?;
            for (key, json) in rows {
                put.execute(params![kind, key, json]).map_err(&sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// The operator's state of `kind`: (key, JSON) rows.
    pub fn load_operator_state(&self, kind: &str) -> Result<Vec<(String, String)>, ProfileError> {
        let mut q = self
            .conn
            .prepare("SELECT key, json FROM operator_state WHERE kind = ?1 ORDER BY key")
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map(params![kind], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// What each domain had when prescient first saw it: (UUID, settings). Unreadable rows
    /// are skipped with a warning.
    pub fn load_taken_over(&self) -> Result<Vec<DomainSettings>, ProfileError> {
        let mut q = self
            .conn
            .prepare(
                "SELECT t.uuid, o.settings_json FROM taken_over o JOIN tenants t ON t.id = o.tenant_id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (uuid, json) = row.map_err(|e| self.sql(e))?;
            match serde_json::from_str(&json) {
                Ok(settings) => out.push((uuid.into(), settings)),
                Err(e) => {
                    tracing::warn!(tenant = %uuid, "stored original settings unreadable, skipped: {e}")
                }
            }
        }
        Ok(out)
    }

    /// The newest `limit` changes tried (all tenants, or the one with this UUID), newest
    /// first, with their time (Unix ms).
    pub fn load_actuations(
        &self,
        uuid: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, Actuation)>, ProfileError> {
        let mut q = self
            .conn
            .prepare(
                "SELECT a.ts_ms, t.uuid, a.resource, a.wanted, a.previous, a.settings_json,
                        a.accepted, a.code, a.message
                 FROM actuations a JOIN tenants t ON t.id = a.tenant_id
                 WHERE ?1 IS NULL OR t.uuid = ?1
                 ORDER BY a.ts_ms DESC, a.rowid DESC LIMIT ?2",
            )
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map(params![uuid, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, bool>(6)?,
                    r.get::<_, Option<i32>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (ts, uuid, resource, wanted, previous, settings, accepted, code, message) =
                row.map_err(|e| self.sql(e))?;
            let Some(resource) = Resource::ALL.into_iter().find(|r| r.name() == resource) else {
                continue;
            };
            out.push((
                ts,
                Actuation {
                    uuid: uuid.into(),
                    resource,
                    wanted,
                    previous,
                    settings: serde_json::from_str(&settings).unwrap_or_default(),
                    accepted,
                    code,
                    message,
                },
            ));
        }
        Ok(out)
    }

    /// Each tenant's newest recorded reasons from `policy_prefix`… (a policy's name, as its
    /// `describe` starts), parsed: (tenant UUID, reasons). Rows that do not parse are
    /// skipped with a warning: a damaged row costs what it learnt, never the start.
    pub fn load_reasons(
        &self,
        policy_prefix: &str,
    ) -> Result<Vec<(String, PerResource<Reason>)>, ProfileError> {
        let mut q = self
            .conn
            .prepare(
                "SELECT t.uuid, a.reasons_json FROM allocations a
                 JOIN tenants t ON t.id = a.tenant_id
                 WHERE a.reasons_json IS NOT NULL AND substr(a.policy, 1, length(?1)) = ?1
                   AND a.ts_ms = (SELECT max(b.ts_ms) FROM allocations b
                                  WHERE b.tenant_id = a.tenant_id AND b.reasons_json IS NOT NULL
                                    AND substr(b.policy, 1, length(?1)) = ?1)",
            )
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map(params![policy_prefix], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (uuid, json) = row.map_err(|e| self.sql(e))?;
            match serde_json::from_str(&json) {
                Ok(reasons) => out.push((uuid, reasons)),
                Err(e) => {
                    tracing::warn!(tenant = %uuid, "stored allocation reasons unreadable, skipped: {e}")
                }
            }
        }
        Ok(out)
    }

    /// Every stored forecaster state: (tenant UUID, format, bytes).
    pub fn load_forecasters(&self) -> Result<Vec<(String, i64, Vec<u8>)>, ProfileError> {
        let mut q = self
            .conn
            .prepare(
                "SELECT t.uuid, f.format, f.state FROM forecasters f
                 JOIN tenants t ON t.id = f.tenant_id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.sql(e))
    }

    pub fn counts(&self) -> Result<Counts, ProfileError> {
        let one = |q: &str| -> Result<i64, ProfileError> {
            self.conn
                .query_row(q, [], |r| r.get(0))
                .map_err(|e| self.sql(e))
        };
        Ok(Counts {
            tenants: one("SELECT count(*) FROM tenants")?,
            samples: one("SELECT count(*) FROM samples")?,
            history: one("SELECT count(*) FROM history")?,
        })
    }

    /// Make every later write fail, as on a file that became read-only under the daemon.
    #[cfg(test)]
    pub(crate) fn refuse_writes(&self) {
        self.conn.execute_batch("PRAGMA query_only=ON").unwrap();
    }

    /// Checkpoint the WAL into the main file (at shutdown).
    pub fn checkpoint(&self) -> Result<(), ProfileError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|e| self.sql(e))
    }
}

/// Wraps an SQLite error with the database's path (borrows only the path, so that the
/// connection stays free for a transaction).
fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> ProfileError + Copy + '_ {
    move |source| ProfileError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// What the file system allows, checked before SQLite touches anything: the directory
/// exists; an existing file can be read, starts like an SQLite file, and can be written; the
/// directory lets this process create files (the database, or SQLite's `-wal` and `-shm`
/// beside it).
fn check_access(path: &Path) -> Result<(), ProfileError> {
    use rustix::fs::{Access, access};
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(ProfileError::NoDir {
            path: path.to_path_buf(),
            dir,
        });
    }
    let exists = path.exists();
    if exists {
        check_header(path)?;
        if let Err(e) = access(path, Access::WRITE_OK) {
            return Err(ProfileError::ReadOnly {
                path: path.to_path_buf(),
                why: std::io::Error::from(e).to_string(),
            });
        }
    }
    if let Err(e) = access(&dir, Access::WRITE_OK | Access::EXEC_OK) {
        return Err(ProfileError::DirNotWritable {
            path: path.to_path_buf(),
            dir,
            what: if exists {
                "the database's write-ahead log"
            } else {
                "the database"
            },
            source: e.into(),
        });
    }
    Ok(())
}

/// A non-empty file that does not start with SQLite's header is foreign: say so before SQLite
/// gets a chance to treat it as something else.
fn check_header(path: &Path) -> Result<(), ProfileError> {
    use std::io::Read;
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // will be created
        Err(source) => {
            return Err(ProfileError::CannotOpen {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut head = [0u8; 16];
    let n = f
        .read(&mut head)
        .map_err(|source| ProfileError::CannotOpen {
            path: path.to_path_buf(),
            source,
        })?;
    if n == 0 {
        return Ok(());
    }
    if n < 16 || &head != b"SQLite format 3\0" {
        return Err(ProfileError::Foreign {
            path: path.to_path_buf(),
            why: "it is not an SQLite file".into(),
        });
    }
    Ok(())
}

fn move_aside(path: &Path) -> Result<PathBuf, ProfileError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to = PathBuf::from(format!("{}.bad-{stamp}", path.display()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            let dest = PathBuf::from(format!("{}{suffix}", to.display()));
            std::fs::rename(&from, &dest).map_err(|source| ProfileError::MoveAside {
                path: from.clone(),
                to: dest.clone(),
                source,
            })?;
        }
    }
    Ok(to)
}

#[cfg(test)]
mod tests;
