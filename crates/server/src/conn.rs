//! Connections no client can hold open: the accept loop with caps on connections (overall and
//! per IP address), hyper's header read timeout (which also closes idle keep-alive connections),
//! a small read buffer, and request bodies that must keep arriving ([`Paced`]). Every request
//! carries its peer address (`ConnectInfo<SocketAddr>`), which authentication throttles by.
//!
//! The loop is ours rather than `axum::serve` because that one sets none of these limits and
//! takes no cap on connections.

use crate::state::AppState;
use agentrail_service::metrics::Reason;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// Largest request head (request line and headers) a connection buffers; hyper's default is
/// 400 KiB per connection.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// Open connections, overall and per address.
#[derive(Debug, Default)]
pub struct Connections {
    per_address: Mutex<HashMap<IpAddr, usize>>,
    total: std::sync::atomic::AtomicUsize,
}

/// One connection counted in; counted out when dropped.
#[derive(Debug)]
struct Counted {
    conns: Arc<Connections>,
    ip: IpAddr,
    state: Arc<AppState>,
}

impl Connections {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(std::sync::atomic::Ordering::Acquire)
    }

    fn admit(
        self: &Arc<Connections>,
        ip: IpAddr,
        state: &Arc<AppState>,
        max: usize,
    ) -> Result<Counted, &'static str> {
        let mut per = agentrail_ledger::sync::lock(&self.per_address);
        if self.open() >= max {
            return Err("max_connections");
        }
        let n = per.entry(ip).or_insert(0);
        if *n >= state.cfg.max_connections_per_address {
            return Err("max_connections_per_address");
        }
        *n += 1;
        let total = self.total.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        state.service.metrics().http_connections.set(total as i64);
        Ok(Counted {
            conns: self.clone(),
            ip,
            state: state.clone(),
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut per = agentrail_ledger::sync::lock(&self.conns.per_address);
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
        let total = self
            .conns
            .total
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            - 1;
        self.state
            .service
            .metrics()
            .http_connections
            .set(total as i64);
    }
}

/// The connection cap that fits the open-file limit: each connection is a descriptor, and
/// three quarters of the limit are the service's file budget by default.
pub fn connection_cap(configured: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let fits = usize::try_from(soft / 4).unwrap_or(usize::MAX).max(16);
    if configured > fits {
        tracing::warn!(
            configured,
            using = fits,
            open_file_limit = soft,
            "max_connections lowered to fit the open-file limit"
        );
    }
    configured.min(fits)
}

/// Raises the soft open-file limit to the hard one, as servers do: the default soft limit
/// (often 1,024) is far below what a server with many tenants and connections needs.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum
        && let Err(e) = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        )
    {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
}

/// The answer to a connection beyond a cap, written without waiting (the socket's send buffer
/// is empty), then the connection is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 86\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many connections; retry later\"}}";

/// Accepts and serves connections until `stop` resolves; then asks every connection to close
/// after its request in flight, and waits up to `linger` for them.
pub async fn accept_loop(
    listener: TcpListener,
    router: Router,
    state: Arc<AppState>,
    stop: impl Future<Output = ()>,
    linger: Duration,
) {
    let conns = Arc::new(Connections::default());
    let max = connection_cap(state.cfg.max_connections);
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to be given back.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match conns.admit(peer.ip(), &state, max) {
            Ok(counted) => {
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    counted,
                    router.clone(),
                    closing_rx.clone(),
                ));
            }
            Err(cap) => {
                state
                    .service
                    .metrics()
                    .http_connections_refused
                    .get_or_create(&Reason { reason: cap.into() })
                    .inc();
                let _ = stream.try_write(REFUSED);
            }
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let deadline = Instant::now() + linger;
    while conns.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    counted: Counted,
    router: Router,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let cfg = &counted.state.cfg;
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move { tower::Service::call(&mut router, req.map(Body::new)).await }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.header_read_timeout_ms))
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                break;
            }
            changed = closing.changed() => {
                conn.as_mut().graceful_shutdown();
                if changed.is_err() {
                    // The loop is gone; the graceful shutdown above is all that is left to do.
                    let _ = conn.as_mut().await;
                    break;
                }
            }
        }
    }
    drop(counted);
}

/// A request body cut short: no byte for the stall timeout, or fewer than the minimum rate
/// once the stall timeout has passed.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body arrived too slowly ({received} bytes in {elapsed_ms} ms; at least one byte every {stall_ms} ms and {min_rate} bytes/s on average are needed)"
)]
pub struct BodyTooSlow {
    pub received: u64,
    pub elapsed_ms: u128,
    pub stall_ms: u64,
    pub min_rate: u64,
}

impl BodyTooSlow {
    /// Whether `e` or an error it wraps is a [`BodyTooSlow`].
    pub fn within<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTooSlow> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(slow) = err.downcast_ref::<BodyTooSlow>() {
                return Some(slow);
            }
            cur = err.source();
        }
        None
    }
}

/// A request body that must keep arriving: the deadline for its next byte is the earlier of
/// "the last byte plus the stall timeout" and "the time at which what arrived falls below the
/// minimum rate" (counted from the end of a grace period as long as the stall timeout). Its
/// clock starts when the body is first read, so a handler that refuses a request without
/// reading its body is not affected.
pub struct Paced {
    inner: Body,
    stall: Duration,
    min_rate: u64,
    started: Option<Instant>,
    last: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
    on_slow: Option<Box<dyn FnOnce() + Send>>,
}

impl Paced {
    pub fn new(
        inner: Body,
        stall: Duration,
        min_rate: u64,
        on_slow: impl FnOnce() + Send + 'static,
    ) -> Paced {
        let now = Instant::now();
        Paced {
            inner,
            stall,
            min_rate,
            started: None,
            last: now,
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(now + stall)),
            on_slow: Some(Box::new(on_slow)),
        }
    }

    fn deadline(&self, started: Instant) -> Instant {
        let by_stall = self.last + self.stall;
        if self.min_rate == 0 {
            return by_stall;
        }
        // `received` bytes are enough until `grace + received / rate` after the start.
        let by_rate = started
            + self.stall
            + Duration::from_secs_f64((self.received + 1) as f64 / self.min_rate as f64);
        by_stall.min(by_rate)
    }
}

impl std::fmt::Debug for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paced")
            .field("received", &self.received)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let now = Instant::now();
        let started = *this.started.get_or_insert_with(|| {
            this.last = now;
            now
        });
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && !data.is_empty()
                {
                    this.received += data.len() as u64;
                    this.last = now;
                }
                let d = this.deadline(started);
                this.timer.as_mut().reset(d);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let d = this.deadline(started);
                if this.timer.deadline() != d {
                    this.timer.as_mut().reset(d);
                }
                if this.timer.as_mut().poll(cx).is_ready() {
                    if let Some(f) = this.on_slow.take() {
                        f();
                    }
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow {
                        received: this.received,
                        elapsed_ms: now.duration_since(started).as_millis(),
                        stall_ms: this.stall.as_millis() as u64,
                        min_rate: this.min_rate,
                    }))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
