//! The server's configuration and the state every handler shares: the service, and admission
//! (the HTTP layer's own bound on ingest requests).

use agentrail_service::{Opened, Service, ServiceConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::Semaphore;

/// Server settings: defaults, overridden by a TOML file (`--config`), then by flags. The file is
/// flat: the server's keys and the service's ([`ServiceConfig`]) side by side; unknown keys are
/// an error.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    /// Largest request body, after gzip decoding (413 beyond).
    pub max_body_bytes: usize,
    /// Ingest requests appending at once; others wait up to `append_wait_ms`, then get 503.
    pub max_inflight_appends: usize,
    pub append_wait_ms: u64,
    /// On SIGTERM: how long requests in flight may take to be answered (new ones get 503
    /// `shutting_down` with `Connection: close` meanwhile) before connections are closed.
    pub shutdown_grace_ms: u64,
    /// From a connection's start, or the end of its last response, until the next request's
    /// headers are complete: a slow-header client and an idle keep-alive connection are both
    /// closed after this long.
    pub header_read_timeout_ms: u64,
    /// A request body that delivers no byte for this long is cut (408 `body_too_slow`); after
    /// this long it must also keep up `min_body_bytes_per_sec` on average.
    pub body_stall_timeout_ms: u64,
    pub min_body_bytes_per_sec: u64,
    /// TCP connections open at once, overall and from one IP address; beyond, a new connection
    /// is answered 503 and closed. The overall cap is lowered to fit the open-file limit.
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// Request body bytes held in memory across all ingest requests; beyond, 503 `busy`.
    pub max_body_memory_bytes: usize,
    /// Failed authentications one source address may make per minute; beyond, 429 with
    /// `Retry-After` until the minute's window has room again.
    pub max_auth_failures_per_minute: u32,
    pub service: ServiceConfig,
}

/// The server's own keys of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpKeys {
    listen: Option<String>,
    max_body_bytes: Option<usize>,
    max_inflight_appends: Option<usize>,
    append_wait_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    body_stall_timeout_ms: Option<u64>,
    min_body_bytes_per_sec: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    max_body_memory_bytes: Option<usize>,
    max_auth_failures_per_minute: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: "127.0.0.1:7700".into(),
            max_body_bytes: 32 << 20,
            max_inflight_appends: 64,
            append_wait_ms: 5_000,
            shutdown_grace_ms: 30_000,
            header_read_timeout_ms: 10_000,
            body_stall_timeout_ms: 10_000,
            min_body_bytes_per_sec: 16 << 10,
            max_connections: 4_096,
            max_connections_per_address: 256,
            max_body_memory_bytes: 1 << 30,
            max_auth_failures_per_minute: 30,
            service: ServiceConfig::default(),
        }
    }
}

impl ServerConfig {
    /// A default configuration on `data_dir`.
    pub fn on(data_dir: impl Into<PathBuf>) -> ServerConfig {
        let mut c = ServerConfig::default();
        c.service.data_dir = data_dir.into();
        c
    }

    /// Reads a TOML config file; unknown settings are an error.
    pub fn from_toml_file(path: &Path) -> Result<ServerConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        ServerConfig::from_toml(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    /// Parses the TOML text of a config file.
    pub fn from_toml(text: &str) -> Result<ServerConfig, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut http = toml::Table::new();
        for k in [
            "listen",
            "max_body_bytes",
            "max_inflight_appends",
            "append_wait_ms",
            "shutdown_grace_ms",
            "header_read_timeout_ms",
            "body_stall_timeout_ms",
            "min_body_bytes_per_sec",
            "max_connections",
            "max_connections_per_address",
            "max_body_memory_bytes",
            "max_auth_failures_per_minute",
        ] {
            if let Some(v) = table.remove(k) {
                http.insert(k.into(), v);
            }
        }
        let h: HttpKeys = http
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        let service: ServiceConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        let d = ServerConfig::default();
        Ok(ServerConfig {
            listen: h.listen.unwrap_or(d.listen),
            max_body_bytes: h.max_body_bytes.unwrap_or(d.max_body_bytes),
            max_inflight_appends: h.max_inflight_appends.unwrap_or(d.max_inflight_appends),
            append_wait_ms: h.append_wait_ms.unwrap_or(d.append_wait_ms),
            shutdown_grace_ms: h.shutdown_grace_ms.unwrap_or(d.shutdown_grace_ms),
            header_read_timeout_ms: h.header_read_timeout_ms.unwrap_or(d.header_read_timeout_ms),
            body_stall_timeout_ms: h.body_stall_timeout_ms.unwrap_or(d.body_stall_timeout_ms),
            min_body_bytes_per_sec: h.min_body_bytes_per_sec.unwrap_or(d.min_body_bytes_per_sec),
            max_connections: h.max_connections.unwrap_or(d.max_connections),
            max_connections_per_address: h
                .max_connections_per_address
                .unwrap_or(d.max_connections_per_address),
            max_body_memory_bytes: h.max_body_memory_bytes.unwrap_or(d.max_body_memory_bytes),
            max_auth_failures_per_minute: h
                .max_auth_failures_per_minute
                .unwrap_or(d.max_auth_failures_per_minute),
            service,
        })
    }
}

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub cfg: ServerConfig,
    pub service: Arc<Service>,
    pub admission: Admission,
    pub drain: Drain,
    /// Request body bytes held in memory (`max_body_memory_bytes` permits).
    pub body_memory: Arc<Semaphore>,
    pub auth_throttle: crate::throttle::AuthThrottle,
}

