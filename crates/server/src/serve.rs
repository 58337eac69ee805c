//! Running the server: bind, serve until SIGTERM/SIGINT, then stop accepting, let in-flight
//! requests finish (their appends become durable and are answered), stop the indexer and sign
//! final checkpoints.

use crate::state::{AppState, ServerConfig};
use agentrail_service::Opened;

/// Opens the data directory and serves until a shutdown signal. `on_ready` gets the bound
/// address and the root key if this start created it.
pub async fn serve(
    cfg: ServerConfig,
    on_ready: impl FnOnce(std::net::SocketAddr, &Opened),
) -> Result<(), String> {
    let listen = cfg.listen.clone();
    let (state, opened) = tokio::task::spawn_blocking(move || AppState::open(cfg))
        .await
        .map_err(|e| e.to_string())??;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    on_ready(addr, &opened);
    let app = crate::app::router(state.clone());
    tracing::info!(%addr, data_dir = %state.cfg.service.data_dir.display(), "serving");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    tracing::info!("stopped accepting; closing the ledger");
    let service = state.service.clone();
    tokio::task::spawn_blocking(move || service.shutdown())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("shut down cleanly");
    served.map_err(|e| format!("server error: {e}"))
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
