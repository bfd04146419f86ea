//! `empi serve`: opens (or creates) the store, rebuilds the index, serves gRPC until Ctrl-C
//! or SIGTERM, then finishes the requests in flight.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use empi::linker::Linker;
use empi::scoring::Model;
use empi::service::{Service, ServiceConfig};
use empi::store::{SledStore, Store};

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
}

/// The linker for an optional model file.
pub fn linker(model: Option<&Path>) -> Result<Linker> {
    let model = match model {
        Some(p) => Model::load(p)?,
        None => Model::default_model(),
    };
    Ok(Linker::new(model)?)
}

/// Refuses a `--data` that is not an existing store, unless `create` (the `--create` of a
/// command that writes), so a mistyped path is an error rather than a new, empty store
/// beside the real one. `empi serve` creates its store without being asked.
///
/// # Errors
/// When `data` holds no store and `create` is false.
pub fn existing_store(data: &Path, create: bool) -> Result<()> {
    if create || SledStore::exists(data) {
        return Ok(());
    }
    anyhow::bail!(
        "{}: not an empi store (no `db` file); check the path, or pass --create to make a new one",
        data.display()
    )
}

/// Opens the store in `data` (creating it) and the service over it, loading the index
/// snapshot kept in `data` when it matches the store, rebuilding the index otherwise.
pub fn open_service(data: &Path, model: Option<&Path>, config: ServiceConfig) -> Result<Service> {
    open_service_and_store(data, model, config).map(|(service, _)| service)
}

/// As [`open_service`], also returning the store for the audit trail to stage its lines in
/// ([`AuditLog::open_staged`](empi::auth::AuditLog::open_staged)).
pub fn open_service_and_store(
    data: &Path,
    model: Option<&Path>,
    mut config: ServiceConfig,
) -> Result<(Service, Arc<SledStore>)> {
    let linker = linker(model)?;
    config.snapshot = Some(empi::service::snapshot::path_in(data));
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let store = SledStore::open(data).with_context(|| format!("opening {}", data.display()))?;
    let store = Arc::new(store);
    let service = Service::open(Arc::clone(&store) as Arc<dyn Store>, linker, config)?;
    Ok((service, store))
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

/// After a clean stop, with the store closed: has sled record its page table now, so the
/// next start does not read the whole log ([`SledStore::settle`]). Failing costs only
/// that, so it warns.
pub fn settle_store(data: &Path) {
    let started = std::time::Instant::now();
    match SledStore::settle(data) {
        Ok(()) => tracing::info!(
            secs = started.elapsed().as_secs_f64(),
            "store settled for a fast next start"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "store not settled; the next start reads sled's whole log"
        ),
    }
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
    let security =
        super::security::security(&args.security, &args.data, args.listen, Some(store)).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    empi::grpc::serve_secure(listener, Arc::clone(&service), security, shutdown_signal()).await?;
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
