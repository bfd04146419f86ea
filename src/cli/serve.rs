//! `empi serve`: opens (or creates) the store, rebuilds the index, serves gRPC (and the
//! registrar console with `--console`, the HL7 v2 and FHIR doors when asked,
//! [`super::doors`], and the operations listener with `--metrics`) until Ctrl-C or SIGTERM,
//! then finishes the requests in flight.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use empi::service::ServiceConfig;

use super::data::{open_service_and_store, settle_store};

/// Arguments of `empi serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Store directory (created if absent).
    #[arg(long)]
    pub data: PathBuf,
    /// Address to listen on (port 0 picks a free port; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Model file (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// TLS, authentication and request limits.
    #[command(flatten)]
    pub security: super::security::SecurityArgs,
    /// The standards doors: HL7 v2 (MLLP) and FHIR R4.
    #[command(flatten)]
    pub doors: super::doors::DoorArgs,
    /// Also serve the registrar console (HTML) on this address, with the same TLS and
    /// credentials as gRPC (off unless given; port 0 picks a free port, printed on stdout).
    #[arg(long)]
    pub console: Option<SocketAddr>,
    /// Operations listener serving Prometheus metrics at `/metrics`, e.g. 127.0.0.1:9090
    /// (port 0 picks a free port; `metrics on ADDR` is printed on stdout). Plaintext and
    /// unauthenticated, like health checks: bind it where only monitoring reaches.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Days the change feed keeps its events (0 keeps them for ever); a consumer asking
    /// for an older one is told to resynchronise.
    #[arg(long, default_value_t = 30)]
    pub feed_retention_days: u64,
}

/// Runs `empi serve`.
pub fn serve(args: &ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))?;
    // Dropping the runtime drops any task still holding the service, and with it the store.
    drop(runtime);
    settle_store(&args.data);
    Ok(())
}

async fn run(args: &ServeArgs) -> Result<()> {
    let (data, model) = (args.data.clone(), args.model.clone());
    let (service, store) = tokio::task::spawn_blocking(move || {
        let opened = open_service_and_store(&data, model.as_deref(), ServiceConfig::default())?;
        opened.0.record_model_version()?;
        anyhow::Ok(opened)
    })
    .await??;
    let stats = service.stats()?;
    let training = stats.training.as_deref();
    tracing::info!(
        model = %stats.model_version,
        trained_at = training.map(|t| t.trained_at.as_str()),
        trained_on_records = training.map(|t| t.records),
        "model in use"
    );
    let service = Arc::new(service);
    let staging = Arc::clone(&store) as Arc<dyn empi::store::Staging>;
    let security =
        super::security::security(&args.security, &args.data, args.listen, Some(staging)).await?;
    let app = Arc::new(empi::app::App::new(
        Arc::clone(&service),
        security.audit.clone(),
        security.space.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    let ops = super::ops::Operations::start(args, &app, store).await?;
    // One signal stops every listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let console = match args.console {
        Some(at) => Some(super::console::start(args, at, &app, &security, stopped.clone()).await?),
        None => None,
    };
    let doors = super::doors::start(&args.doors, &args.security, &app, &security, &stopped);
    let doors = doors.await?;
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    empi::grpc::serve_app(listener, Arc::clone(&app), security, shutdown).await?;
    if let Some(console) = console {
        console.await??;
    }
    doors.finish().await;
    ops.stop().await;
    drop(app);
    // Every acknowledged write is durable already; this covers anything applied but not
    // yet acknowledged when the last connection closed. Failing (a full disk) loses
    // nothing acknowledged, so the stop stays clean.
    if let Err(e) = service.flush() {
        tracing::warn!(error = %e, "final flush failed; every acknowledged write was durable already");
    }
    tracing::info!(
        flushes = service.store().flush_count(),
        "store flushes since start"
    );
    // A clean stop: let the next start load the index instead of rebuilding it. Failing
    // here costs only that.
    if let Err(e) = service.save_snapshot() {
        tracing::warn!(error = %e, "index snapshot not written; the next start rebuilds");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C or (on unix) SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