/// Graceful shutdown's state: once draining, new requests are answered 503 `shutting_down`
/// with `Connection: close`, and the requests in flight (counted here) finish and are answered
/// (with `Connection: close`) before connections are closed.
#[derive(Debug, Default)]
pub struct Drain {
    draining: std::sync::atomic::AtomicBool,
    active: AtomicI64,
}

/// One request being handled; counted until dropped.
#[derive(Debug)]
pub struct Active<'a>(&'a Drain);

impl Drain {
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Requests being handled now.
    pub fn active(&self) -> i64 {
        self.active.load(Ordering::Acquire)
    }

    pub fn enter(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::AcqRel);
        Active(self)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The bound on ingest requests: at most `max_inflight_appends` appending, twice that many
/// holding a body or waiting; beyond, 503 + Retry-After at once. The count is kept in an atomic
/// (the control state); the `ingest_inflight` gauge only mirrors it.
#[derive(Debug)]
pub struct Admission {
    pub slots: Arc<Semaphore>,
    inflight: AtomicI64,
    max_held: i64,
}

/// One ingest request admitted: counted until dropped, however the request ends.
#[derive(Debug)]
pub struct Admitted<'a> {
    admission: &'a Admission,
    service: &'a Service,
}

impl Admission {
    fn new(max_inflight: usize) -> Admission {
        let n = max_inflight.max(1);
        Admission {
            slots: Arc::new(Semaphore::new(n)),
            inflight: AtomicI64::new(0),
            max_held: 2 * n as i64,
        }
    }

    /// Counts a request in; `None` when twice the append slots are already held.
    pub fn admit<'a>(&'a self, service: &'a Service) -> Option<Admitted<'a>> {
        let now = self.inflight.fetch_add(1, Ordering::AcqRel) + 1;
        service.metrics().ingest_inflight.set(now);
        let admitted = Admitted {
            admission: self,
            service,
        };
        (now <= self.max_held).then_some(admitted)
    }

    /// Whether ingest requests are being turned away (every slot held, the wait list full).
    pub fn saturated(&self) -> bool {
        self.inflight.load(Ordering::Acquire) >= self.max_held
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let now = self.admission.inflight.fetch_sub(1, Ordering::AcqRel) - 1;
        self.service.metrics().ingest_inflight.set(now);
    }
}

impl AppState {
    /// Opens the service on the configured data directory.
    pub fn open(cfg: ServerConfig) -> Result<(Arc<AppState>, Opened), String> {
        let opened = Service::open(cfg.service.clone()).map_err(|e| e.to_string())?;
        Ok((AppState::new(cfg, opened.service.clone()), opened))
    }

    /// The state of a server over an open service.
    pub fn new(cfg: ServerConfig, service: Arc<Service>) -> Arc<AppState> {
        Arc::new(AppState {
            admission: Admission::new(cfg.max_inflight_appends),
            drain: Drain::default(),
            body_memory: Arc::new(Semaphore::new(
                cfg.max_body_memory_bytes.min(Semaphore::MAX_PERMITS),
            )),
            auth_throttle: crate::throttle::AuthThrottle::new(
                cfg.max_auth_failures_per_minute,
                std::time::Duration::from_secs(60),
            ),
            cfg,
            service,
        })
    }
}
