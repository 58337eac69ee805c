//! Running the server: bind, serve until SIGTERM/SIGINT, then stop accepting, let in-flight
//! requests finish (their appends become durable and are answered), stop the indexer and sign
//! final checkpoints.

use crate::state::{AppState, ServerConfig};
use agentrail_service::Opened;
use std::time::{Duration, Instant};

/// Opens the data directory and serves until a shutdown signal. `on_ready` gets the bound
/// address and the root key if this start created it, and starts what runs beside the server
/// (the Kafka sources); if it fails, the service is shut down and nothing is served.
pub async fn serve(
    cfg: ServerConfig,
    on_ready: impl FnOnce(std::net::SocketAddr, &Opened) -> Result<(), String>,
) -> Result<(), String> {
    crate::conn::raise_open_file_limit();
    let listen = cfg.listen.clone();
    let (state, opened) = tokio::task::spawn_blocking(move || AppState::open(cfg))
        .await
        .map_err(|e| e.to_string())??;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if let Err(e) = on_ready(addr, &opened) {
        let service = state.service.clone();
        tokio::task::spawn_blocking(move || service.shutdown())
            .await
            .map_err(|e| e.to_string())?;
        return Err(e);
    }
    let app = crate::app::router(state.clone());
    tracing::info!(%addr, data_dir = %state.cfg.service.data_dir.display(), "serving");
    let draining = state.clone();
    crate::conn::accept_loop(
        listener,
        app,
        state.clone(),
        async move {
            shutdown_signal().await;
            drain(&draining).await;
        },
        Duration::from_secs(2),
    )
    .await;
    tracing::info!("stopped accepting; closing the ledger");
    let service = state.service.clone();
    tokio::task::spawn_blocking(move || service.shutdown())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Between the signal and closing connections: requests in flight are answered; new ones (on
/// open connections, or queued in the listen backlog) get 503 `shutting_down` rather than a
/// reset connection. Lasts until nothing is in flight (at least `LINGER`, so connections
/// already queued are answered) or `shutdown_grace_ms` passed.
async fn drain(state: &AppState) {
    const LINGER: Duration = Duration::from_millis(500);
    state.drain.start();
    let started = Instant::now();
    let grace = Duration::from_millis(state.cfg.shutdown_grace_ms);
    tracing::info!(in_flight = state.drain.active(), "draining");
    loop {
        let idle = state.drain.active() == 0;
        if (idle && started.elapsed() >= LINGER) || started.elapsed() >= grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if state.drain.active() > 0 {
        tracing::warn!(
            in_flight = state.drain.active(),
            "shutdown grace period over: closing connections with requests in flight"
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
