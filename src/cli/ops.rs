//! What `empi serve` does for its operators beside serving: log lines as text or JSON, the
//! operations listener with Prometheus metrics (`--metrics`), and the change feed's
//! retention.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use empi::app::App;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text for people.
    Text,
    /// One JSON object a line (timestamp, level, target, fields), for log shippers.
    Json,
}

/// Sets up logging to stderr at `RUST_LOG` (default `info`) in `format`. Log lines carry
/// keys, EUIDs and counts only, whatever the format.
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Serves `GET /metrics` (Prometheus text format 0.0.4) from `app` on `listener` until
/// `shutdown`. Plaintext and unauthenticated, like the health check: it shows counts,
/// latencies and sizes only, never patient data; bind it to an address only the
/// monitoring system reaches.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use axum::http::{header, StatusCode};
    let metrics = move || {
        let app = Arc::clone(&app);
        async move {
            match tokio::task::spawn_blocking(move || app.metrics_text()).await {
                Ok(Ok(text)) => (
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                ),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "metrics not gathered");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        "metrics unavailable; see the server log\n".to_string(),
                    )
                }
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "metrics failed; see the server log\n".to_string(),
                ),
            }
        }
    };
    let router = axum::Router::new().route("/metrics", axum::routing::get(metrics));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving metrics")
}

/// Binds the operations listener.
pub async fn bind_metrics(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener {addr}"))
}

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Drops the change feed's events older than `keep`, now and then every minute, until the
/// task is aborted. Failures are logged and tried again at the next run.
pub async fn retention(app: Arc<App>, keep: Duration) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    loop {
        tick.tick().await;
        let app = Arc::clone(&app);
        match tokio::task::spawn_blocking(move || app.prune_changes(keep)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(events = n, "change feed: events past retention dropped"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "change feed retention failed; tried again later")
            }
            Err(_) => tracing::warn!("change feed retention panicked; tried again later"),
        }
    }
}

/// What `empi serve` runs for its operators beside the API: the control socket (backups),
/// the metrics listener and the change feed's retention.
pub struct Operations {
    control: Option<super::backup::ControlSocket>,
    metrics: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<()>>,
    )>,
    retention: Option<tokio::task::JoinHandle<()>>,
}

impl Operations {
    /// Starts them as `args` asks, over `app` and its `store`.
    ///
    /// # Errors
    /// When the control socket or the metrics listener cannot be bound.
    pub async fn start(
        args: &super::serve::ServeArgs,
        app: &Arc<App>,
        store: Arc<empi::store::SledStore>,
    ) -> Result<Self> {
        let control = match app.trail() {
            Some(trail) => Some(super::backup::ControlSocket::start(
                &args.data,
                store,
                Arc::clone(trail),
            )?),
            None => None,
        };
        let metrics = match args.metrics {
            None => None,
            Some(at) => {
                let listener = bind_metrics(at).await?;
                println!("metrics on {}", listener.local_addr()?);
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let task = tokio::spawn(serve_metrics(listener, Arc::clone(app), async {
                    let _ = stopped.await;
                }));
                Some((stop, task))
            }
        };
        let retention = (args.feed_retention_days > 0).then(|| {
            let keep = Duration::from_secs(args.feed_retention_days * 86_400);
            tokio::spawn(retention(Arc::clone(app), keep))
        });
        Ok(Operations {
            control,
            metrics,
            retention,
        })
    }

    /// Stops them; their handles on the store are dropped (a backup in progress finishes
    /// first).
    pub async fn stop(self) {
        if let Some(task) = self.retention {
            task.abort();
        }
        if let Some((stop, task)) = self.metrics {
            let _ = stop.send(());
            if let Ok(Err(e)) = task.await {
                tracing::warn!(error = %e, "metrics listener");
            }
        }
        if let Some(control) = self.control {
            let _ = tokio::task::spawn_blocking(move || control.stop()).await;
        }
    }
}
